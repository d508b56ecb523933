"""Realistic capture degradations at a severity in [0, 1].

Parameters are in pixels of LFW-like photos (250x250, about 40 px between the eyes);
severity 0 is a mild version, 1 a severe one. ``lowres`` changes the image size and
returns the scale so the caller can move the landmarks.
"""

from __future__ import annotations

import math
from typing import Callable

import cv2
import numpy as np

from facegate.images import apply_gamma as gamma

__all__ = ["DEGRADATIONS", "TRAINING_ONLY", "degrade", "downscale", "gamma", "gaussian_blur", "jpeg", "rotate"]


def gaussian_blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def downscale(rgb: np.ndarray, factor: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _defocus(rgb, s, rng, landmarks):
    radius = 1.0 + 6.0 * s
    k = int(math.ceil(radius)) * 2 + 1
    kernel = np.zeros((k, k), np.float32)
    cv2.circle(kernel, (k // 2, k // 2), int(round(radius)), 1.0, -1, lineType=cv2.LINE_AA)
    return cv2.filter2D(rgb, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT), 1.0


def _motion(rgb, s, rng, landmarks):
    length = int(round(3 + 19 * s))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    angle = rng.uniform(0, 180)
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), angle, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(rgb, -1, kernel / max(kernel.sum(), 1e-6), borderType=cv2.BORDER_REFLECT), 1.0


def _gaussian(rgb, s, rng, landmarks):
    return gaussian_blur(rgb, 0.6 + 5.4 * s), 1.0


def _noise(rgb, s, rng, landmarks):
    sigma = 4.0 + 40.0 * s
    luma = rng.normal(0, sigma, rgb.shape[:2] + (1,))
    chroma = rng.normal(0, sigma * 0.4, rgb.shape)
    return np.clip(rgb + luma + chroma, 0, 255).astype(np.uint8), 1.0


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``rgb`` encoded as a JPEG at ``quality`` and decoded again."""
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def _jpeg(rgb, s, rng, landmarks):
    return jpeg(rgb, round(40 - 37 * s)), 1.0


def _jpeg_extreme(rgb, s, rng, landmarks):
    return jpeg(rgb, round(5 - 4 * s)), 1.0


def rotate(rgb: np.ndarray, landmarks: np.ndarray, turns: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo turned ``turns`` quarter turns counter-clockwise (``np.rot90``), and its
    landmarks moved with it."""
    h, w = rgb.shape[:2]
    x, y = landmarks[:, 0], landmarks[:, 1]
    moved = {1: (y, w - 1 - x), 2: (w - 1 - x, h - 1 - y), 3: (h - 1 - y, x)}[turns % 4]
    return np.ascontiguousarray(np.rot90(rgb, turns)), np.stack(moved, 1)


def _under(rgb, s, rng, landmarks):
    return gamma(rgb, 1.4 + 3.1 * s, gain=1.0 - 0.3 * s * rng.uniform()), 1.0


def _over(rgb, s, rng, landmarks):
    return gamma(rgb, 1.0 / (1.3 + 2.2 * s), gain=1.0 + 0.8 * s), 1.0


def _lowres(rgb, s, rng, landmarks):
    eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0])) or 40.0
    # log-uniform path from 70% of the original size down to 7 px between the eyes
    start, end = math.log(0.7), math.log(min(0.7, 7.0 / eye_distance))
    factor = math.exp(start + (end - start) * s)
    return downscale(rgb, factor), factor


def _occlusion(rgb, s, rng, landmarks):
    out = rgb.copy()
    eyes, nose, mouth = landmarks[:2], landmarks[2], landmarks[3:]
    ied = float(np.linalg.norm(eyes[1] - eyes[0])) or 40.0
    kind = rng.integers(3)
    if kind == 0:  # sunglasses-like band over the eyes
        cy = eyes[:, 1].mean()
        half_h = ied * (0.15 + 0.35 * s)
        x1, x2 = eyes[:, 0].min() - ied * 0.5, eyes[:, 0].max() + ied * 0.5
        y1, y2 = cy - half_h, cy + half_h
    elif kind == 1:  # mask-like block over mouth and, when severe, the nose
        top = mouth[:, 1].mean() - (mouth[:, 1].mean() - nose[1]) * (0.3 + 1.5 * s)
        x1, x2 = mouth[:, 0].min() - ied * 0.6, mouth[:, 0].max() + ied * 0.6
        y1, y2 = top, mouth[:, 1].mean() + ied * 0.8
    else:  # a hand or object from one side
        cx = landmarks[:, 0].mean()
        width = ied * (0.5 + 1.5 * s)
        y1, y2 = eyes[:, 1].min() - ied * 0.8, mouth[:, 1].max() + ied * 0.8
        x1, x2 = (cx - 2 * ied, cx - 2 * ied + width) if rng.uniform() < 0.5 else (cx + 2 * ied - width, cx + 2 * ied)
    colour = rng.integers(0, 256, 3) if rng.uniform() < 0.5 else np.array([20, 20, 20])
    p1 = (int(round(x1)), int(round(y1)))
    p2 = (int(round(x2)), int(round(y2)))
    cv2.rectangle(out, p1, p2, tuple(int(c) for c in colour), -1)
    return out, 1.0


Degradation = Callable[[np.ndarray, float, np.random.Generator, np.ndarray], tuple[np.ndarray, float]]

DEGRADATIONS: dict[str, Degradation] = {
    "defocus": _defocus,
    "motion_blur": _motion,
    "gaussian_blur": _gaussian,
    "noise": _noise,
    "jpeg": _jpeg,
    "underexposure": _under,
    "overexposure": _over,
    "low_resolution": _lowres,
    "occlusion": _occlusion,
}


#: Kinds made for training only (the evaluation sets draw from :data:`DEGRADATIONS`, so
#: their seeded draws stay as they were): a photo turned 90, 180 or 270 degrees (a face
#: upside down or sideways is not recognised, yet MTCNN can place upright-looking landmarks
#: on it), and JPEG quality 1-5.
TRAINING_ONLY = ("rotation", "jpeg_extreme")


def degrade(
    rgb: np.ndarray, landmarks: np.ndarray, kind: str, severity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one degradation (a name in :data:`DEGRADATIONS` or :data:`TRAINING_ONLY`);
    returns the new image and the landmarks moved with it."""
    if kind == "rotation":  # severity picks the turn: 90, 180 or 270 degrees
        return rotate(rgb, landmarks, 1 + min(2, int(severity * 3)))
    if kind == "jpeg_extreme":
        return _jpeg_extreme(rgb, severity, rng, landmarks)[0], landmarks
    out, scale = DEGRADATIONS[kind](rgb, float(severity), rng, landmarks)
    return out, landmarks * scale
