"""MTCNN face detection without torch: facenet-pytorch's detector on onnxruntime and numpy.

The three networks (P-, R- and O-Net) are ONNX graphs exported from facenet-pytorch's own
weights by :mod:`facegate.mtcnn_export` and shipped in ``facegate/weights/mtcnn``. Everything
around them is facenet-pytorch 2.5.3's ``detect_face`` and ``MTCNN.detect`` redone in numpy,
step by step and in float32 as torch computes it:

* image pyramid: scales ``12 / min_face_size * factor**k`` while the short side stays >= 12 px;
* resampling: ``torch.nn.functional.interpolate(mode="area")`` (adaptive average pooling),
  made bit-exact here: every window's sum of uint8 pixels is an integer, taken exactly from an
  integral image, and divided by the window's height and then its width in float32 as torch
  does (OpenCV's ``INTER_AREA`` weights pixels differently and is not used);
* P-Net candidates (``generateBoundingBox``), per-scale NMS at IoU 0.5 and NMS at 0.7 across
  scales (torchvision's ``nms``: IoU without the +1, stable descending order), box regression
  and ``rerec``;
* R-Net on all candidates in one batch, crops taken as facenet-pytorch takes them (``pad``:
  the part of the box inside the image, resampled to 24x24 without zero padding), threshold,
  NMS 0.7, ``bbreg``, ``rerec``;
* O-Net on all survivors in one batch (48x48), threshold, landmarks from the box before
  regression, ``bbreg``, and the final "Min" NMS at 0.7 (facenet-pytorch's ``nms_numpy``);
* ``MTCNN.detect``'s output order (largest box first).

Outputs agree with ``facenet_pytorch.MTCNN(keep_all=True).detect(rgb, landmarks=True)`` to
float32 rounding of the networks (tests/test_mtcnn_onnx.py states the tolerances). Known
difference: when more than 1,000 P-Net candidates pass the threshold at one scale,
torchvision sorts them with an unstable sort, so the order of exactly tied scores there (and
at worst which of two tied, overlapping boxes survives) can differ; here ties keep index order.
Where facenet-pytorch fails (an image smaller than ``min_face_size``: empty pyramid; a box
whose crop lies wholly outside the image) this returns no face / drops the box.

This module imports numpy, OpenCV and onnxruntime only (never torch).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .alignment import multiple_within
from .errors import ConfigError
from .runtime import load_onnx

__all__ = ["OnnxMTCNN", "default_mtcnn_dir"]

_F32 = np.float32
_HALF = _F32(0.5)
#: facenet-pytorch's fixed_batch_process: at most this many crops per R-/O-Net run.
_BATCH = 512


def default_mtcnn_dir() -> Path:
    """``facegate/weights/mtcnn``: the shipped P-, R- and O-Net graphs."""
    return Path(__file__).parent / "weights" / "mtcnn"


# -- resampling ------------------------------------------------------------------------------


class _Integral:
    """Exact integral image of an RGB image, for window sums of any rectangle.

    Stored as (H+1, W+1, 4): int32 while sums cannot overflow, float64 beyond (> 8.4 Mpx),
    with a fourth, unused channel so that one pixel's sums are one 16- (or 32-) byte item:
    gathering whole items is several times faster than gathering channel by channel.
    """

    def __init__(self, rgb: np.ndarray):
        h, w = rgb.shape[:2]
        depth = cv2.CV_32S if h * w * 255 < 2**31 else cv2.CV_64F
        rgba = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2RGBA)
        self.table = cv2.integral(rgba, sdepth=depth)  # (H+1, W+1, 4)
        self.item = np.complex128 if self.table.itemsize == 4 else np.dtype((np.void, 32))
        self.packed = self.table.view(self.item)[..., 0]  # (H+1, W+1)
        self.flat = self.packed.reshape(-1)
        self.stride = self.table.shape[1]

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        return packed.view(self.table.dtype).reshape(packed.shape + (4,))

    def pack(self, sums: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(sums).view(self.item)[..., 0]

    def resample_image(self, h: int, w: int, oh: int, ow: int) -> np.ndarray:
        return _resample_image(self, h, w, oh, ow)

    def resample_crops(self, y, ey, x, ex, size: int) -> np.ndarray:
        return _resample_crops(self, y, ey, x, ex, size)


def _windows(start, length, out: int):
    """Adaptive-pooling windows ``[start + floor(i*L/o), start + ceil((i+1)*L/o))`` (torch's
    integer formulas) for each row of ``start``/``length`` arrays; shapes (..., out)."""
    i = np.arange(out, dtype=np.int64)
    length = np.asarray(length, dtype=np.int64)[..., None]
    start = np.asarray(start, dtype=np.int64)[..., None]
    return start + (i * length) // out, start + ((i + 1) * length + out - 1) // out


@lru_cache(maxsize=256)
def _image_windows(h: int, w: int, oh: int, ow: int):
    """Windows and divisors resampling an h x w image to oh x ow (cached: video frames)."""
    r0, r1 = _windows(0, h, oh)
    c0, c1 = _windows(0, w, ow)
    kh = (r1 - r0).astype(_F32)[:, None]
    kw = (c1 - c0).astype(_F32)
    out = (r0, r1, c0, c1, kh, kw)
    for array in out:
        array.flags.writeable = False
    return out


def _normalise(sums: np.ndarray, kh: np.ndarray, kw: np.ndarray) -> np.ndarray:
    """Window sums (..., rows, cols, 4) -> area-resampled pixels (``sum / kh / kw`` in float32,
    as torch) -> net input ``(pixel - 127.5) * 0.0078125``, as (..., 3, rows, cols).

    Scaling by 2**-7 commutes with float rounding, so it is folded into the second division,
    bit for bit: ``sum / kh / (kw * 128) - 127.5 / 128``."""
    x = np.empty(sums.shape[:-3] + (3,) + sums.shape[-3:-1], dtype=_F32)
    x[...] = np.moveaxis(sums[..., :3], -1, -3)
    x /= kh
    x /= kw * _F32(128)
    x -= _F32(127.5 / 128)
    return x


#: Integral-table bytes gathered at once by :func:`_resample_image` (its temporaries grow
#: with rows x image width; a 14-megapixel photo needed over a gigabyte in one go).
_RESAMPLE_CHUNK_BYTES = 32 << 20


def _resample_image(integral: _Integral, h: int, w: int, oh: int, ow: int) -> np.ndarray:
    """The whole image area-resampled to (oh, ow) and normalised: (1, 3, oh, ow) float32,
    computed a band of output rows at a time (the same numbers, bounded memory)."""
    r0, r1, c0, c1, kh, kw = _image_windows(h, w, oh, ow)
    out = np.empty((1, 3, oh, ow), dtype=_F32)
    step = max(1, _RESAMPLE_CHUNK_BYTES // (integral.packed.shape[1] * integral.packed.itemsize * 2))
    for start in range(0, oh, step):
        band = slice(start, start + step)
        rows = integral.pack(integral.unpack(integral.packed[r1[band]]) - integral.unpack(integral.packed[r0[band]]))
        sums = integral.unpack(np.take(rows, c1, axis=1)) - integral.unpack(np.take(rows, c0, axis=1))
        out[0, :, band] = _normalise(sums, kh[band], kw)
    return out


def _resample_crops(integral: _Integral, y, ey, x, ex, size: int) -> np.ndarray:
    """Crops ``[y-1:ey, x-1:ex]`` (facenet-pytorch's ``pad`` output) area-resampled to
    size x size and normalised: (K, 3, size, size) float32."""
    r0, r1 = _windows(y - 1, ey - y + 1, size)  # (K, size)
    c0, c1 = _windows(x - 1, ex - x + 1, size)
    a0 = (r0 * integral.stride)[:, :, None]
    a1 = (r1 * integral.stride)[:, :, None]
    b0 = c0[:, None, :]
    b1 = c1[:, None, :]
    flat, unpack = integral.flat, integral.unpack
    sums = unpack(np.take(flat, a1 + b1))
    sums -= unpack(np.take(flat, a0 + b1))
    sums -= unpack(np.take(flat, a1 + b0))
    sums += unpack(np.take(flat, a0 + b0))  # (K, size, size, 4)
    kh = (r1 - r0).astype(_F32)[:, None, :, None]
    kw = (c1 - c0).astype(_F32)[:, None, None, :]
    return _normalise(sums, kh, kw)


class _ReducedIntegral:
    """Area sums of a full-resolution image's windows, read from a copy reduced ``k`` times
    (a JPEG decoded at 1/k, or block means): full-resolution pixel ``x`` lies at ``(x - origin) / k``.

    A window with fractional edges in the reduced image covers whole pixels inside and parts
    of the pixels on its edges: its exact sum for a piecewise-constant image is the bilinear
    interpolation of the integral image at its corners (pyramid levels), or each pixel times
    the share of it covered (crops, from the pixels under the crop only). Every pyramid level
    and crop is so the full-resolution one, computed from the reduced pixels on the same
    sampling grid.
    """

    def __init__(self, rgb: np.ndarray, k: int, origin: tuple[float, float] = (0.0, 0.0)):
        self.k = float(k)
        self.origin = (float(origin[0]), float(origin[1]))
        self.rgb = np.ascontiguousarray(rgb)
        self.h, self.w = rgb.shape[:2]
        self._table = None

    def _mean(self, sums, r0, r1, c0, c1):
        """Window sums in reduced pixels -> mean pixels -> the net's input, (..., 3, rows, cols)."""
        area = (np.asarray(r1) - np.asarray(r0))[..., :, None] * (np.asarray(c1) - np.asarray(c0))[..., None, :]
        x = (sums * (self.k * self.k / np.maximum(area, 1))[..., None]).astype(_F32)
        return (np.moveaxis(x, -1, -3) - _F32(127.5)) * _F32(0.0078125)

    def _span(self, start, stop, axis: int):
        """Windows ``[start, stop)`` (full-resolution edges) in reduced pixels, clipped."""
        size = self.h if axis == 0 else self.w
        shift = self.origin[1 - axis]
        return tuple(np.clip((np.asarray(v, dtype=np.float64) - shift) / self.k, 0.0, size) for v in (start, stop))

    def resample_image(self, h: int, w: int, oh: int, ow: int) -> np.ndarray:
        r0, r1, c0, c1, _, _ = _image_windows(h, w, oh, ow)
        if self._table is None:  # the integral image, once (exact in int32 below 8.4 megapixels)
            exact = cv2.CV_32S if self.h * self.w * 255 < 2**31 else cv2.CV_64F
            self._table = cv2.integral(self.rgb, sdepth=exact)
        (ra, rb), (ca, cb) = self._span(r0, r1, 0), self._span(c0, c1, 1)
        cols = [_lerp_index(v, self.w) for v in (ca, cb)]

        def edge(pos):  # the integral along a row of window edges, at every column edge
            i, f = _lerp_index(pos, self.h)
            upper, lower = self._table[i], self._table[i + 1]  # whole rows: contiguous copies
            out = []
            for j, g in cols:
                g = g[None, :, None]
                top = upper[:, j] * (1.0 - g) + upper[:, j + 1] * g
                bottom = lower[:, j] * (1.0 - g) + lower[:, j + 1] * g
                out.append(top * (1.0 - f[:, None, None]) + bottom * f[:, None, None])
            return out  # at (column starts, column ends)

        (a0, a1), (b0, b1) = edge(ra), edge(rb)
        sums = b1 - a1 - b0 + a0
        return np.ascontiguousarray(self._mean(sums, r0, r1, c0, c1)[None])

    def resample_crops(self, y, ey, x, ex, size: int) -> np.ndarray:
        r0, r1 = _windows(y - 1, ey - y + 1, size)  # (K, size), full-resolution rows
        c0, c1 = _windows(x - 1, ex - x + 1, size)
        sums = np.empty((len(r0), size, size, 3), dtype=np.float32)
        ra, rb, top, bottom = self._edges(r0, r1, 0)
        ca, cb, left, right = self._edges(c0, c1, 1)
        for k in range(len(r0)):  # each crop from the reduced pixels under it, separably
            rows = _cover(ra[k], rb[k], top[k], bottom[k])
            cols = _cover(ca[k], cb[k], left[k], right[k])
            patch = self.rgb[top[k]:bottom[k], left[k]:right[k]].astype(np.float32)
            down = (rows @ patch.reshape(patch.shape[0], -1)).reshape(size, patch.shape[1], 3)
            sums[k] = np.matmul(cols[None], down)  # (size, size, 3)
        return self._mean(sums, r0, r1, c0, c1)

    def _edges(self, start, stop, axis: int):
        """Windows ``[start, stop)`` (full-resolution edges, (K, size)) in reduced pixels, and
        the pixel range each crop's windows span."""
        a, b = self._span(start, stop, axis)
        first = np.floor(a.min(axis=1)).astype(np.int64)
        return a, b, first, np.maximum(first + 1, np.ceil(b.max(axis=1)).astype(np.int64))


def _lerp_index(pos: np.ndarray, size: int):
    """Positions in [0, size] -> (whole index below, fraction above it), the index at most
    ``size - 1`` so that ``index + 1`` stays inside an integral table of ``size + 1``."""
    index = np.minimum(np.floor(pos).astype(np.intp), size - 1)
    return index, pos - index


def _cover(a: np.ndarray, b: np.ndarray, first: int, last: int) -> np.ndarray:
    """How much of each pixel ``first..last-1`` every window ``[a, b)`` covers, (windows,
    pixels): a piecewise-constant image's window sums, exactly as its bilinear integral."""
    pixel = np.arange(first, last, dtype=np.float64)
    cover = np.minimum(b[:, None], pixel + 1.0) - np.maximum(a[:, None], pixel)
    return np.maximum(cover, 0.0).astype(np.float32)


# -- box arithmetic (facenet_pytorch/models/utils/detect_face.py, in float32) -----------------


#: Up to this many boxes, NMS computes all pairwise overlaps at once (a few MB).
_NMS_MATRIX = 1024


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """torchvision.ops.nms (CPU): indices kept, by descending score (ties in index order).

    Overlaps are computed as torchvision does in float32, ``inter / (area_i + area_j - inter)``
    with areas ``(x2 - x1) * (y2 - y1)``, and a box is dropped when its overlap with a kept,
    higher-ranked box is above ``threshold``.
    """
    n = len(boxes)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    zero = _F32(0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if n <= _NMS_MATRIX:
            w = np.maximum(zero, np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1))
            h = np.maximum(zero, np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1))
            inter = w * h
            suppress = (inter / (areas[:, None] + areas - inter)) > threshold
            alive = np.ones(n, dtype=bool)
            keep = []
            for i in range(n):
                if alive[i]:
                    keep.append(i)
                    alive &= ~suppress[i]
            return order[np.asarray(keep, dtype=np.int64)]
        keep = []
        rest = np.arange(n)
        while rest.size:
            i = rest[0]
            keep.append(i)
            rest = rest[1:]
            w = np.maximum(zero, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
            h = np.maximum(zero, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
            inter = w * h
            rest = rest[~((inter / (areas[i] + areas[rest] - inter)) > threshold)]
    return order[np.asarray(keep, dtype=np.int64)]


def _nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """facenet-pytorch's ``nms_numpy(..., 'Min')``, line for line."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = (boxes[:, k].copy() for k in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    pick = np.zeros_like(scores, dtype=np.int16)
    counter = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        while order.size > 0:
            i = order[-1]
            pick[counter] = i
            counter += 1
            idx = order[0:-1]
            xx1 = np.maximum(x1[i], x1[idx])
            yy1 = np.maximum(y1[i], y1[idx])
            xx2 = np.minimum(x2[i], x2[idx])
            yy2 = np.minimum(y2[i], y2[idx])
            w = np.maximum(0.0, xx2 - xx1 + 1)
            h = np.maximum(0.0, yy2 - yy1 + 1)
            inter = w * h
            o = inter / np.minimum(area[i], area[idx])
            order = order[np.where(o <= threshold)]
    return pick[:counter].astype(np.int64)


def _rerec(boxes: np.ndarray) -> np.ndarray:
    """Square the boxes around their centres (in place, float32), as facenet-pytorch."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * _HALF - side * _HALF
    boxes[:, 1] = boxes[:, 1] + h * _HALF - side * _HALF
    boxes[:, 2:4] = boxes[:, :2] + side[:, None]
    return boxes


def _bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    w = boxes[:, 2] - boxes[:, 0] + _F32(1)
    h = boxes[:, 3] - boxes[:, 1] + _F32(1)
    b1 = boxes[:, 0] + reg[:, 0] * w
    b2 = boxes[:, 1] + reg[:, 1] * h
    b3 = boxes[:, 2] + reg[:, 2] * w
    b4 = boxes[:, 3] + reg[:, 3] * h
    boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3] = b1, b2, b3, b4
    return boxes


def _pad(boxes: np.ndarray, w: int, h: int):
    """facenet-pytorch's ``pad``: truncated int32 corners clipped to [1, w] x [1, h]."""
    with np.errstate(invalid="ignore"):
        b = np.trunc(boxes[:, :4]).astype(np.int32)
    x = np.maximum(b[:, 0], 1)
    y = np.maximum(b[:, 1], 1)
    ex = np.minimum(b[:, 2], w)
    ey = np.minimum(b[:, 3], h)
    return y, ey, x, ex


class OnnxMTCNN:
    """facenet-pytorch's MTCNN detector on onnxruntime: no torch at run time.

    Args:
        folder: folder holding ``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx``
            (default: ``facegate/weights/mtcnn``).
        min_face_size: smallest face side searched for, in pixels (facenet-pytorch's default 20).
        thresholds: P-, R- and O-Net score thresholds.
        factor: scale step of the image pyramid.
        threads: onnxruntime intra-op threads per session.

    Raises:
        WeightsError: a graph is missing or cannot be loaded.
        ConfigError: an argument out of range.

    The graphs' metadata (``facegate_source``, ``facegate_weights_sha256``, when present) is
    in :attr:`sources`, keyed by file stem. Sessions are shared by every call and thread.
    """

    def __init__(
        self,
        folder: Path | str | None = None,
        *,
        min_face_size: int = 20,
        thresholds=(0.6, 0.7, 0.7),
        factor: float = 0.709,
        threads: int = 1,
    ):
        self.min_face_size = self._check_min_face_size(min_face_size)
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3:
            raise ConfigError(f"thresholds must be three numbers, got {thresholds!r}")
        if not 0.0 < float(factor) < 1.0:
            raise ConfigError(f"factor must be in (0, 1), got {factor!r}")
        self.thresholds = thresholds
        self.factor = float(factor)
        self.folder = Path(folder) if folder is not None else default_mtcnn_dir()
        self._pnet = load_onnx(self.folder / "pnet.onnx", threads)
        self._rnet = load_onnx(self.folder / "rnet.onnx", threads)
        self._onet = load_onnx(self.folder / "onet.onnx", threads)
        self.sources = {}
        for stem, session in (("pnet", self._pnet), ("rnet", self._rnet), ("onet", self._onet)):
            meta = session.get_modelmeta().custom_metadata_map
            self.sources[stem] = {k: v for k, v in meta.items() if k.startswith("facegate_")}
        self._inputs = {id(s): s.get_inputs()[0].name for s in (self._pnet, self._rnet, self._onet)}

    @staticmethod
    def _check_min_face_size(value) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value) or value <= 0:
            raise ConfigError(f"min_face_size must be a positive number, got {value!r}")
        return value

    def _run(self, session, batch: np.ndarray) -> list[np.ndarray]:
        return session.run(None, {self._inputs[id(session)]: batch})

    def _run_batched(self, session, crops: np.ndarray) -> list[np.ndarray]:
        if len(crops) <= _BATCH:
            return self._run(session, crops)
        parts = [self._run(session, crops[i:i + _BATCH]) for i in range(0, len(crops), _BATCH)]
        return [np.concatenate(p, axis=0) for p in zip(*parts)]

    def detect(
        self, rgb: np.ndarray, min_face_size: int | None = None, *, refine: bool = False,
        reduction: int = 1, origin: tuple[float, float] = (0.0, 0.0), full_size: tuple[int, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every face in an (H, W, 3) uint8 RGB image.

        Args:
            rgb: the image, or a copy of it reduced ``reduction`` times (see below).
            min_face_size: overrides the constructor's for this call.
            refine: replace each face's landmarks by :meth:`refine_landmarks`'s (not
                facenet-pytorch's output any more, but steadier and closer to the truth).
            reduction, origin, full_size: ``rgb`` stands for an image of ``full_size``
                ``(width, height)``, reduced ``reduction`` times (JPEG draft decoding, block
                means), full-resolution ``x`` lying at ``(x - origin) / reduction``. The full
                image's pyramid levels and crops are then computed from the reduced pixels
                on the full image's sampling grid, and every coordinate returned is the full
                image's (docs/performance.md measures the agreement).

        Returns:
            ``boxes`` (N, 4) x1, y1, x2, y2; ``probs`` (N,); ``points`` (N, 5, 2) (x, y) in
            facenet-pytorch's order (left eye, right eye, nose, left and right mouth corner, as
            MTCNN names them); all float64, largest box first, N = 0 when no face is found.

        Raises:
            ConfigError: ``rgb`` is not an (H, W, 3) uint8 array, or ``min_face_size`` <= 0.
        """
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            desc = (f"{rgb.dtype} array of shape {rgb.shape}" if isinstance(rgb, np.ndarray)
                    else type(rgb).__name__)
            raise ConfigError(f"OnnxMTCNN.detect needs an (H, W, 3) uint8 RGB array, got {desc}")
        minsize = self.min_face_size if min_face_size is None else self._check_min_face_size(min_face_size)
        integral, shape = self._source(rgb, reduction, origin, full_size)
        found = self._detect(integral, shape, minsize)
        if found is None:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        boxes, points = found
        if refine:
            points = self._refine(integral, shape, boxes[:, :4])
        order = np.argsort((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[::-1]
        boxes, points = boxes[order], points[order]
        return (boxes[:, :4].astype(np.float64), boxes[:, 4].astype(np.float64),
                points.astype(np.float64))

    @staticmethod
    def _source(rgb, reduction, origin, full_size):
        """What resamples the image's windows, and the full image's (height, width)."""
        if reduction == 1:
            return _Integral(rgb), rgb.shape[:2]
        if full_size is None:
            raise ConfigError("full_size is needed with reduction > 1")
        return _ReducedIntegral(rgb, reduction, origin), (int(full_size[1]), int(full_size[0]))

    #: (scale, x shift, y shift) of the boxes whose O-Net landmarks :meth:`refine_landmarks`
    #: averages, in units of the face's square box.
    JITTER = ((0.9, 0.0, 0.0), (1.0, 0.0, 0.0), (1.1, 0.0, 0.0),
              (1.0, -0.08, -0.08), (1.0, -0.08, 0.08), (1.0, 0.08, -0.08), (1.0, 0.08, 0.08))

    def refine_landmarks(self, rgb: np.ndarray, boxes: np.ndarray, *, reduction: int = 1,
                         origin: tuple[float, float] = (0.0, 0.0),
                         full_size: tuple[int, int] | None = None) -> np.ndarray:
        """Landmarks of faces with these ``(N, 4)`` boxes, as O-Net's mean over 7 boxes
        around each face's square box (sizes 0.9, 1 and 1.1, and shifted 8% diagonally).

        One O-Net pass moves landmarks by 2-3% of the eye distance when the box it is given
        moves by a pixel, and that box comes from P- and R-Net's coarse grids; the mean over
        boxes around the final one is several times steadier (on five large photos, shifted
        by a pixel or decoded 4 times smaller: within 1.1% instead of 4.2%; 27 boxes gave 0.9%
        at four times the cost). ``(N, 5, 2)`` float64, full-image coordinates.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if reduction != 1 and full_size is None:
            raise ConfigError("full_size is needed with reduction > 1")
        if len(boxes):  # only the pixels the boxes cover: a face in a large photo
            h, w = rgb.shape[:2]
            side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            reach = 0.5 * max(s for s, _, _ in self.JITTER) + max(max(abs(dx), abs(dy)) for _, dx, dy in self.JITTER)
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            ox, oy = origin
            x0 = int(np.clip(np.floor(((cx - reach * side).min() - ox) / reduction) - 2, 0, w - 1))
            y0 = int(np.clip(np.floor(((cy - reach * side).min() - oy) / reduction) - 2, 0, h - 1))
            x1 = int(np.clip(np.ceil(((cx + reach * side).max() - ox) / reduction) + 2, x0 + 1, w))
            y1 = int(np.clip(np.ceil(((cy + reach * side).max() - oy) / reduction) + 2, y0 + 1, h))
            # a large face's 48 px crops average many pixels each: read them from block means
            # that still leave every crop pixel at least 4 (the same sums, to rounding; faces
            # under 384 px, every LFW and CelebA face, are read from the pixels themselves)
            extra = 1 << max(0, int(np.log2(max(side.min() / (48 * 4.0 * reduction), 1.0))))
            if extra > 1:  # whole blocks
                x1 = x0 + max(extra, multiple_within(x1 - x0, extra, w - x0))
                y1 = y0 + max(extra, multiple_within(y1 - y0, extra, h - y0))
            if extra > 1 or (x0, y0, x1, y1) != (0, 0, w, h):
                region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
                if reduction == 1 and extra == 1:  # the region as an image of its own, boxes shifted onto it
                    shift = np.array([x0, y0, x0, y0], dtype=np.float64)
                    return self.refine_landmarks(region, boxes - shift) + shift[:2]
                if extra > 1:
                    region = cv2.resize(region, (region.shape[1] // extra, region.shape[0] // extra),
                                        interpolation=cv2.INTER_AREA)
                shape = (h, w) if reduction == 1 else (int(full_size[1]), int(full_size[0]))
                integral = _ReducedIntegral(region, reduction * extra, (ox + reduction * x0, oy + reduction * y0))
                return self._refine(integral, shape, boxes.astype(_F32)).astype(np.float64)
        integral, shape = self._source(rgb, reduction, origin, full_size)
        return self._refine(integral, shape, boxes.astype(_F32)).astype(np.float64)

    def _refine(self, integral, shape, boxes: np.ndarray) -> np.ndarray:
        h, w = shape
        n = len(boxes)
        if not n:
            return np.zeros((0, 5, 2), dtype=_F32)
        square = _rerec(np.array(boxes[:, :4], dtype=_F32))
        side = square[:, 2:3] - square[:, 0:1]
        centre = (square[:, :2] + square[:, 2:]) * _HALF
        jitter = np.array(self.JITTER, dtype=_F32)  # (J, 3)
        half = (side * jitter[:, 0]) * _HALF  # (N, J)
        cx = centre[:, 0:1] + side * jitter[:, 1]
        cy = centre[:, 1:2] + side * jitter[:, 2]
        many = np.stack([cx - half, cy - half, cx + half, cy + half], axis=2).reshape(-1, 4)
        y, ey, x, ex = _pad(many, w, h)
        valid = (ey > y - 1) & (ex > x - 1)
        points = np.full((len(many), 5, 2), np.nan, dtype=_F32)
        if valid.any():
            crops = integral.resample_crops(y[valid], ey[valid], x[valid], ex[valid], 48)
            _, landmarks, _ = self._run_batched(self._onet, crops)
            b = many[valid]
            w_i = b[:, 2:3] - b[:, 0:1] + _F32(1)
            h_i = b[:, 3:4] - b[:, 1:2] + _F32(1)
            points[valid] = np.stack([w_i * landmarks[:, :5] + b[:, 0:1] - _F32(1),
                                      h_i * landmarks[:, 5:10] + b[:, 1:2] - _F32(1)], axis=2)
        return np.nanmean(points.reshape(n, len(jitter), 5, 2), axis=1)

    def _detect(self, integral, shape: tuple[int, int], minsize) -> tuple[np.ndarray, np.ndarray] | None:
        """facenet-pytorch's ``detect_face`` for one image of ``shape`` (height, width) whose
        windows ``integral`` resamples: (boxes (N, 5), points (N, 5, 2)) in float32, in its
        output order, or None when nothing is found."""
        h, w = shape
        t_pnet, t_rnet, t_onet = self.thresholds
        m = 12.0 / minsize
        minl = min(h, w) * m
        scales = []
        scale = m
        while minl >= 12:
            scales.append(scale)
            scale = scale * self.factor
            minl = minl * self.factor
        if not scales:
            return None

        # First stage: P-Net over the pyramid.
        candidates = []
        for scale in scales:
            image = integral.resample_image(h, w, int(h * scale + 1), int(w * scale + 1))
            reg, prob = self._run(self._pnet, image)
            boxes = self._generate(reg[0], prob[0, 1], scale, t_pnet)
            if len(boxes):
                candidates.append(boxes[_nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not candidates:
            return None
        boxes = np.concatenate(candidates, axis=0)
        boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7)]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = np.stack([
            boxes[:, 0] + boxes[:, 5] * regw,
            boxes[:, 1] + boxes[:, 6] * regh,
            boxes[:, 2] + boxes[:, 7] * regw,
            boxes[:, 3] + boxes[:, 8] * regh,
            boxes[:, 4],
        ], axis=1)
        boxes = _rerec(boxes)

        # Second stage: R-Net on every candidate at once.
        boxes, crops = self._crops(integral, boxes, w, h, 24)
        if not len(boxes):
            return None
        reg, prob = self._run_batched(self._rnet, crops)
        score = prob[:, 1]
        passed = score > _F32(t_rnet)
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        reg = reg[passed]
        pick = _nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes, reg = boxes[pick], reg[pick]
        boxes = _rerec(_bbreg(boxes, reg))

        # Third stage: O-Net on every survivor at once.
        boxes, crops = self._crops(integral, boxes, w, h, 48)
        if not len(boxes):
            return None
        reg, landmarks, prob = self._run_batched(self._onet, crops)
        score = prob[:, 1]
        passed = score > _F32(t_onet)
        landmarks = landmarks[passed]
        boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
        reg = reg[passed]
        if not len(boxes):
            return None
        w_i = boxes[:, 2:3] - boxes[:, 0:1] + _F32(1)
        h_i = boxes[:, 3:4] - boxes[:, 1:2] + _F32(1)
        points_x = w_i * landmarks[:, :5] + boxes[:, 0:1] - _F32(1)
        points_y = h_i * landmarks[:, 5:10] + boxes[:, 1:2] - _F32(1)
        points = np.stack([points_x, points_y], axis=2)
        boxes = _bbreg(boxes, reg)
        pick = _nms_min(boxes[:, :4], boxes[:, 4], 0.7)
        return boxes[pick], points[pick]

    @staticmethod
    def _generate(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> np.ndarray:
        """facenet-pytorch's ``generateBoundingBox`` for one image: (n, 9) float32 rows
        x1, y1, x2, y2, score, 4 regressions."""
        ys, xs = np.nonzero(prob >= _F32(threshold))
        if not len(ys):
            return np.zeros((0, 9), dtype=_F32)
        bx = xs.astype(_F32)
        by = ys.astype(_F32)
        s = _F32(scale)
        out = np.empty((len(ys), 9), dtype=_F32)
        out[:, 0] = np.floor((_F32(2) * bx + _F32(1)) / s)
        out[:, 1] = np.floor((_F32(2) * by + _F32(1)) / s)
        out[:, 2] = np.floor((_F32(2) * bx + _F32(12)) / s)
        out[:, 3] = np.floor((_F32(2) * by + _F32(12)) / s)
        out[:, 4] = prob[ys, xs]
        out[:, 5:] = reg[:, ys, xs].T
        return out

    @staticmethod
    def _crops(integral, boxes: np.ndarray, w: int, h: int, size: int):
        """The boxes whose crop is not empty, and their crops (``pad`` + ``imresample``)."""
        y, ey, x, ex = _pad(boxes, w, h)
        valid = (ey > y - 1) & (ex > x - 1)
        if not valid.all():  # facenet-pytorch fails on such boxes; they hold no face
            boxes, y, ey, x, ex = boxes[valid], y[valid], ey[valid], x[valid], ex[valid]
        if not len(boxes):
            return boxes, None
        return boxes, integral.resample_crops(y, ey, x, ex, size)
