"""Face detection: every face in an image, with its probability and five landmarks.

The detector is wrapped so that it always returns a list of :class:`Face` (never ``None``),
with landmarks in one fixed order: left eye, right eye, nose, left mouth corner, right
mouth corner, where "left" means smaller x in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import torch

__all__ = ["Face", "Detector", "MTCNNDetector", "YuNetDetector", "create_detector", "choose_primary"]


@dataclass(frozen=True)
class Face:
    """One detected face, in pixel coordinates of the image it was found in.

    Attributes:
        box: ``(x1, y1, x2, y2)``.
        probability: detector confidence in [0, 1].
        landmarks: ``(5, 2)`` float array of (x, y): left eye, right eye, nose,
            left and right mouth corners.
    """

    box: tuple[float, float, float, float]
    probability: float
    landmarks: np.ndarray

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def side(self) -> float:
        """Geometric mean of width and height: one number for the face's size."""
        return math.sqrt(max(self.width, 0.0) * max(self.height, 0.0))

    @property
    def eye_distance(self) -> float:
        """Inter-eye distance in pixels, the size measure face standards use."""
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "probability": round(float(self.probability), 4),
            "eye_distance": round(self.eye_distance, 1),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
        }


class Detector(Protocol):
    """Anything that finds faces in an ``(H, W, 3)`` uint8 RGB array."""

    def detect(self, rgb: np.ndarray) -> list[Face]: ...


class MTCNNDetector:
    """facenet-pytorch's MTCNN (its P/R/O-Net weights ship inside facenet-pytorch).

    Detection runs in two passes: first searching faces of at least ``first_pass_min_face_size``
    pixels (a shorter image pyramid: about a third less time on LFW photos, the same faces),
    and only when that finds nothing, again down to ``min_face_size``. A capture with a face
    too small for the first pass is still found (and then rejected as ``face_too_small``
    rather than reported as ``no_face``). What the first pass can miss: a second face under
    that size beside a found one, which only matters for the ``multiple_faces`` rule when the
    primary face is itself under twice that size.

    Args:
        min_face_size: smallest face side searched for, in pixels.
        first_pass_min_face_size: smallest face side of the first pass (None: one pass).
        thresholds: MTCNN's three stage thresholds.
        device: torch device for the three networks.
    """

    def __init__(
        self,
        *,
        min_face_size: int = 20,
        first_pass_min_face_size: int | None = 40,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        device: str | torch.device = "cpu",
    ):
        import copy

        from facenet_pytorch import MTCNN  # heavy import, kept local

        self._mtcnn = MTCNN(
            min_face_size=min_face_size,
            thresholds=list(thresholds),
            keep_all=True,
            post_process=False,
            device=torch.device(device),
        )
        self._mtcnn.eval()
        # Channels-last weights make every activation channels-last, and torch's CPU
        # max-pooling is 5-10x faster in that layout than in NCHW (measured with torch 2.15:
        # 5.5 vs 1.0 ms for R-Net's pool); detections are unchanged (landmarks within 1e-4 px).
        self._mtcnn.to(memory_format=torch.channels_last)
        self._first_pass = None
        if first_pass_min_face_size and first_pass_min_face_size > min_face_size:
            self._first_pass = copy.copy(self._mtcnn)  # shares the three networks
            self._first_pass.min_face_size = first_pass_min_face_size
        # MTCNN's image pyramid is empty below min_face_size (and facenet-pytorch then fails
        # on an empty torch.cat), so smaller images cannot hold a face it can see.
        self.min_image_side = max(12, int(min_face_size))

    def detect(self, rgb: np.ndarray) -> list[Face]:
        side = min(rgb.shape[0], rgb.shape[1])
        if side < self.min_image_side:
            return []
        boxes = None
        with torch.inference_mode():
            if self._first_pass is not None and side >= self._first_pass.min_face_size:
                boxes, probs, points = self._first_pass.detect(rgb, landmarks=True)
            if boxes is None:
                boxes, probs, points = self._mtcnn.detect(rgb, landmarks=True)
        if boxes is None:
            return []
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        probs = np.asarray(probs, dtype=np.float64).reshape(-1)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
        faces = []
        for box, prob, pts in zip(boxes, probs, points):
            if not (np.isfinite(box).all() and np.isfinite(pts).all()):
                continue
            faces.append(
                Face(
                    box=tuple(float(v) for v in box),
                    probability=float(prob),
                    landmarks=pts,
                )
            )
        return faces


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``), about 4x faster than MTCNN on a CPU.

    The model file (Apache-2.0, from OpenCV's model zoo) ships in ``facegate/weights``.
    Landmarks follow the same contract as :class:`MTCNNDetector`.

    Args:
        model: path of the YuNet ONNX file (default: the shipped one).
        score_threshold: minimum face confidence.
        nms_threshold: overlap above which boxes are merged.
    """

    def __init__(self, model: str | None = None, *, score_threshold: float = 0.7, nms_threshold: float = 0.3):
        import cv2

        if model is None:
            from importlib import resources

            model = str(resources.files("facegate") / "weights" / "yunet_2023mar.onnx")
        self._create = lambda size: cv2.FaceDetectorYN.create(model, "", size, score_threshold, nms_threshold, 5000)
        self._detectors: dict[int, object] = {}
        self._cv2 = cv2

    def detect(self, rgb: np.ndarray) -> list[Face]:
        import threading

        height, width = rgb.shape[:2]
        if min(height, width) < 10:
            return []
        # One cv2 detector per thread: its input size is state.
        key = threading.get_ident()
        detector = self._detectors.get(key)
        if detector is None:
            detector = self._detectors[key] = self._create((width, height))
        detector.setInputSize((width, height))
        _, found = detector.detect(np.ascontiguousarray(rgb[..., ::-1]))
        faces = []
        for row in [] if found is None else found:
            x, y, w, h = (float(v) for v in row[:4])
            pts = np.asarray(row[4:14], dtype=np.float64).reshape(5, 2)
            eyes = pts[:2][np.argsort(pts[:2, 0])]
            mouth = pts[3:5][np.argsort(pts[3:5, 0])]
            landmarks = np.vstack([eyes, pts[2:3], mouth])
            if np.isfinite(landmarks).all():
                faces.append(Face((x, y, x + w, y + h), float(row[14]), landmarks))
        return faces


DETECTORS = {"mtcnn": MTCNNDetector, "yunet": YuNetDetector}


def create_detector(name: str = "mtcnn", **options) -> Detector:
    """A detector by name: ``"mtcnn"`` (default, most accurate landmarks) or ``"yunet"`` (fast)."""
    from .errors import ConfigError

    try:
        return DETECTORS[name](**options)
    except KeyError:
        raise ConfigError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}") from None


def choose_primary(faces: Sequence[Face], image_shape: tuple[int, ...]) -> Face | None:
    """The face the capture is about.

    Rule: among faces whose side is at least 80% of the largest face's side, the one whose
    centre is nearest the image centre. A clearly larger face wins; two faces of about the
    same size are told apart by position, as a photographer frames the subject.
    """
    if not faces:
        return None
    largest = max(face.side for face in faces)
    candidates = [face for face in faces if face.side >= 0.8 * largest]
    cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
    return min(candidates, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)
