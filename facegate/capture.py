"""The capture stage: decode -> detect -> choose the primary face -> align and crop.

One :class:`CaptureStage` serves every consumer (the gate, streams, evaluation, training
labels and data, the observer's calibration, benchmarks), so that labels and inference see
the same faces: its detector settings and crop geometry come from the weights' spec and
nowhere else.

    >>> from facegate import analyse
    >>> capture = analyse("photo.jpg")
    >>> capture.primary.eye_distance, capture.crop.shape
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .detection import Detector, Face, choose_primary, create_detector
from .errors import ImageError
from .frozen import FrozenValue
from .images import ColorOrder, ImageInput, describe, load_image
from .scorer import default_weights_dir
from .spec import ScorerSpec

__all__ = ["Capture", "CaptureStage", "analyse"]


@dataclass(frozen=True, eq=False)
class Capture(FrozenValue):
    """One capture after the capture stage.

    Attributes:
        source: file path or a description of the in-memory image.
        rgb: the decoded ``(H, W, 3)`` uint8 RGB image (None when it could not be decoded).
        faces: every face found.
        primary: the face the capture is about (see :func:`facegate.detection.choose_primary`).
        crop: the primary face aligned onto the spec's template, ``(S, S, 3)`` uint8.
        notes: what decoding did that a user should know (first frame of an animation, ...).
        error: why the capture could not be decoded or searched for faces.
    """

    source: str
    rgb: np.ndarray | None = None
    faces: tuple[Face, ...] = ()
    primary: Face | None = None
    crop: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(width, height)`` of the decoded image."""
        return None if self.rgb is None else (int(self.rgb.shape[1]), int(self.rgb.shape[0]))


class CaptureStage:
    """Decode, detect, choose and crop, with the detector settings of one set of weights.

    Args:
        spec: the weights' :class:`ScorerSpec` (default: the shipped weights' spec); it
            gives the crop geometry and each detector's settings.
        detector: ``"mtcnn"`` (default), ``"yunet"``, or any object with
            ``detect(rgb) -> list[Face]`` (and optionally a ``name`` found in the spec).
        threads: intra-op threads of the detector.
        backend: ``"onnx"`` (default, no torch) or ``"torch"`` (facenet-pytorch's MTCNN).
    """

    def __init__(self, spec: ScorerSpec | None = None, *, detector: Detector | str = "mtcnn", threads: int = 1,
                 backend: str = "onnx"):
        self.spec = spec or ScorerSpec.load(default_weights_dir() / "spec.json")
        if isinstance(detector, str):
            detector = create_detector(detector, self.spec.detector_settings(detector), threads=threads,
                                       backend=backend)
        self.detector = detector

    @property
    def detector_name(self) -> str | None:
        return getattr(self.detector, "name", None)

    @property
    def detector_settings(self) -> dict[str, Any]:
        """The spec's settings for this detector (empty for a detector it does not know)."""
        name = self.detector_name
        return self.spec.detector_settings(name) if name else {}

    def analyse(self, image: ImageInput, *, color_order: ColorOrder | None = None) -> Capture:
        """Decode ``image``, find every face, choose the primary one and crop it. Bad data
        gives a :class:`Capture` with ``error`` set; a wrong argument raises ``ConfigError``."""
        source = describe(image)
        try:
            loaded = load_image(image, color_order=color_order)
        except ImageError as exc:
            return Capture(source, error=exc.cause)
        return self.analyse_rgb(loaded.rgb, source=source, notes=loaded.notes)

    def analyse_rgb(self, rgb: np.ndarray, *, source: str = "", notes: tuple[str, ...] = ()) -> Capture:
        """:meth:`analyse` for an image already decoded to ``(H, W, 3)`` uint8 RGB."""
        try:
            faces = tuple(self.detector.detect(rgb))
        except Exception as exc:  # a detector's own failure on odd data must not stop a batch
            return Capture(source, rgb, notes=notes, error=f"face detection failed ({type(exc).__name__}: {exc})")
        primary = choose_primary(faces, rgb.shape)
        crop = None if primary is None else self.spec.crop(rgb, primary.landmarks)
        return Capture(source, rgb, faces, primary, crop, notes)

    def crop(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The aligned crop of any face of ``rgb`` (streams crop every face, not just one)."""
        return self.spec.crop(rgb, face.landmarks)


_DEFAULT: dict[tuple, CaptureStage] = {}


def analyse(image: ImageInput, *, color_order: ColorOrder | None = None, detector: str = "mtcnn",
            weights: str | Path | None = None) -> Capture:
    """:meth:`CaptureStage.analyse` with a stage built once per detector and weights folder."""
    key = (detector, str(weights))
    if key not in _DEFAULT:
        spec = ScorerSpec.load(Path(weights or default_weights_dir()) / "spec.json")
        _DEFAULT[key] = CaptureStage(spec, detector=detector)
    return _DEFAULT[key].analyse(image, color_order=color_order)
