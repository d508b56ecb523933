"""Align a face by a similarity transform of its five landmarks onto a template.

One routine serves every consumer: the quality models (square crop with margin) and the
recognition model (its own template). Scale, rotation and translation only, so blur,
resolution loss and pose survive into the crop: a small face is enlarged by plain
interpolation and stays soft, which is exactly what the quality model must see.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["ARCFACE_112", "MOBILEFACENET_TEMPLATE", "quality_template", "resize_crop", "shrink_for_warp", "similarity_transform",
           "warp_to_template"]

#: The usual 112x112 five-point template (left eye, right eye, nose, mouth left, mouth right).
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def quality_template(size: int, margin: float) -> np.ndarray:
    """Template for the quality crop: ARCFACE_112 shrunk about the centre by ``1 - margin``
    and scaled to ``size`` pixels, so the crop keeps hair, ears and chin in view."""
    centre = np.array([56.0, 56.0])
    return ((ARCFACE_112 - centre) * (1.0 - margin) + centre) * (size / 112.0)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama, 1991) mapping ``src`` onto ``dst``.

    Args:
        src, dst: ``(N, 2)`` point sets.

    Returns:
        ``(2, 3)`` affine matrix.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    var_src = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var_src if var_src > 0 else 1.0
    matrix = np.zeros((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def warp_to_template(
    rgb: np.ndarray, landmarks: np.ndarray, template: np.ndarray, out_size: tuple[int, int],
    border: int = cv2.BORDER_REPLICATE, reduction: int = 1,
) -> np.ndarray:
    """Crop ``rgb`` so that ``landmarks`` land on ``template``.

    Args:
        rgb: ``(H, W, 3)`` uint8 image.
        landmarks: ``(5, 2)`` points in ``rgb``.
        template: ``(5, 2)`` target points in the output.
        out_size: ``(width, height)`` of the output.
        border: how outside the image is filled: edge replication (default) or
            ``cv2.BORDER_CONSTANT`` (black).
        reduction: ``rgb`` is the image reduced that many times (see :func:`shrink_for_warp`).

    Returns:
        ``(height, width, 3)`` uint8 crop.
    """
    source, matrix = shrink_for_warp(rgb, similarity_transform(landmarks, template), out_size, reduction)
    return cv2.warpAffine(source, matrix, out_size, flags=cv2.INTER_LINEAR, borderMode=border)


def shrink_for_warp(rgb: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int],
                    reduction: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The image to warp from and the matrix to warp it with. When the warp shrinks a lot,
    the part of the image the output covers is area-averaged first, so the crop does not
    alias; only that part, so a face in a 50-megapixel photo costs what a small one does.

    ``reduction``: ``rgb`` is the image reduced that many times (a large photo at its working
    resolution); the average then spans as many of the image's own pixels as it would on the
    full image (a fractional number of ``rgb``'s), so the crop is the full image's."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2])))) / reduction
    if scale >= 0.5:
        return rgb, matrix
    h, w = rgb.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [out_size[0], 0, 1], [0, out_size[1], 1], [out_size[0], out_size[1], 1]], float)
    xy = corners @ inverse.T
    x0, y0 = (int(max(0, np.floor(v) - 2)) for v in xy.min(0))
    x1, y1 = (int(min(limit, np.ceil(v) + 2)) for v, limit in zip(xy.max(0), (w, h)))
    if x1 <= x0 or y1 <= y0:  # the output lies wholly outside the image
        x0, y0, x1, y1 = 0, 0, w, h
    # an integer factor (OpenCV's fast path for area averaging) that leaves the warp
    # itself shrinking by no more than about half
    k = max(2, int(round(1.0 / (1.5 * scale))))
    if reduction == 1:
        x1, y1 = (start + max(k, multiple_within(end - start, k, limit - start)) for start, end, limit in ((x0, x1, w), (y0, y1, h)))
        region = rgb[y0:y1, x0:x1]
        small = cv2.resize(region, (region.shape[1] // k, region.shape[0] // k), interpolation=cv2.INTER_AREA)
    else:
        factor = k / reduction
        if factor <= 1.0:  # rgb is already no finer than the average would make it
            return rgb, matrix
        region = rgb[y0:y1, x0:x1]
        small = cv2.resize(region, (max(1, round(region.shape[1] / factor)), max(1, round(region.shape[0] / factor))),
                           interpolation=cv2.INTER_AREA)
    fy = small.shape[0] / region.shape[0]
    fx = small.shape[1] / region.shape[1]
    # output -> region pixels -> reduced pixels
    matrix = matrix @ np.array([[1 / fx, 0, x0], [0, 1 / fy, y0], [0, 0, 1]])
    return small, matrix


def multiple_within(length: int, k: int, room: int) -> int:
    """``length`` rounded up to a multiple of ``k``, or down where the image ends first."""
    up = -(-length // k) * k
    return up if up <= room else room // k * k


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """An aligned crop brought to ``size`` x ``size``: area-averaged when shrinking (no
    aliasing), bilinear when enlarging; unchanged when it already has that size."""
    if crop.shape[:2] == (size, size):
        return crop
    interp = cv2.INTER_AREA if min(crop.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)


#: Five-point template of the 96 wide x 112 high MobileFaceNet input.
MOBILEFACENET_TEMPLATE = np.array(
    [
        [30.2946, 51.6963],
        [65.5318, 51.5014],
        [48.0252, 71.7366],
        [33.5493, 92.3655],
        [62.7299, 92.2041],
    ]
)
