"""The capture gate: capture stage -> score -> decide, for one image or a stream of them.

Build one :class:`Gate` (it loads the models and fixes threads once), then call
:meth:`Gate.assess` or :meth:`Gate.assess_many`. Every input gets a :class:`CaptureResult`,
bad files included.
"""

from __future__ import annotations

import copy
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .alignment import resize_crop
from .capture import Capture, CaptureSettings, CaptureStage
from .detection import Detector, Face
from .errors import ConfigError, ImageError
from .frozen import FrozenValue
from .images import ColorOrder, ImageInput, describe, load_image
from .components import Components
from .policy import Policy, Status, decide, decide_crop, prompt_for
from .runtime import process_threads
from .scorer import Scorer, create_scorer
from .scores import Scores
from .working import WorkingResolution

__all__ = ["CaptureResult", "FaceResult", "Gate"]


def _for_policy(working: WorkingResolution | None, policy: Policy) -> WorkingResolution | None:
    """The working resolution ``policy`` needs (None stays None: full resolution)."""
    return None if working is None else replace(working, min_eye_distance=policy.min_eye_distance,
                                                secondary_face_ratio=policy.secondary_face_ratio)


def _capture_settings(capture: CaptureSettings | None, policy: Policy, *, backend: str, **shorthands) -> CaptureSettings:
    """One :class:`CaptureSettings` from ``Gate``'s arguments: the value given, or the
    shorthands (``detector``, ``look_again``, ``working``, ``max_pixels``) over the defaults;
    its working resolution sized for ``policy``; the gate's backend."""
    given = {k: v for k, v in shorthands.items() if v is not None}
    if capture is not None and given:
        raise ConfigError(f"give capture=CaptureSettings(...) or {', '.join(sorted(given))}, not both")
    if capture is None:
        working = given.pop("working", True)
        capture = CaptureSettings(working=WorkingResolution() if working else None, **given)
    if capture.backend != backend:
        capture = capture.with_(backend=backend)
    return capture.with_(working=_for_policy(capture.working, policy))

NO_FACE_PROMPT = "look into the camera: no face was found"


@dataclass(frozen=True, eq=False)
class FaceResult(FrozenValue):
    """The decision about one face of a capture, when every face is assessed
    (``all_faces=True``): the face decided alone, as if it were the capture's only one (so a
    group photo's faces are not each rejected as ``multiple_faces``), with its own score,
    reasons, prompt and quality components; ``primary`` marks the capture's main face."""

    face: Face
    primary: bool
    status: Status
    reasons: tuple[str, ...] = ()
    score: float | None = None
    member_scores: dict[str, float] = field(default_factory=dict)
    components: Components | None = None
    prompt: str | None = None

    def to_dict(self) -> dict:
        return {
            "primary": self.primary,
            "status": self.status.value,
            "reasons": list(self.reasons),
            "score": None if self.score is None else round(self.score, 2),
            "member_scores": {k: round(v, 2) for k, v in self.member_scores.items()},
            "face": self.face.to_dict(),
            "prompt": self.prompt,
            "components": None if self.components is None else self.components.to_dict(),
        }


@dataclass(frozen=True, eq=False)
class CaptureResult(FrozenValue):
    """What the gate decided about one capture.

    Attributes:
        source: file path or a description of the in-memory image.
        status: accepted, rejected, no_face or unreadable.
        reasons: why it was rejected (see ``facegate.policy.REASONS``).
        score: ensemble quality score of the primary face, 0-100 (None without a face).
        member_scores: each model's score of the primary face.
        face: the primary face; ``faces``: every face found.
        image_size: ``(width, height)`` of the decoded image.
        error: the cause, for unreadable inputs.
        notes: what decoding did that a user should know (first frame of an animation, ...).
        components: the primary face's quality components (see :mod:`facegate.components`).
        prompt: one thing the person in front of the camera can do about a rejection.
        found_by: how the face was found when the first detection missed it (see
            :attr:`facegate.capture.Capture.found_by`).
        every_face: with ``all_faces=True``, a :class:`FaceResult` for every face found,
            in the order of ``faces`` (None when not asked for).
    """

    source: str
    status: Status
    reasons: tuple[str, ...] = ()
    score: float | None = None
    member_scores: dict[str, float] = field(default_factory=dict)
    face: Face | None = None
    faces: tuple[Face, ...] = ()
    image_size: tuple[int, int] | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()
    components: Components | None = None
    prompt: str | None = None
    found_by: str | None = None
    every_face: tuple[FaceResult, ...] | None = None

    @property
    def accepted(self) -> bool:
        return self.status is Status.ACCEPTED

    def to_dict(self) -> dict:
        """The same fields as the attributes, in JSON types (rounded for people to read)."""
        return {
            "source": self.source,
            "status": self.status.value,
            "reasons": list(self.reasons),
            "score": None if self.score is None else round(self.score, 2),
            "member_scores": {k: round(v, 2) for k, v in self.member_scores.items()},
            "face": None if self.face is None else self.face.to_dict(),
            "faces": [f.to_dict() for f in self.faces],
            "image_size": None if self.image_size is None else list(self.image_size),
            "error": self.error,
            "notes": list(self.notes),
            "prompt": self.prompt,
            "found_by": self.found_by,
            "components": None if self.components is None else self.components.to_dict(),
            **({} if self.every_face is None else {"every_face": [f.to_dict() for f in self.every_face]}),
        }


class Gate:
    """Assess face captures.

    A Gate holds no per-call state, so one instance may be shared by several threads
    (tests/test_threads.py checks results against a serial run).

    Args:
        policy: a :class:`Policy`, or the path of a policy file (``facegate calibrate``
            writes one; it changes the settings it names, of its profile); default: the
            ``profile``.
        profile: a named policy (``"verification"``, the default; ``"enrollment"``;
            ``"surveillance"``: see :data:`facegate.policy.PROFILES`), the base a policy
            file changes.
        weights: folder of quality weights (default: shipped weights).
        views: test-time views: ``"none"``, ``"flip"`` or ``"full"``.
        backend: ``"onnx"`` (default: onnxruntime and OpenCV, torch is never imported) or
            ``"torch"`` (PyTorch scorer and facenet-pytorch's MTCNN).
        device: torch device (``backend="torch"`` only).
        threads: threads of this gate's sessions (None: the process's budget). The process's
            own pools (OpenCV, torch) are sized once per process, by the first of
            :func:`facegate.runtime.configure_threads` or the first Gate; a later Gate with
            another number sizes only its own sessions.
        batch_size: faces scored per forward pass in :meth:`assess_many`.
        capture: how faces are found and cropped (:class:`facegate.capture.CaptureSettings`);
            its working resolution is sized for the policy. ``detector``, ``look_again``,
            ``working`` and ``max_pixels`` are shorthands for it (give one or the other).
        detector: ``"mtcnn"`` (default), ``"yunet"`` (faster), or any object with
            ``detect(rgb) -> list[Face]``.
        workers: threads that decode and detect the next batch while this one is scored
            (0: all in the caller's thread); the thread budget is shared among them.
        look_again: when no face is found, look again on a brightened, turned and padded
            copy, so a dark, rotated or cut-off photo is rejected as such rather than
            reported as ``no_face`` (up to five more detections, for those photos only).
        working: decode and detect photos over 2 megapixels at the working resolution the
            policy needs (:mod:`facegate.working`: a camera JPEG in a fraction of the time
            and memory, the same decision; docs/performance.md); False: full resolution.
        max_pixels: an image of more pixels (width x height) is unreadable, as a possible
            decompression bomb (default :data:`facegate.images.MAX_PIXELS`: 250 million,
            beyond the 200-megapixel phone cameras).

    Example:
        >>> gate = Gate(threads=2)
        >>> result = gate.assess("enrol/alice.jpg")
        >>> result.status, result.reasons, result.score
    """

    def __init__(
        self,
        *,
        policy: Policy | str | Path | None = None,
        profile: str | None = None,
        weights: str | Path | None = None,
        views: str | Sequence[str] = "full",
        backend: str = "onnx",
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 16,
        capture: CaptureSettings | None = None,
        detector: Detector | str | None = None,
        workers: int = 0,
        look_again: bool | None = None,
        working: bool | None = None,
        max_pixels: int | None = None,
    ):
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if workers < 0:
            raise ConfigError(f"workers must be >= 0, got {workers}")
        budget = process_threads(threads)
        # each of the caller and the workers may run a session at once: split the budget
        per_thread = max(1, budget // (workers + 1))
        self.workers = workers
        self.batch_size = batch_size
        self.scorer: Scorer = create_scorer(weights, backend=backend, views=views, threads=per_thread, device=device)
        chosen = self._checked(Policy.choose(policy, profile))
        settings = _capture_settings(capture, chosen, backend=backend, detector=detector, look_again=look_again,
                                     working=working, max_pixels=max_pixels)
        self.capture = CaptureStage(self.scorer.spec, settings, threads=per_thread)
        self._chosen = chosen
        self.policy = chosen.resolve(self.spec.default_threshold,
                                     self.capture.detector_settings.get("min_face_probability"))

    def _checked(self, chosen: Policy) -> Policy:
        scale = self.scorer.spec.score_scale
        if chosen.min_score is not None and chosen.score_scale not in (None, scale):
            raise ConfigError(f"the policy's min_score {chosen.min_score:g} was chosen on the {chosen.score_scale} "
                              f"scale, and these weights ({self.scorer.spec.name}) score on {scale}: run facegate "
                              "calibrate again with these weights, or leave min_score out to use their default")
        if chosen.score_map and chosen.score_scale != scale:
            raise ConfigError(f"the policy's score_map was refit from the {chosen.score_scale} scale, and these weights "
                              f"({self.scorer.spec.name}) score on {scale}: run facegate calibrate --refit-scale again "
                              "with these weights")
        return chosen

    def _score(self, crops: np.ndarray) -> Scores:
        """The scorer's scores of ``crops``, on the policy's scale (its refit ``score_map``, if any)."""
        scores = self.scorer.score(crops)
        if not self.policy.score_map:
            return scores
        return Scores(self.policy.rescore(scores.ensemble),
                      {name: self.policy.rescore(values) for name, values in scores.members.items()})

    def with_policy(self, policy: Policy | str | Path | None = None, *, profile: str | None = None) -> "Gate":
        """A gate that decides by another policy with this gate's models (scorer and
        detector shared, nothing loaded again): for a service that takes the profile per
        request. Its working resolution follows the new policy's needs, as a new Gate's would."""
        chosen = self._checked(Policy.choose(policy, profile))
        other = copy.copy(self)
        stage = self.capture
        other.capture = stage.sharing(working=_for_policy(stage.working, chosen))
        other._chosen = chosen
        other.policy = chosen.resolve(self.spec.default_threshold, stage.detector_settings.get("min_face_probability"))
        return other

    def _deciding(self, capture: Capture) -> Policy:
        """The policy a capture is decided by: a face only the other shipped detector found
        is held to that detector's confidence cut-off (its scale is its own), unless the
        policy sets one."""
        found = capture.found_by or ""
        if not found.startswith("found by ") or self._chosen.min_face_probability is not None:
            return self.policy
        cut = self.spec.detector_settings(found.removeprefix("found by ")).get("min_face_probability")
        return self.policy if cut is None else replace(self.policy, min_face_probability=float(cut))

    @property
    def spec(self):
        return self.scorer.spec

    def settings(self) -> dict:
        """Everything that decides a result, as JSON values: weights (name and member
        digests), views, backend, detector and its settings, and the policy. Records that
        carry it (the filter manifest) are redone when it changes."""
        return {"weights": self.spec.name, "members": dict(self.spec.member_sha256), "views": list(self.scorer.views),
                "backend": self.scorer.backend, "detector": self.capture.detector_name,
                "detector_settings": self.capture.detector_settings, "look_again": self.capture.look_again,
                "policy": self.policy.to_dict()}

    @property
    def detector(self) -> Detector:
        return self.capture.detector

    def assess(self, image: ImageInput, *, color_order: ColorOrder | None = None,
               all_faces: bool = False) -> CaptureResult:
        """Assess one capture (path, PIL image, or numpy array with ``color_order``);
        ``all_faces``: also decide every face of it (:attr:`CaptureResult.every_face`)."""
        return next(self.assess_many([image], color_order=color_order, all_faces=all_faces))

    def assess_many(
        self, images: Iterable[ImageInput], *, color_order: ColorOrder | None = None, all_faces: bool = False
    ) -> Iterator[CaptureResult]:
        """Assess captures lazily, scoring faces in batches; results come in input order.

        ``all_faces``: every face of each capture is decided too, alone, with its own score,
        reasons, prompt and components (a group photo, a surveillance still); the capture's
        own decision is the same as without it. Photos are then searched at full resolution,
        since the working resolution is chosen for the main face's needs, not a bystander's.

        With ``workers > 0`` the next batch goes through the capture stage in a thread pool
        while the current one is scored; order is kept because futures are read in
        submission order.
        """
        iterator = iter(images)
        stage = self._every_face_stage() if all_faces else self.capture

        def next_chunk():
            return list(itertools.islice(iterator, self.batch_size))

        def analyse(image):
            return stage.analyse(image, color_order=color_order)

        if self.workers == 0:
            while chunk := next_chunk():
                yield from self.decide_captures([analyse(im) for im in chunk], all_faces=all_faces)
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="facegate-capture") as pool:
            submit = lambda chunk: [pool.submit(analyse, im) for im in chunk]  # noqa: E731
            ahead = submit(next_chunk())
            while ahead:
                current, ahead = ahead, submit(next_chunk())
                yield from self.decide_captures([f.result() for f in current], all_faces=all_faces)

    def _every_face_stage(self) -> CaptureStage:
        """The capture stage at full resolution, sharing this gate's detector."""
        return self.capture if self.capture.working is None else self.capture.sharing(working=None)

    def decide_faces(self, capture: Capture) -> tuple[FaceResult, ...]:
        """Every face of a capture decided alone (see :meth:`assess_many`'s ``all_faces``)."""
        if capture.rgb is None or not capture.faces:
            return ()
        stage = self.capture
        crops = np.stack([stage.spec.crop(capture.rgb, capture.in_rgb(f.landmarks),
                                          reduction=capture.reduction.factor if capture.reduction else 1)
                          for f in capture.faces])
        scores = self._score(crops)
        alone = replace(self._deciding(capture), reject_multiple_faces=False)
        results = []
        for k, face in enumerate(capture.faces):
            components = stage.measure(capture.rgb, face, capture.faces, capture.reduction)
            score = float(scores.ensemble[k])
            status, reasons = decide(alone, [face], face, score, components, capture.found_by)
            prompt = prompt_for(reasons, components, capture.found_by) if status is Status.REJECTED else None
            results.append(FaceResult(face, face is capture.primary, status, reasons, score, scores.member_scores(k),
                                      components, prompt))
        return tuple(results)

    def decide_captures(self, captures: Sequence[Capture], *, all_faces: bool = False) -> list[CaptureResult]:
        """Score the primary faces of captures from :attr:`capture` in one batch and decide
        each (and with ``all_faces`` every face of each, :meth:`decide_faces`)."""
        with_face = [c for c in captures if c.crop is not None]
        scores = self._score(np.stack([c.crop for c in with_face])) if with_face else None
        scored = {id(c): k for k, c in enumerate(with_face)}
        results = []
        for capture in captures:
            if capture.error is not None:
                results.append(CaptureResult(capture.source, Status.UNREADABLE, error=capture.error,
                                             image_size=capture.image_size, notes=capture.notes,
                                             every_face=() if all_faces else None))
                continue
            score, members = None, {}
            if id(capture) in scored:
                k = scored[id(capture)]
                score, members = float(scores.ensemble[k]), scores.member_scores(k)
            status, reasons = decide(self._deciding(capture), capture.faces, capture.primary, score,
                                     capture.components, capture.found_by)
            prompt = (prompt_for(reasons, capture.components, capture.found_by) if status is Status.REJECTED
                      else NO_FACE_PROMPT if status is Status.NO_FACE else None)
            results.append(CaptureResult(capture.source, status, reasons, score, members, capture.primary,
                                         capture.faces, capture.image_size, notes=capture.notes,
                                         components=capture.components, prompt=prompt, found_by=capture.found_by,
                                         every_face=self.decide_faces(capture) if all_faces else None))
        return results

    def score_crops(
        self, crops: Iterable[ImageInput], *, color_order: ColorOrder | None = None
    ) -> np.ndarray:
        """Quality scores (0-100) of faces that are already aligned and cropped (see
        :meth:`assess_crops`). Raises ``ImageError`` for a crop that cannot be decoded."""
        scores = []
        for result in self.assess_crops(crops, color_order=color_order):
            if result.status is Status.UNREADABLE:
                raise ImageError(result.source, result.error)
            scores.append(result.score)
        return np.asarray(scores, dtype=np.float64)

    def assess_crops(
        self, crops: Iterable[ImageInput], *, color_order: ColorOrder | None = None
    ) -> Iterator[CaptureResult]:
        """Decide on faces that are already aligned and cropped: the same results as
        :meth:`assess_many`, on the score alone (no detection, so no face-size, confidence
        or multiple-face reasons). Crops are resized to the model's input size; for best
        results align them as :meth:`facegate.spec.ScorerSpec.crop` does. A crop that is
        not square is resized anyway, with a note."""
        size = self.spec.input_size
        iterator = iter(crops)
        while chunk := list(itertools.islice(iterator, self.batch_size)):
            loaded: list[tuple[str, np.ndarray | None, tuple[int, int] | None, tuple[str, ...], str | None]] = []
            for crop in chunk:
                source = describe(crop)
                try:
                    image = load_image(crop, color_order=color_order)
                except ImageError as exc:
                    loaded.append((source, None, None, (), exc.cause))
                    continue
                h, w = image.rgb.shape[:2]
                notes = image.notes + ((f"crop is {w}x{h}, not square: resized to {size}x{size} anyway (align "
                                        "crops as ScorerSpec.crop does)",) if h != w else ())
                loaded.append((source, resize_crop(image.rgb, size), (w, h), notes, None))
            ok = [rgb for _, rgb, _, _, _ in loaded if rgb is not None]
            scores = self._score(np.stack(ok)) if ok else None
            k = 0
            for source, rgb, original_size, notes, error in loaded:
                if rgb is None:
                    yield CaptureResult(source, Status.UNREADABLE, error=error)
                    continue
                score = float(scores.ensemble[k])
                status, reasons = decide_crop(self.policy, score)
                yield CaptureResult(source, status, reasons, score, scores.member_scores(k),
                                    image_size=original_size, notes=notes, prompt=prompt_for(reasons))
                k += 1
