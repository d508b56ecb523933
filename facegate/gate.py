"""The capture gate: detect -> crop -> score -> decide, for one image or a stream of them.

Build one :class:`Gate` (it loads the models and fixes threads and device once), then call
:meth:`Gate.assess` or :meth:`Gate.assess_many`. Every input gets a :class:`CaptureResult`,
bad files included.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import torch

from .detection import Detector, Face, MTCNNDetector, choose_primary, create_detector
from .errors import ConfigError, ImageError
from .images import ColorOrder, ImageInput, describe, load_image, load_rgb
from .policy import Policy, Status, decide
from .scorer import Scorer

__all__ = ["CaptureResult", "Gate"]


@dataclass(frozen=True)
class CaptureResult:
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

    @property
    def accepted(self) -> bool:
        return self.status is Status.ACCEPTED

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "status": self.status.value,
            "reasons": list(self.reasons),
            "score": None if self.score is None else round(self.score, 2),
            "member_scores": {k: round(v, 2) for k, v in self.member_scores.items()},
            "face": None if self.face is None else self.face.to_dict(),
            "faces": len(self.faces),
            "image_size": None if self.image_size is None else list(self.image_size),
            "error": self.error,
            "notes": list(self.notes),
        }


@dataclass
class _Pending:
    source: str
    rgb: np.ndarray | None = None
    faces: tuple[Face, ...] = ()
    primary: Face | None = None
    crop: np.ndarray | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()


class Gate:
    """Assess face captures.

    A Gate holds no per-call state, so one instance may be shared by several threads
    (tests/test_threads.py checks results against a serial run); torch's own intra-op
    threads are set once here, process-wide.

    Args:
        policy: a :class:`Policy`, or the path of a policy file (``facegate calibrate``
            writes one); default thresholds otherwise.
        weights: folder of quality weights (default: shipped weights).
        views: test-time views: ``"none"``, ``"flip"`` or ``"full"``.
        device: torch device for detection and scoring.
        threads: torch CPU threads (set once, process-wide); None leaves torch's choice.
        batch_size: faces scored per forward pass in :meth:`assess_many`.
        detector: ``"mtcnn"`` (default), ``"yunet"`` (faster), or any object with
            ``detect(rgb) -> list[Face]``.
        workers: threads that decode and detect the next batch while this one is scored
            (0: all in the caller's thread).
        onnx: score through this graph from ``facegate export`` with onnxruntime instead
            of PyTorch (much less overhead per call; no per-model scores).

    Example:
        >>> gate = Gate(threads=2)
        >>> result = gate.assess("enrol/alice.jpg")
        >>> result.status, result.reasons, result.score
    """

    def __init__(
        self,
        *,
        policy: Policy | str | Path | None = None,
        weights: str | Path | None = None,
        views: str | Sequence[str] = "full",
        device: str = "cpu",
        threads: int | None = None,
        batch_size: int = 16,
        detector: Detector | str = "mtcnn",
        workers: int = 0,
        onnx: str | Path | None = None,
    ):
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"threads must be >= 1, got {threads}")
            torch.set_num_threads(threads)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if workers < 0:
            raise ConfigError(f"workers must be >= 0, got {workers}")
        self.workers = workers
        if onnx is not None:  # views are the ones folded into the exported graph
            from .export import OnnxScorer

            self.scorer = OnnxScorer(onnx, weights, threads)
        else:
            self.scorer = Scorer(weights, views=views, device=device)
        if isinstance(policy, (str, Path)):
            policy = Policy.load(policy)
        self.policy = (policy or Policy()).with_threshold(self.scorer.spec.default_threshold)
        if isinstance(detector, str):
            detector = MTCNNDetector(device=device) if detector == "mtcnn" else create_detector(detector)
        self.detector = detector
        self.batch_size = batch_size

    @property
    def spec(self):
        return self.scorer.spec

    def assess(self, image: ImageInput, *, color_order: ColorOrder | None = None) -> CaptureResult:
        """Assess one capture (path, PIL image, or numpy array with ``color_order``)."""
        return next(self.assess_many([image], color_order=color_order))

    def assess_many(
        self, images: Iterable[ImageInput], *, color_order: ColorOrder | None = None
    ) -> Iterator[CaptureResult]:
        """Assess captures lazily, scoring faces in batches; results come in input order.

        With ``workers > 0`` the next batch is decoded and detected in a thread pool while
        the current one is scored; order is kept because futures are read in submission order.
        """
        iterator = iter(images)

        def next_chunk():
            return list(itertools.islice(iterator, self.batch_size))

        if self.workers == 0:
            while chunk := next_chunk():
                yield from self._score_and_decide([self._detect_and_crop(im, color_order) for im in chunk])
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="facegate-detect") as pool:
            submit = lambda chunk: [pool.submit(self._detect_and_crop, im, color_order) for im in chunk]  # noqa: E731
            ahead = submit(next_chunk())
            while ahead:
                current, ahead = ahead, submit(next_chunk())
                yield from self._score_and_decide([f.result() for f in current])

    def score_crops(
        self, crops: Iterable[ImageInput], *, color_order: ColorOrder | None = None
    ) -> np.ndarray:
        """Quality scores (0-100) of faces that are already aligned and cropped.

        Crops are resized to the model's input size; for best results align them as
        :meth:`facegate.spec.ScorerSpec.crop` does.
        """
        size = self.spec.input_size
        arrays = []
        for crop in crops:
            rgb = load_rgb(crop, color_order=color_order)
            if rgb.shape[:2] != (size, size):
                interp = cv2.INTER_AREA if min(rgb.shape[:2]) > size else cv2.INTER_LINEAR
                rgb = cv2.resize(rgb, (size, size), interpolation=interp)
            arrays.append(rgb)
        scores = [self.scorer.score(np.stack(arrays[i : i + self.batch_size]))[0]
                  for i in range(0, len(arrays), self.batch_size)]
        return np.concatenate(scores) if scores else np.zeros(0)

    def _detect_and_crop(self, image: ImageInput, color_order: ColorOrder | None) -> _Pending:
        item = _Pending(describe(image))
        try:
            loaded = load_image(image, color_order=color_order)
            item.rgb, item.notes = loaded.rgb, loaded.notes
        except ImageError as exc:
            item.error = exc.cause
            return item
        try:
            item.faces = tuple(self.detector.detect(item.rgb))
        except (RuntimeError, ValueError, cv2.error) as exc:
            item.error = f"face detection failed ({exc})"
            return item
        item.primary = choose_primary(item.faces, item.rgb.shape)
        if item.primary is not None:
            item.crop = self.spec.crop(item.rgb, item.primary.landmarks)
        return item

    def _score_and_decide(self, pending: list[_Pending]) -> Iterator[CaptureResult]:
        with_face = [p for p in pending if p.crop is not None]
        scores, per_member = self.scorer.score(np.stack([p.crop for p in with_face])) if with_face else ([], [])
        scored = {id(p): k for k, p in enumerate(with_face)}
        for item in pending:
            if item.error is not None:
                yield CaptureResult(item.source, Status.UNREADABLE, error=item.error)
                continue
            size = (item.rgb.shape[1], item.rgb.shape[0])
            score, members = None, {}
            if id(item) in scored:
                k = scored[id(item)]
                score = float(scores[k])
                members = {n: float(per_member[m, k]) for m, n in enumerate(self.scorer.member_names)}
            status, reasons = decide(self.policy, item.faces, item.primary, score)
            yield CaptureResult(item.source, status, reasons, score, members, item.primary, item.faces, size,
                                notes=item.notes)
