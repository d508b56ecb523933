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



def _face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Eye centre, the face's right-hand and downward unit vectors (from the eye line), and
    the eye distance: accessories are drawn in the face's own frame, so a tilted head wears
    them tilted."""
    eyes = landmarks[:2].astype(np.float64)
    across = eyes[1] - eyes[0]
    ied = float(np.linalg.norm(across)) or 40.0
    right = across / ied if np.linalg.norm(across) else np.array([1.0, 0.0])
    down = np.array([-right[1], right[0]])
    return eyes.mean(0), right, down, ied


def _blend(rgb: np.ndarray, layer: np.ndarray, mask: np.ndarray, alpha: float) -> np.ndarray:
    a = (mask.astype(np.float32) / 255.0 * alpha)[..., None]
    return np.clip(rgb * (1 - a) + layer * a, 0, 255).astype(np.uint8)


def _points(centre, right, down, ied, uv) -> np.ndarray:
    """Pixel points of ``uv``, given in eye distances along the face's right and down axes."""
    uv = np.asarray(uv, dtype=np.float64) * ied
    return np.round(centre + uv[:, :1] * right + uv[:, 1:] * down).astype(np.int32)


def _accessory(rgb, s, rng, landmarks):
    """Partial occlusion as it happens in real captures: sunglasses, a cap brim and its
    shadow, hair across the face, a hand. The rectangles of ``occlusion`` teach a block of
    colour; these look like what the recognizer meets in the wild (a cap pulled low,
    sunglasses, hair over an eye were the natural LFW failures the models scored 91-97)."""
    centre, right, down, ied = _face_frame(landmarks)
    h, w = rgb.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    layer = rgb.astype(np.float32).copy()
    kind = rng.integers(4)
    angle = math.degrees(math.atan2(right[1], right[0]))

    def ellipse(uv_centre, axes_uv, value=255):
        c = _points(centre, right, down, ied, [uv_centre])[0]
        cv2.ellipse(mask, (int(c[0]), int(c[1])), (max(1, int(axes_uv[0] * ied)), max(1, int(axes_uv[1] * ied))),
                    angle, 0, 360, value, -1, cv2.LINE_AA)

    if kind == 0:  # sunglasses: two dark lenses, a bridge and the arms
        grow = 0.85 + 0.45 * s
        for side in (-0.5, 0.5):
            ellipse((side, 0.02), (0.36 * grow, 0.25 * grow))
        bridge = _points(centre, right, down, ied, [(-0.15, -0.05), (0.15, -0.05)])
        cv2.line(mask, tuple(map(int, bridge[0])), tuple(map(int, bridge[1])), 255, max(1, int(0.06 * ied)), cv2.LINE_AA)
        for side in (-1, 1):
            arm = _points(centre, right, down, ied, [(side * 0.8, -0.05), (side * 1.25, -0.1)])
            cv2.line(mask, tuple(map(int, arm[0])), tuple(map(int, arm[1])), 255, max(1, int(0.05 * ied)), cv2.LINE_AA)
        tint = rng.uniform(5, 60) * np.array([1.0, 1.0, 1.0]) + rng.uniform(0, 25, 3)
        layer[:] = tint
        alpha = 0.75 + 0.25 * s
    elif kind == 1:  # a cap: the brim's edge comes down towards the eyes, its shadow below it
        edge = -0.95 + 0.85 * s  # in eye distances above (negative) the eye line
        dome = [(1.25 * math.cos(a), edge - 0.1 - 1.6 * math.sin(a)) for a in np.linspace(0, math.pi, 15)]
        brim = _points(centre, right, down, ied, [(1.45, edge - 0.1), (0.7, edge + 0.02), (0.0, edge + 0.07),
                                                   (-0.7, edge + 0.02), (-1.45, edge - 0.1)][::-1] + dome)
        cv2.fillPoly(mask, [brim], 255, cv2.LINE_AA)
        shade = np.zeros_like(mask)
        band = _points(centre, right, down, ied, [(-1.5, edge - 0.2), (1.5, edge - 0.2), (1.5, edge + 0.9), (-1.5, edge + 0.9)])
        cv2.fillPoly(shade, [band], 255)
        shade = cv2.GaussianBlur(shade, (0, 0), 0.25 * ied)
        darker = 0.35 + 0.35 * (1 - s) * rng.uniform()
        out = _blend(rgb, rgb.astype(np.float32) * darker, shade, 1.0)
        layer = out.astype(np.float32)
        layer[mask > 0] = rng.integers(0, 200, 3)
        return _blend(out, layer, mask, 1.0), 1.0
    elif kind == 2:  # hair falling across the face: strands from above the forehead over one eye
        side = 1 if rng.uniform() < 0.5 else -1
        colour = np.array([[25, 20, 18], [70, 45, 30], [150, 110, 60], [200, 170, 120]])[rng.integers(4)]
        for _ in range(int(8 + 40 * s)):
            x0 = side * rng.uniform(-0.3, 0.9)
            ctrl = [(x0, -1.4), (x0 - side * rng.uniform(0.0, 0.4), -0.2),
                    (x0 - side * rng.uniform(0.0, 0.5) * (0.5 + s), 0.3 + 1.2 * s * rng.uniform())]
            t = np.linspace(0, 1, 12)[:, None]
            curve = (1 - t) ** 2 * np.array(ctrl[0]) + 2 * t * (1 - t) * np.array(ctrl[1]) + t ** 2 * np.array(ctrl[2])
            cv2.polylines(mask, [_points(centre, right, down, ied, curve)], False, 255,
                          max(1, int(ied * rng.uniform(0.03, 0.1))), cv2.LINE_AA)
        layer[:] = colour
        alpha = 0.8 + 0.2 * s
    else:  # a hand over the mouth and chin or a cheek
        tone = np.array([[230, 190, 160], [200, 150, 120], [150, 100, 70], [100, 65, 45]])[rng.integers(4)]
        x = rng.uniform(-0.6, 0.6)
        y = 1.55 - 0.6 * s
        ellipse((x, y), (0.55 + 0.25 * s, 0.45 + 0.2 * s))
        for finger in range(4):
            ellipse((x - 0.45 + 0.3 * finger, y - 0.45 - 0.25 * s), (0.12, 0.35 + 0.2 * s))
        layer[:] = tone + rng.normal(0, 6, 3)
        alpha = 1.0
    return _blend(rgb, layer, mask, alpha), 1.0


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
#: on it), JPEG quality 1-5, and
#: sunglasses, a cap, hair or a hand over part of the face.
TRAINING_ONLY = ("rotation", "jpeg_extreme", "accessory", "greyscale")


def greyscale(rgb: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    """What a grey or near-infrared camera gives: below severity 0.5 the photo's luminance
    (BT.601), from 0.5 an IR-like rendering (near-infrared sees skin bright and even, so the
    red channel dominates; lifted mid-tones, a little softness). Three equal channels, as a
    grey image decodes."""
    x = rgb.astype(np.float32) / 255.0
    if severity < 0.5:
        grey = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    else:
        w = np.array([rng.uniform(0.6, 0.9), rng.uniform(0.1, 0.3), 0.0], np.float32)
        grey = (x @ (w / w.sum())) ** rng.uniform(0.6, 0.9)
        grey = cv2.GaussianBlur(grey, (0, 0), rng.uniform(0.3, 1.0))
    out = np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, axis=2)


def degrade(
    rgb: np.ndarray, landmarks: np.ndarray, kind: str, severity: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply one degradation (a name in :data:`DEGRADATIONS` or :data:`TRAINING_ONLY`);
    returns the new image and the landmarks moved with it."""
    if kind == "rotation":  # severity picks the turn: 90, 180 or 270 degrees
        return rotate(rgb, landmarks, 1 + min(2, int(severity * 3)))
    if kind == "jpeg_extreme":
        return _jpeg_extreme(rgb, severity, rng, landmarks)[0], landmarks
    if kind == "accessory":
        return _accessory(rgb, severity, rng, landmarks)[0], landmarks
    if kind == "greyscale":
        return greyscale(rgb, severity, rng), landmarks
    out, scale = DEGRADATIONS[kind](rgb, float(severity), rng, landmarks)
    return out, landmarks * scale
