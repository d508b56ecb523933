"""Observer quality: read capture quality off a face recognizer's own intermediate features.

In the spirit of FROQ (arXiv 2509.17689): the recognizer stays frozen and untrained; we
only choose one of its layers and fit a tiny linear read-out on it. The read-out is
calibrated on *pseudo-quality* labels that need no identities: how stable the recognizer's
embedding of a crop stays under small, quality-neutral perturbations (a crop the network
reads confidently barely moves; a blurred, dark or occluded one wanders).

This module holds what scoring needs: :class:`ObserverCalibration` (a small JSON file; the
recognizer's checkpoint is not part of it) and :class:`ObserverScorer` (one forward pass up
to the chosen layer, then the read-out). Making a calibration (pseudo-labels, candidate
features, ridge read-outs) is training code: ``python -m train.observer`` (train/observer.py).

Scores are in the units of the pseudo-labels (about a mean cosine similarity, higher is
better) and are meant for ranking and thresholding captures, not as probabilities.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import ConfigError, WeightsError
from .mobilefacenet import STAGE_CHANNELS, STAGE_NAMES, MobileFaceNet, MobileFaceNetRecognizer

__all__ = [
    "FEATURE_KINDS",
    "LAYERS",
    "ObserverCalibration",
    "ObserverScorer",
    "check_crops",
    "default_calibration_path",
    "forward_taps",
    "summarise",
]

#: Every tap point of :class:`MobileFaceNet` (its named stages), in forward order.
LAYERS: tuple[str, ...] = STAGE_NAMES
#: Channels of each tap point (``embedding`` is ``linear1``'s output before normalisation).
LAYER_CHANNELS: dict[str, int] = STAGE_CHANNELS

#: ``pooled``: global-average-pooled channel vector (ridge read-out); ``norm``: its L2 norm;
#: ``mean_abs``: mean absolute activation of the whole map. The scalars are read out alone.
FEATURE_KINDS: tuple[str, ...] = ("pooled", "norm", "mean_abs")

CROP_SHAPE = (112, 96, 3)
FORMAT = "facegate-observer"
FORMAT_VERSION = 1
SHIPPED_NAME = "observer_mobilefacenet_casia.json"

def default_calibration_path() -> Path:
    """The calibration shipped inside the package (for the shared MobileFaceNet checkpoint)."""
    from .scorer import default_weights_dir

    return default_weights_dir() / SHIPPED_NAME


# --------------------------------------------------------------------------- inputs


def check_crops(crops: np.ndarray) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != CROP_SHAPE or crops.dtype != np.uint8:
        raise ConfigError(
            f"expected aligned crops of shape (N, 112, 96, 3) uint8 (recognizer.align), "
            f"got {crops.shape} {crops.dtype}"
        )
    return crops


# --------------------------------------------------------------------------- features


def forward_taps(net: MobileFaceNet, x: torch.Tensor, wanted: Sequence[str]) -> dict[str, torch.Tensor]:
    """Run ``net``'s stages, recording the ``wanted`` ones, and stop as soon as the deepest
    one is reached (the rest of the net is never run)."""
    wanted = set(wanted)
    unknown = wanted - set(LAYERS)
    if unknown:
        raise ConfigError(f"unknown layers {sorted(unknown)}; choose from {LAYERS}")
    taps: dict[str, torch.Tensor] = {}
    for name, stage in net.stages():
        x = stage(x)
        if name in wanted:
            taps[name] = x
            if len(taps) == len(wanted):
                break
    return taps


def summarise(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, C, H, W)`` map -> pooled ``(B, C)``, its norm ``(B,)``, mean |activation| ``(B,)``."""
    pooled = t.mean((2, 3))
    return pooled, pooled.norm(dim=1), t.abs().flatten(1).mean(1)


# --------------------------------------------------------------------------- calibration file


@dataclass(frozen=True)
class ObserverCalibration:
    """The chosen read-out: ``score = ((feature - mean) / std) @ weights + bias``.

    ``candidates`` holds every (layer, feature) tried with its Spearman correlation on the
    held-out half (``None`` where undefined), so the choice can be audited.
    """

    layer: str
    feature: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    alpha: float
    srcc: float
    candidates: tuple[dict, ...]
    calibration_crops: int
    recognizer: str
    perturbations: int = 8
    anchor: str = "original"
    seed: int = 0
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.layer not in LAYERS:
            raise WeightsError(f"observer calibration names unknown layer {self.layer!r}")
        if self.feature not in FEATURE_KINDS:
            raise WeightsError(f"observer calibration names unknown feature {self.feature!r}")
        dim = LAYER_CHANNELS[self.layer] if self.feature == "pooled" else 1
        if not (len(self.mean) == len(self.std) == len(self.weights) == dim):
            raise WeightsError(
                f"observer calibration for {self.layer}:{self.feature} needs {dim} weights, "
                f"has mean/std/weights of {len(self.mean)}/{len(self.std)}/{len(self.weights)}"
            )
        values = (*self.mean, *self.std, *self.weights, self.bias)
        if not all(math.isfinite(v) for v in values) or min(self.std) <= 0:
            raise WeightsError("observer calibration holds non-finite weights or a non-positive std")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": FORMAT, "version": FORMAT_VERSION, **asdict(self)}
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "ObserverCalibration":
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: observer calibration not found")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeightsError(f"{path}: cannot read observer calibration ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise WeightsError(f"{path}: not a facegate observer calibration")
        if data.get("version") != FORMAT_VERSION:
            raise WeightsError(f"{path}: observer calibration version {data.get('version')}, "
                               f"this facegate reads {FORMAT_VERSION}")
        data.pop("format"), data.pop("version")
        try:
            for key in ("mean", "std", "weights", "candidates"):
                data[key] = tuple(data[key])
            return cls(**data)
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path}: malformed observer calibration ({exc})") from None


# --------------------------------------------------------------------------- scoring


class ObserverScorer:
    """Quality of aligned crops from one layer of the recognizer and a linear read-out.

    Args:
        recognizer: the recognizer the calibration was made for (its ``net`` is run only up
            to the chosen layer).
        calibration: an :class:`ObserverCalibration`, or a path to its JSON.
    """

    def __init__(self, recognizer: MobileFaceNetRecognizer, calibration: ObserverCalibration | str | Path):
        if not isinstance(calibration, ObserverCalibration):
            calibration = ObserverCalibration.load(calibration)
        self.recognizer = recognizer
        self.calibration = calibration
        self._mean = torch.tensor(calibration.mean, dtype=torch.float32)
        self._std = torch.tensor(calibration.std, dtype=torch.float32)
        self._weights = torch.tensor(calibration.weights, dtype=torch.float32)

    def _read(self, t: torch.Tensor) -> torch.Tensor:
        pooled, norm, mean_abs = summarise(t)
        x = {"pooled": pooled, "norm": norm[:, None], "mean_abs": mean_abs[:, None]}[self.calibration.feature]
        return ((x.float().cpu() - self._mean) / self._std) @ self._weights + self.calibration.bias

    def score_aligned(self, crops: np.ndarray) -> np.ndarray:
        """``(N, 112, 96, 3)`` uint8 crops from ``recognizer.align`` -> ``(N,)`` float64 scores."""
        crops = check_crops(crops)
        layer = self.calibration.layer
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.recognizer.batch_size):
                x = self.recognizer.to_input(crops[start : start + self.recognizer.batch_size])
                out.append(self._read(forward_taps(self.recognizer.net, x, (layer,))[layer]).double().numpy())
        scores = np.concatenate(out) if out else np.zeros(0)
        # a finite read-out of finite activations is finite; this only guards a broken net
        return np.nan_to_num(scores, nan=-1.0, posinf=1.0, neginf=-1.0)

    def score(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB images and their ``(5, 2)`` landmarks -> ``(N,)`` scores."""
        if len(images) != len(landmarks):
            raise ConfigError(f"{len(images)} images but {len(landmarks)} landmark sets")
        if not len(images):
            return np.zeros(0)
        crops = np.stack([self.recognizer.align(img, np.asarray(lm, np.float64)) for img, lm in zip(images, landmarks)])
        return self.score_aligned(crops)

