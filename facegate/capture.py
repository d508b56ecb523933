"""The capture stage: decode -> detect -> choose the primary face -> align and crop, and
measure the primary face's quality components.

One :class:`CaptureStage` serves every consumer (the gate, streams, evaluation, training
labels and data, the observer's calibration, benchmarks), so that labels and inference see
the same faces: its detector settings and crop geometry come from the weights' spec and
nowhere else.

    >>> from facegate import analyse
    >>> capture = analyse("photo.jpg")
    >>> capture.primary.eye_distance, capture.crop.shape
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .components import Components, measure_components
from .detection import Detector, Face, choose_primary, create_detector, in_full_image, merge_overlapping
from .errors import ConfigError, ImageError
from .frozen import FrozenValue
from .images import ColorOrder, ImageInput, Reduction, apply_gamma, describe, load_image, reduce_image
from .occlusion import OcclusionModel
from .orientation import TURNS, Orientation, OrientationModel, upright_copy
from .registry import default_spec
from .spec import ScorerSpec
from .working import Look, WorkingResolution

__all__ = ["Capture", "CaptureSettings", "CaptureStage", "analyse"]


@dataclass(frozen=True, eq=False)
class Capture(FrozenValue):
    """One capture after the capture stage.

    Attributes:
        source: file path or a description of the in-memory image.
        rgb: the decoded ``(H, W, 3)`` uint8 RGB image (None when it could not be decoded); a
            large photo's is reduced to its working resolution (``reduction``).
        faces: every face found.
        primary: the face the capture is about (see :func:`facegate.detection.choose_primary`).
        crop: the primary face aligned onto the spec's template, ``(S, S, 3)`` uint8.
        notes: what decoding did that a user should know (first frame of an animation, ...).
        error: why the capture could not be decoded or searched for faces.
        components: the primary face's quality components (:mod:`facegate.components`).
        found_by: how the faces were found when the first detection found none, or none
            sure enough: ``"brightened"``, ``"darkened"``, ``"padded"``; ``"turned 90"``,
            ``"turned 180"``, ``"turned 270"``: the photo is turned, and turning it that many
            degrees clockwise makes it upright (the orientation stage said so, or, without
            it, only a turned copy held a face); ``"tilted 90"`` (180, 270): the face was
            found on a turned copy of a photo the orientation stage holds upright, a head
            tilted far or a person lying down (its ``roll`` says how far); ``"found by
            yunet"`` (``"found by mtcnn"``): only the other shipped detector found it. None when the
            first detection found them. Coordinates are always the image's own; faces found
            by turning keep the face's own landmark order (so roll reads the turn).
        reduction: how ``rgb`` was reduced from the image (None: full resolution). Faces are
            always in the full image's coordinates; :meth:`in_rgb` maps them onto ``rgb``.
        orientation: the orientation stage's answer (:mod:`facegate.orientation`; None when
            it did not run). When it says the photo is turned, the faces were searched on the
            upright copy and ``found_by`` is ``"turned <degrees>"``.
    """

    source: str
    rgb: np.ndarray | None = None
    faces: tuple[Face, ...] = ()
    primary: Face | None = None
    crop: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None
    components: Components | None = None
    found_by: str | None = None
    reduction: Reduction | None = None
    orientation: Orientation | None = None

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the image (the full image's, when ``rgb`` is reduced)."""
        if self.reduction is not None:
            return self.reduction.size
        return None if self.rgb is None else (int(self.rgb.shape[1]), int(self.rgb.shape[0]))

    def in_rgb(self, points) -> np.ndarray:
        """Image coordinates (faces, landmarks) -> ``rgb``'s, which differ when ``rgb`` is
        the large photo reduced to its working resolution (:mod:`facegate.working`)."""
        return np.asarray(points, dtype=np.float64) if self.reduction is None else self.reduction.to_array(points)


@dataclass(frozen=True)
class CaptureSettings:
    """How captures are found and cropped: one frozen value that the gate, streams, the folder
    filter, the distributed engine, evaluation, training labels and benchmarks all pass to
    :class:`CaptureStage`, so that they see the same faces by construction. The detector's
    own settings (thresholds, face sizes, confidence cut-off) are not here: they belong to the
    weights and come from their spec.

    Attributes:
        detector: ``"mtcnn"`` (default), ``"yunet"``, or any object with
            ``detect(rgb) -> list[Face]`` (and optionally a ``name`` found in the spec).
        backend: ``"onnx"`` (default, no torch) or ``"torch"`` (facenet-pytorch's MTCNN).
        look_again: when the first detection finds no face, or none the gate would accept
            (below the spec's ``min_face_probability``), look again on a brightened or
            darkened copy, the image turned 90, 270 and 180 degrees, and a copy with a
            padded border, so that a dark, rotated or cut-off photo is reported as such
            instead of as having no face (up to five more detections, only for such photos).
        components: measure the primary face's quality components (about 2 ms).
        orientation: ask the orientation stage whether the photo is turned (about 1 ms) and,
            when it is, search the faces on the upright copy (:mod:`facegate.orientation`).
        working: how large photos are reduced for detection and cropping, from the policy's
            needs (:meth:`for_policy`; :class:`facegate.working.WorkingResolution`); None:
            always full resolution. Applies to detectors that can take a reduced image.
        max_pixels: the decompression-bomb guard: an image of more pixels is unreadable,
            with the limit named (None: :data:`facegate.images.MAX_PIXELS`, 250 million).
    """

    detector: Detector | str = "mtcnn"
    backend: str = "onnx"
    look_again: bool = True
    components: bool = True
    orientation: bool = True
    working: WorkingResolution | None = WorkingResolution()
    max_pixels: int | None = None

    def __post_init__(self):
        if self.max_pixels is not None and (not isinstance(self.max_pixels, int) or self.max_pixels < 1):
            raise ConfigError(f"max_pixels must be a positive whole number, got {self.max_pixels!r}")

    @classmethod
    def for_policy(cls, policy, *, working: bool = True, **settings) -> "CaptureSettings":
        """The settings a gate deciding by ``policy`` needs: the working resolution sized by
        the policy's smallest eye distance and second-face ratio (``working`` False: full
        resolution always)."""
        return cls(working=WorkingResolution.for_policy(policy) if working else None, **settings)

    def with_(self, **changes) -> "CaptureSettings":
        return replace(self, **changes)

    @property
    def detector_name(self) -> str | None:
        return self.detector if isinstance(self.detector, str) else getattr(self.detector, "name", None)


class CaptureStage:
    """Decode, detect, choose and crop, with the detector settings of one set of weights.

    Args:
        spec: the weights' :class:`ScorerSpec` (default: the shipped weights' spec); it
            gives the crop geometry and each detector's settings.
        settings: :class:`CaptureSettings` (default: ``CaptureSettings()``, the gate's).
        threads: intra-op threads of the detector's sessions (the process's pools are set
            once, by :func:`facegate.runtime.configure_threads`).
    """

    def __init__(self, spec: ScorerSpec | None = None, settings: CaptureSettings | None = None, *,
                 threads: int = 1, _detector: Detector | None = None, _orienter: OrientationModel | None = None,
                 _occlusion: OcclusionModel | None = None):
        settings = settings or CaptureSettings()
        if not isinstance(settings, CaptureSettings):
            raise ConfigError(f"settings must be a CaptureSettings, got {type(settings).__name__}")
        self.settings = settings
        self.spec = spec or default_spec()
        detector = _detector or settings.detector
        if isinstance(detector, str):
            detector = create_detector(detector, self.spec.detector_settings(detector), threads=threads,
                                       backend=settings.backend)
        self.detector = detector
        self.orienter = (_orienter or OrientationModel(threads=threads)) if settings.orientation else None
        self.occlusion = (_occlusion or OcclusionModel(threads=threads)) if settings.components else None
        self._other: Detector | None = None

    @property
    def components(self) -> bool:
        return self.settings.components

    @property
    def look_again(self) -> bool:
        return self.settings.look_again

    @property
    def working(self) -> WorkingResolution | None:
        return self.settings.working

    @property
    def max_pixels(self) -> int | None:
        return self.settings.max_pixels

    def sharing(self, **changes) -> "CaptureStage":
        """A stage with this one's spec and detector (nothing loaded again) and its settings
        less ``changes`` (``components``, ``look_again``, ``working``, ``max_pixels``):
        another policy's working resolution, a stream's frames."""
        if {"detector", "backend"} & set(changes):
            raise ConfigError("a stage sharing this one's detector keeps its detector and backend")
        return CaptureStage(self.spec, self.settings.with_(**changes), _detector=self.detector,
                            _orienter=self.orienter, _occlusion=self.occlusion)

    @property
    def detector_name(self) -> str | None:
        return getattr(self.detector, "name", None)

    @property
    def detector_settings(self) -> dict[str, Any]:
        """The spec's settings for this detector (empty for a detector it does not know)."""
        name = self.detector_name
        return self.spec.detector_settings(name) if name else {}

    @property
    def min_face_probability(self) -> float:
        """The spec's confidence cut-off for this detector (0 for a detector it does not know)."""
        return float(self.detector_settings.get("min_face_probability", 0.0))

    def analyse(self, image: ImageInput, *, color_order: ColorOrder | None = None) -> Capture:
        """Decode ``image``, find every face, choose the primary one and crop it. Bad data
        gives a :class:`Capture` with ``error`` set; a wrong argument raises ``ConfigError``."""
        source = describe(image)
        working = self.working if getattr(self.detector, "reduces", False) else None
        base = float(self.detector_settings.get("first_pass_min_face_size") or 40)
        try:
            if working is None:
                loaded = load_image(image, color_order=color_order, max_pixels=self.max_pixels)
            else:
                loaded = load_image(image, color_order=color_order, max_pixels=self.max_pixels,
                                    reduce_to=lambda size: (working.first(size, base) or Look(1, None)).reduction)
        except ImageError as exc:
            return Capture(source, error=exc.cause)
        if loaded.reduction is None:
            return self.analyse_rgb(loaded.rgb, source=source, notes=loaded.notes)
        return self._analyse_large(image, color_order, loaded, working, base, source)

    def _analyse_large(self, image, color_order, loaded, working: WorkingResolution, base: float,
                       source: str) -> Capture:
        """The working-resolution path (:mod:`facegate.working`): a first look at the reduced
        photo, a second one finer only when the decision needs it."""
        first = working.first(loaded.size, base)
        coarse = loaded
        refine = getattr(self.detector, "refine", None)
        orientation = None
        try:
            # the orientation on the first look's image; a turned photo's faces are searched on
            # its upright copy, there, as a photo the look again found turned
            orientation, turned, found_by = self._oriented(
                coarse.rgb, min_face_size=first.min_face_size / coarse.reduction.factor)
            if turned:
                faces = tuple(in_full_image(f, coarse.reduction) for f in turned)
                return self._capture(coarse.rgb, faces, found_by, source, coarse.notes, coarse.reduction, orientation)
            # landmarks are refined once, on the pixels the crop comes from
            faces = tuple(self.detector.detect(loaded.rgb, reduction=loaded.reduction,
                                               min_face_size=first.min_face_size, refine=False))
            primary = choose_primary(faces, loaded.size[::-1], self.min_face_probability)
            accepted = primary is not None and primary.probability >= self.min_face_probability
            second = working.second(loaded.size, first, primary, accepted, base)
            if second is not None and second.reduction != first.reduction:
                loaded = load_image(image, color_order=color_order, reduce_to=lambda size: second.reduction,
                                    max_pixels=self.max_pixels)
            if second is not None and second.detect:
                faces = tuple(self.detector.detect(loaded.rgb, reduction=loaded.reduction,
                                                   min_face_size=second.min_face_size))
            elif refine is not None:  # the faces of the first look, on the pixels kept
                faces = tuple(refine(loaded.rgb, faces, loaded.reduction))
            found_by = None
            if self.look_again:
                first_face = choose_primary(faces, loaded.size[::-1], self.min_face_probability)
                if first_face is None or first_face.probability < self.min_face_probability:
                    # on the first look's image (reduced to about a megapixel), for the faces
                    # it searched: a rotated or dark photo needs no detail to be told so
                    small, seen = coarse.rgb, coarse.reduction
                    while small.size > 3_000_000 and first.min_face_size / (2 * seen.factor) >= base:
                        small, seen = reduce_image(small, 2), Reduction(2 * seen.factor, seen.size, seen.origin)
                    again, how = self._look_again(small, 0.0 if first_face is None else first_face.probability,
                                                  first.min_face_size / seen.factor, orientation)
                    if again:
                        loaded, found_by = coarse, how
                        faces = tuple(in_full_image(f, seen) for f in again)
        except ImageError as exc:
            return Capture(source, error=exc.cause)
        except Exception as exc:  # a detector's own failure on odd data must not stop a batch
            return Capture(source, loaded.rgb, notes=loaded.notes, reduction=loaded.reduction, orientation=orientation,
                           error=f"face detection failed ({type(exc).__name__}: {exc})")
        return self._capture(loaded.rgb, faces, found_by, source, loaded.notes, loaded.reduction, orientation)

    def analyse_rgb(self, rgb: np.ndarray, *, source: str = "", notes: tuple[str, ...] = (),
                    orientation: Orientation | None = None) -> Capture:
        """:meth:`analyse` for an image already decoded to ``(H, W, 3)`` uint8 RGB.
        ``orientation``: an answer the orientation stage gave for an earlier frame of the same
        camera, used instead of asking again (see :meth:`analyse_frame`)."""
        try:
            orientation, faces, found_by = self._oriented(rgb, known=orientation)
            if not faces:
                faces, found_by = tuple(self.detector.detect(rgb)), None
            if self.look_again and found_by is None:
                first = choose_primary(faces, rgb.shape, self.min_face_probability)
                if first is None or first.probability < self.min_face_probability:  # nothing the gate would accept
                    again, how = self._look_again(rgb, better_than=0.0 if first is None else first.probability,
                                                  orientation=orientation)
                    if again:
                        faces, found_by = again, how
        except Exception as exc:  # a detector's own failure on odd data must not stop a batch
            return Capture(source, rgb, notes=notes, orientation=orientation,
                           error=f"face detection failed ({type(exc).__name__}: {exc})")
        return self._capture(rgb, faces, found_by, source, notes, orientation=orientation)

    def analyse_frame(self, rgb: np.ndarray, *, reduce_by: int = 1, source: str = "",
                      orientation: Orientation | None = None) -> Capture:
        """:meth:`analyse_rgb` for a video frame: the detector runs on the frame reduced
        ``reduce_by`` times (block means), where a webcam's faces stay far above the
        detector's smallest, and the faces come back in the frame's coordinates; crops and
        components are the full frame's. Detectors that cannot take a reduced image see the
        frame itself. ``orientation``: the orientation stage's answer for an earlier frame,
        reused (a camera does not turn between frames of one visit; the stream asks again
        for each new visit and now and then)."""
        if reduce_by <= 1 or not getattr(self.detector, "reduces", False):
            return self.analyse_rgb(rgb, source=source, orientation=orientation)
        height, width = rgb.shape[:2]
        seen = Reduction(reduce_by, (width, height))
        try:
            if height % reduce_by == 0 and width % reduce_by == 0:  # block means, as reduce_image, in 0.1 ms
                small = cv2.resize(rgb, (width // reduce_by, height // reduce_by), interpolation=cv2.INTER_AREA)
            else:
                small = reduce_image(rgb, reduce_by)
            orientation, faces, found_by = self._oriented(small, known=orientation)
            faces = tuple(in_full_image(f, seen) for f in faces)
            if not faces:
                faces, found_by = tuple(self.detector.detect(small, reduction=seen)), None
            if self.look_again and found_by is None:
                first = choose_primary(faces, rgb.shape, self.min_face_probability)
                if first is None or first.probability < self.min_face_probability:
                    again, how = self._look_again(small, 0.0 if first is None else first.probability,
                                                  orientation=orientation)
                    if again:
                        faces, found_by = tuple(in_full_image(f, seen) for f in again), how
        except Exception as exc:  # a detector's own failure on odd data must not stop a stream
            return Capture(source, rgb, error=f"face detection failed ({type(exc).__name__}: {exc})")
        return self._capture(rgb, faces, found_by, source, (), orientation=orientation)

    def _capture(self, rgb, faces, found_by, source, notes, reduction: Reduction | None = None,
                 orientation: Orientation | None = None) -> Capture:
        faces = merge_overlapping(faces)  # one face the detector boxed twice is one face
        size = reduction.size if reduction is not None else (rgb.shape[1], rgb.shape[0])
        primary = choose_primary(faces, size[::-1], self.min_face_probability)
        crop = components = None
        if primary is not None:
            if reduction is None:
                crop = self.spec.crop(rgb, primary.landmarks)
            else:
                crop = self.spec.crop(rgb, reduction.to_array(primary.landmarks), reduction=reduction.factor)
            if self.components:
                components = self.measure(rgb, primary, faces, reduction)
        return Capture(source, rgb, faces, primary, crop, notes, components=components, found_by=found_by,
                       reduction=reduction, orientation=orientation)

    def measure(self, rgb: np.ndarray, face: Face, faces: tuple[Face, ...] = (),
                reduction: Reduction | None = None) -> Components:
        """Quality components of any face of ``rgb`` (the image, or the image reduced as
        ``reduction`` says); other faces count towards ``second_face`` when the detector is
        at least as sure of them as the spec requires."""
        cut = self.min_face_probability
        return measure_components(rgb, face, [f for f in faces if f is face or f.probability >= cut], reduction,
                                  self.occlusion)

    def _oriented(self, image: np.ndarray, known: Orientation | None = None,
                  **options) -> tuple[Orientation | None, tuple[Face, ...], str | None]:
        """The orientation stage's answer for ``image`` (``known``: one given for an earlier
        frame) and, when it says the photo is turned, the faces of the upright copy in
        ``image``'s coordinates (none: search as usual)."""
        if self.orienter is None:
            return None, (), None
        orientation = known if known is not None else self.orienter(image)
        if not orientation.turned:
            return orientation, (), None
        h, w = image.shape[:2]
        found = self.detector.detect(upright_copy(image, orientation.turn), **options)
        faces = tuple(_turned_back(f, orientation.turn, w, h) for f in found)
        return orientation, faces, f"turned {orientation.turn}" if faces else None

    def _look_again(self, rgb: np.ndarray, better_than: float = 0.0, min_face_size: float | None = None,
                    orientation: Orientation | None = None) -> tuple[tuple[Face, ...], str | None]:
        cut = max(self.min_face_probability, better_than)
        options = {} if min_face_size is None else {"min_face_size": min_face_size}

        def detect(image):  # only a face the gate would accept, surer than the first look's, counts
            found = self.detector.detect(image, **options)
            return found if any(f.probability >= cut for f in found) else []

        grey_mean = float(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).mean())
        if grey_mean < 90 or grey_mean > 170:
            if found := detect(_exposure_normalised(rgb, grey_mean)):
                return tuple(found), "brightened" if grey_mean < 90 else "darkened"
        h, w = rgb.shape[:2]
        # a face on a turned copy of a photo the orientation stage holds upright is a head
        # tilted far (or a person lying down), not a turned photo
        word = "tilted" if orientation is not None and orientation.upright >= 0.5 else "turned"
        turns = (90, 270, 180)  # clockwise degrees that make the photo upright
        if orientation is not None:  # the turns the orientation stage finds likelier first
            turns = tuple(sorted(turns, key=lambda t: -orientation.probabilities[TURNS.index(t)]))
        for turn in turns:
            if found := detect(upright_copy(rgb, turn)):
                return tuple(_turned_back(f, turn, w, h) for f in found), f"{word} {turn}"
        # a padded border also lets the detector find sideways faces
        pad = max(8, int(0.3 * max(h, w)))
        if found := detect(cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)):
            return tuple(_shifted(f, -pad, -pad) for f in found), "padded"
        # last, the other detector: MTCNN and YuNet miss different faces (a face under a
        # hand, a drummer behind cymbals); its face counts when it passes that detector's own
        # cut-off (the gate then holds it to that cut-off: facegate.gate)
        other = self._other_detector()
        if other is not None:
            other_cut = max(better_than, float(self.spec.detector_settings(other.name).get("min_face_probability", 1.0)))
            found = other.detect(rgb)
            if any(f.probability >= other_cut for f in found):
                return tuple(found), f"found by {other.name}"
        return (), None

    def _other_detector(self) -> Detector | None:
        """The shipped detector this stage does not use (made once), for the last look; None
        for a detector of the user's own."""
        if self.detector_name not in _OTHER:
            return None
        if self._other is None:
            name = _OTHER[self.detector_name]
            self._other = create_detector(name, self.spec.detector_settings(name), threads=1, backend="onnx")
        return self._other

    def crop(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The aligned crop of any face of ``rgb`` (streams crop every face, not just one)."""
        return self.spec.crop(rgb, face.landmarks)


#: The detector the last look asks, for each shipped one.
_OTHER = {"mtcnn": "yunet", "yunet": "mtcnn"}


def _exposure_normalised(rgb: np.ndarray, grey_mean: float) -> np.ndarray:
    """A copy whose mean grey level is about 128, by a gamma curve (keeps black black and
    white white, unlike a gain)."""
    return apply_gamma(rgb, float(np.log(0.5) / np.log(min(max(grey_mean, 1.0), 254.0) / 255.0)))


def _shifted(face: Face, dx: float, dy: float) -> Face:
    x1, y1, x2, y2 = face.box
    return Face((x1 + dx, y1 + dy, x2 + dx, y2 + dy), face.probability, face.landmarks + np.array([dx, dy]))


def _turned_back(face: Face, turn: int, width: int, height: int) -> Face:
    """A face found in the image turned ``turn`` degrees clockwise, in the original image's
    coordinates (landmarks keep the face's own order)."""
    points = np.vstack([face.landmarks, [face.box[:2], face.box[2:]]])
    x, y = points[:, 0], points[:, 1]
    if turn == 90:  # original (u, v) -> turned (height-1-v, u)
        back = np.stack([y, height - 1 - x], 1)
    elif turn == 270:  # original (u, v) -> turned (v, width-1-u)
        back = np.stack([width - 1 - y, x], 1)
    else:  # 180: (u, v) -> (width-1-u, height-1-v)
        back = np.stack([width - 1 - x, height - 1 - y], 1)
    corners = back[5:]
    box = (*corners.min(0), *corners.max(0))
    return Face(box, face.probability, back[:5])


_DEFAULT: dict[tuple, CaptureStage] = {}


def analyse(image: ImageInput, *, color_order: ColorOrder | None = None, detector: str = "mtcnn",
            weights: str | Path | None = None) -> Capture:
    """:meth:`CaptureStage.analyse` with a stage built once per detector and weights folder."""
    key = (detector, str(weights))
    if key not in _DEFAULT:
        spec = ScorerSpec.load(Path(weights) / "spec.json") if weights else default_spec()
        _DEFAULT[key] = CaptureStage(spec, CaptureSettings(detector=detector))
    return _DEFAULT[key].analyse(image, color_order=color_order)
