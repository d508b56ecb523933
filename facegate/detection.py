"""Face detection: every face in an image, with its probability and five landmarks.

The detector is wrapped so that it always returns a list of :class:`Face` (never ``None``),
with landmarks in one fixed order: left eye, right eye, nose, left mouth corner, right
mouth corner, where "left" means smaller x in the image.
"""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from .errors import ConfigError
from .frozen import FrozenValue
from .images import Reduction

__all__ = ["Face", "Detector", "MTCNNDetector", "TorchMTCNNDetector", "YuNetDetector", "DETECTORS",
           "create_detector", "choose_primary", "faces_from_arrays", "in_full_image"]


@dataclass(frozen=True, eq=False)
class Face(FrozenValue):
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

    def __post_init__(self):
        points = np.array(self.landmarks, dtype=np.float64).reshape(5, 2)
        points.flags.writeable = False  # a frozen face cannot change under its holder
        object.__setattr__(self, "landmarks", points)
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "probability", float(self.probability))

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


class _TwoPassMTCNN(ABC):
    """MTCNN (Zhang et al. 2016) with facenet-pytorch's weights and pipeline, run in two passes:
    first searching faces of at least ``first_pass_min_face_size`` pixels (a shorter image
    pyramid: about a third less time on LFW photos, the same faces), and only when that finds
    nothing, again down to ``min_face_size``. A capture with a face too small for the first
    pass is still found (and then rejected as ``face_too_small`` rather than reported as
    ``no_face``). What the first pass can miss: a second face under that size beside a found
    one, which only matters for the ``multiple_faces`` rule when the primary face is itself
    under twice that size.
    """

    name = "mtcnn"
    #: detect() takes ``reduction``, ``min_face_size`` and ``refine`` (the capture stage's
    #: working resolution).
    reduces = True

    def __init__(self, *, min_face_size: int = 20, first_pass_min_face_size: int | None = 40,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), refine_landmarks: bool = False):
        self.min_face_size = int(min_face_size)
        self.first_pass_min_face_size = (int(first_pass_min_face_size) if first_pass_min_face_size
                                         and first_pass_min_face_size > min_face_size else None)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.refine_landmarks = bool(refine_landmarks)
        # MTCNN's image pyramid is empty below min_face_size, so smaller images cannot hold
        # a face it can see.
        self.min_image_side = max(12, self.min_face_size)

    @abstractmethod
    def _run(self, rgb: np.ndarray, min_face_size: float, reduction: Reduction | None,
             refine: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One pass: ``(N, 4)`` boxes, ``(N,)`` probabilities, ``(N, 5, 2)`` landmarks, in
        the full image's coordinates (refined when ``refine``)."""

    @abstractmethod
    def _onnx(self):
        """The :class:`facegate.mtcnn.OnnxMTCNN` whose O-Net refines landmarks."""

    def refine(self, rgb: np.ndarray, faces: Sequence[Face], reduction: Reduction | None = None) -> list[Face]:
        """``faces`` with landmarks refined on ``rgb`` (the image, or reduced as ``reduction``
        says: a finer decoding than the one they were found in); unchanged when
        ``refine_landmarks`` is off."""
        if not self.refine_landmarks or not faces:
            return list(faces)
        boxes = np.array([f.box for f in faces])
        if reduction is None:
            points = self._onnx().refine_landmarks(rgb, boxes)
        else:
            points = self._onnx().refine_landmarks(rgb, boxes, reduction=reduction.factor, origin=reduction.origin,
                                                   full_size=reduction.size)
        return [Face(f.box, f.probability, p) for f, p in zip(faces, points)]

    def detect(self, rgb: np.ndarray, *, reduction: Reduction | None = None,
               min_face_size: float | None = None, refine: bool = True) -> list[Face]:
        """Every face; with ``reduction``, ``rgb`` is the full image reduced (see
        :class:`facegate.images.Reduction`) and faces come in full-image coordinates; with
        ``min_face_size``, one pass down to that face side instead of the two passes;
        ``refine=False``: landmarks not refined yet (the caller refines the faces it keeps,
        on the pixels it keeps, with :meth:`refine`)."""
        width, height = reduction.size if reduction is not None else (rgb.shape[1], rgb.shape[0])
        side = min(width, height)
        if side < self.min_image_side:
            return []
        refine = refine and self.refine_landmarks
        if min_face_size is not None:
            return faces_from_arrays(*self._run(rgb, max(float(min_face_size), self.min_face_size), reduction, refine))
        found = None
        if self.first_pass_min_face_size is not None and side >= self.first_pass_min_face_size:
            found = self._run(rgb, self.first_pass_min_face_size, reduction, refine)
        if found is None or not len(found[0]):
            found = self._run(rgb, self.min_face_size, reduction, refine)
        return faces_from_arrays(*found)


class MTCNNDetector(_TwoPassMTCNN):
    """MTCNN on onnxruntime: facenet-pytorch's P-, R- and O-Net as ONNX graphs shipped in
    ``facegate/weights/mtcnn`` (made by ``python -m facegate.mtcnn_export``), with the
    pyramid, thresholds and NMS done as facenet-pytorch does them, without torch.

    Args:
        min_face_size: smallest face side searched for, in pixels.
        first_pass_min_face_size: smallest face side of the first pass (None: one pass).
        thresholds: MTCNN's three stage thresholds.
        threads: onnxruntime intra-op threads.
        models: folder of ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx`` (default: shipped).
    """

    def __init__(self, *, min_face_size: int = 20, first_pass_min_face_size: int | None = 40,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), refine_landmarks: bool = False, threads: int = 1,
                 models: str | None = None):
        super().__init__(min_face_size=min_face_size, first_pass_min_face_size=first_pass_min_face_size,
                         thresholds=thresholds, refine_landmarks=refine_landmarks)
        from .mtcnn import OnnxMTCNN

        self._mtcnn = OnnxMTCNN(models, min_face_size=self.min_face_size, thresholds=self.thresholds,
                                threads=threads)

    def _onnx(self):
        return self._mtcnn

    def _run(self, rgb, min_face_size, reduction, refine):
        if reduction is None:
            return self._mtcnn.detect(rgb, min_face_size=min_face_size, refine=refine)
        return self._mtcnn.detect(rgb, min_face_size=min_face_size, refine=refine,
                                  reduction=reduction.factor, origin=reduction.origin, full_size=reduction.size)


class TorchMTCNNDetector(_TwoPassMTCNN):
    """facenet-pytorch's own MTCNN (needs torch): the reference the ONNX detector is
    tested against, and a choice for users who run on a GPU.

    Args: as :class:`MTCNNDetector`, with ``device`` (a torch device) instead of ``threads``.
    """

    reduces = False  # facenet-pytorch's pipeline sees only the image it is given

    def __init__(self, *, min_face_size: int = 20, first_pass_min_face_size: int | None = 40,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), refine_landmarks: bool = False, device: str = "cpu",
                 threads: int | None = None):
        super().__init__(min_face_size=min_face_size, first_pass_min_face_size=first_pass_min_face_size,
                         thresholds=thresholds, refine_landmarks=refine_landmarks)
        import torch
        from facenet_pytorch import MTCNN

        from .runtime import torch_imported

        torch_imported()  # torch's pool is the process's: sized once, from its budget
        self._torch = torch
        self._mtcnn = MTCNN(min_face_size=self.min_face_size, thresholds=list(self.thresholds), keep_all=True,
                            post_process=False, device=torch.device(device)).eval()
        # Channels-last weights make every activation channels-last, and torch's CPU
        # max-pooling is 5-10x faster in that layout than in NCHW; detections are unchanged.
        self._mtcnn.to(memory_format=torch.channels_last)
        self._refiner = None

    def _run(self, rgb, min_face_size, reduction, refine):
        import copy

        if reduction is not None:
            raise ConfigError("facenet-pytorch's MTCNN detects at full resolution only")
        mtcnn = self._mtcnn
        if min_face_size != mtcnn.min_face_size:
            mtcnn = copy.copy(mtcnn)  # shares the three networks; thread-safe
            mtcnn.min_face_size = min_face_size
        with self._torch.inference_mode():
            boxes, probs, points = mtcnn.detect(rgb, landmarks=True)
        if boxes is None:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        if refine:  # the same refinement as the ONNX detector's, on its O-Net graph
            points = self._onnx().refine_landmarks(rgb, boxes)
        return boxes, probs, points

    def _onnx(self):
        if self._refiner is None:
            from .mtcnn import OnnxMTCNN

            self._refiner = OnnxMTCNN(threads=max(1, self._torch.get_num_threads()))
        return self._refiner


def in_full_image(face: Face, reduction: Reduction) -> Face:
    """A face found in an image reduced as ``reduction`` says, in the full image's coordinates."""
    corners = reduction.to_full(np.reshape(face.box, (2, 2))).reshape(-1)
    return Face(tuple(corners), face.probability, reduction.to_full(face.landmarks))


def faces_from_arrays(boxes, probs, points) -> list[Face]:
    """``(N, 4)`` boxes, ``(N,)`` probabilities, ``(N, 5, 2)`` landmarks -> faces, dropping
    any with a non-finite coordinate."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
    return [Face(tuple(float(v) for v in box), float(prob), pts)
            for box, prob, pts in zip(boxes, probs, points)
            if np.isfinite(box).all() and np.isfinite(pts).all()]


class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``), several times faster than MTCNN on a CPU.

    The model file (Apache-2.0, from OpenCV's model zoo) ships in ``facegate/weights``.
    Landmarks follow the same contract as :class:`MTCNNDetector`. OpenCV's threads are set
    process-wide by :func:`facegate.runtime.configure_threads`.

    Args:
        model: path of the YuNet ONNX file (default: the shipped one).
        score_threshold: minimum face confidence.
        nms_threshold: overlap above which boxes are merged.
    """

    name = "yunet"

    def __init__(self, model: str | None = None, *, score_threshold: float = 0.7, nms_threshold: float = 0.3):
        import cv2

        if model is None:
            from importlib import resources

            model = str(resources.files("facegate") / "weights" / "yunet_2023mar.onnx")
        # OpenCV 5's graph engine warns on every detector it creates that targets are not
        # supported (they are not used here); keep its log to errors
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        self._create = lambda size: cv2.FaceDetectorYN.create(model, "", size, score_threshold, nms_threshold, 5000)
        self._local = threading.local()  # a cv2 detector's input size is state: one per thread

    def detect(self, rgb: np.ndarray, *, reduction: Reduction | None = None,
               min_face_size: float | None = None, refine: bool = True) -> list[Face]:
        """Every face; with ``reduction``, ``rgb`` is the full image reduced and faces come in
        full-image coordinates (YuNet sees the reduced image as it is). ``min_face_size`` and
        ``refine`` are accepted for the capture stage and not needed: YuNet's cost does not
        depend on the face size, and it has no refinement."""
        faces = self._detect(rgb)
        return faces if reduction is None else [in_full_image(f, reduction) for f in faces]

    reduces = True

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        if min(height, width) < 10:
            return []
        detector = getattr(self._local, "detector", None)
        if detector is None:
            detector = self._local.detector = self._create((width, height))
        detector.setInputSize((width, height))
        _, found = detector.detect(np.ascontiguousarray(rgb[..., ::-1]))
        if found is None:
            return []
        found = np.asarray(found, dtype=np.float64).reshape(-1, 15)
        boxes = np.column_stack([found[:, :2], found[:, :2] + found[:, 2:4]])
        points = found[:, 4:14].reshape(-1, 5, 2)
        eyes = np.take_along_axis(points[:, :2], np.argsort(points[:, :2, :1], axis=1), axis=1)
        mouth = np.take_along_axis(points[:, 3:5], np.argsort(points[:, 3:5, :1], axis=1), axis=1)
        return faces_from_arrays(boxes, found[:, 14], np.concatenate([eyes, points[:, 2:3], mouth], axis=1))


#: The terms of the detector weights shipped in ``facegate/weights`` (each NOTICE file there
#: has the source and digest); YuNet's and MTCNN's weights are not trained by facegate.
SHIPPED_DETECTOR_TERMS = {
    "mtcnn": "MIT (facenet-pytorch 2.5.3's conversion of the MTCNN authors' released models; weights/mtcnn/NOTICE.txt)",
    "yunet": "Apache-2.0 (OpenCV model zoo, face_detection_yunet_2023mar; weights/yunet_NOTICE.txt)",
}

#: Detectors by name; ``backend="torch"`` picks facenet-pytorch's own MTCNN.
DETECTORS = {"mtcnn": MTCNNDetector, "yunet": YuNetDetector}

#: Settings in a spec that are for the policy, not for the detector's constructor.
POLICY_SETTINGS = ("min_face_probability",)


def create_detector(name: str = "mtcnn", settings: dict[str, Any] | None = None, *, threads: int = 1,
                    backend: str = "onnx") -> Detector:
    """A detector by name with the spec's ``settings`` for it (``ScorerSpec.detector_settings``).

    ``"mtcnn"`` (most accurate landmarks) runs on onnxruntime, or with ``backend="torch"``
    on facenet-pytorch; ``"yunet"`` (fast) runs on OpenCV.
    """
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}")
    if backend not in ("onnx", "torch"):
        raise ConfigError(f"unknown backend {backend!r}; choose 'onnx' or 'torch'")
    options = {k: v for k, v in (settings or {}).items() if k not in POLICY_SETTINGS}
    if name == "yunet":
        return YuNetDetector(**options)
    if backend == "torch" and name == "mtcnn":
        from .extras import require

        require("torch", "facenet-pytorch's MTCNN (--backend torch)")
    cls = TorchMTCNNDetector if backend == "torch" else MTCNNDetector
    return cls(**options, threads=threads)


#: A face with less than this share of its box inside the picture never displaces one that
#: is mostly inside (LFW's bystanders cut by the frame's edge have 20-50%).
MOSTLY_INSIDE = 0.6


def visible_share(face: Face, image_shape: tuple[int, ...]) -> float:
    """The share of the face's box that lies inside the picture."""
    x1, y1, x2, y2 = face.box
    area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    if area <= 0:
        return 0.0
    height, width = image_shape[0], image_shape[1]
    inside = max(min(x2, width) - max(x1, 0.0), 0.0) * max(min(y2, height) - max(y1, 0.0), 0.0)
    return inside / area


def merge_overlapping(faces: Sequence[Face], overlap: float = 0.6) -> tuple[Face, ...]:
    """Faces with the boxes the detector gave twice for one face kept once, the surer of
    each such pair: boxes that share ``overlap`` of the smaller one's area (one box inside
    or nearly over another). Two people side by side share far less."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.probability):
        x1, y1, x2, y2 = face.box
        area = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
        duplicate = False
        for other in kept:
            a1, b1, a2, b2 = other.box
            inter = max(min(x2, a2) - max(x1, a1), 0.0) * max(min(y2, b2) - max(y1, b1), 0.0)
            smaller = min(area, max(a2 - a1, 0.0) * max(b2 - b1, 0.0))
            if smaller > 0 and inter / smaller >= overlap:
                duplicate = True
                break
        if not duplicate:
            kept.append(face)
    order = {id(f): k for k, f in enumerate(faces)}
    return tuple(sorted(kept, key=lambda f: order[id(f)]))


def choose_primary(faces: Sequence[Face], image_shape: tuple[int, ...], min_probability: float = 0.0
                   ) -> Face | None:
    """The face the capture is about, as a person choosing the subject would.

    Rule: faces the detector is sure of (``min_probability``, the policy's cut-off) come
    before unsure ones, and faces mostly inside the picture (:data:`MOSTLY_INSIDE`) before
    faces mostly outside it; among those, the faces whose visible size (side times the
    square root of the visible share) is at least 80% of the largest's, and of them the one
    nearest the image centre. A clearly larger face wins; two of about the same size are
    told apart by position, as a photographer frames the subject; a bystander cut by the
    frame's edge, or a second, unsure box around the same face, never wins over a face
    that is plainly there.
    """
    if not faces:
        return None
    pool = [f for f in faces if f.probability >= min_probability] or list(faces)
    pool = [f for f in pool if visible_share(f, image_shape) >= MOSTLY_INSIDE] or pool
    size = {id(f): f.side * math.sqrt(visible_share(f, image_shape)) for f in pool}
    largest = max(size.values())
    candidates = [f for f in pool if size[id(f)] >= 0.8 * largest]
    cy, cx = image_shape[0] / 2.0, image_shape[1] / 2.0
    return min(candidates, key=lambda f: (f.center[0] - cx) ** 2 + (f.center[1] - cy) ** 2)
