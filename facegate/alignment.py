"""Align a face by a similarity transform of its five landmarks onto a template.

One routine serves every consumer: the quality models (square crop with margin) and the
recognition model (its own template). Scale, rotation and translation only, so blur,
resolution loss and pose survive into the crop: a small face is enlarged by plain
interpolation and stays soft, which is exactly what the quality model must see.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["ARCFACE_112", "quality_template", "resize_crop", "similarity_transform", "warp_to_template"]

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
    rgb: np.ndarray, landmarks: np.ndarray, template: np.ndarray, out_size: tuple[int, int]
) -> np.ndarray:
    """Crop ``rgb`` so that ``landmarks`` land on ``template``.

    Args:
        rgb: ``(H, W, 3)`` uint8 image.
        landmarks: ``(5, 2)`` points in ``rgb``.
        template: ``(5, 2)`` target points in the output.
        out_size: ``(width, height)`` of the output.

    Returns:
        ``(height, width, 3)`` uint8 crop; outside the image is filled by edge replication.
    """
    matrix = similarity_transform(landmarks, template)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < 0.5:
        # Shrinking a lot: area-average first so the crop does not alias.
        factor = min(1.0, scale * 1.5)
        small = cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        fy = small.shape[0] / rgb.shape[0]
        fx = small.shape[1] / rgb.shape[1]
        matrix = matrix @ np.array([[1 / fx, 0, 0], [0, 1 / fy, 0], [0, 0, 1]])
        rgb = small
    return cv2.warpAffine(
        rgb, matrix, out_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def resize_crop(crop: np.ndarray, size: int) -> np.ndarray:
    """An aligned crop brought to ``size`` x ``size``: area-averaged when shrinking (no
    aliasing), bilinear when enlarging; unchanged when it already has that size."""
    if crop.shape[:2] == (size, size):
        return crop
    interp = cv2.INTER_AREA if min(crop.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(crop, (size, size), interpolation=interp)
