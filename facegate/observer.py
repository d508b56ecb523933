"""Observer quality: read capture quality off a face recognizer's own intermediate features.

In the spirit of FROQ (arXiv 2509.17689): the recognizer stays frozen and untrained; we
only choose one of its layers and fit a tiny linear read-out on it. The read-out is
calibrated on *pseudo-quality* labels that need no identities: how stable the recognizer's
embedding of a crop stays under small, quality-neutral perturbations (a crop the network
reads confidently barely moves; a blurred, dark or occluded one wanders).

Pipeline (``python -m train.observer`` runs it on LFW training people):

1. :func:`pseudo_quality`: mean cosine similarity of perturbed embeddings to the crop's
   own embedding (the pairwise form among perturbed copies is available, but it rates
   heavily blurred crops as stable; see there).
2. :func:`extract_features`: one forward pass, pooled channels and two scalar statistics
   at several depths.
3. :func:`calibrate`: ridge read-outs on half of the crops, candidate (depth, feature)
   chosen by Spearman correlation on the other half, refit on all -> :class:`ObserverCalibration`
   (a small JSON file; the recognizer's checkpoint is not part of it).
4. :class:`ObserverScorer`: one forward pass up to the chosen layer, then the read-out.

Scores are in the units of the pseudo-labels (about a mean cosine similarity, higher is
better) and are meant for ranking and thresholding captures, not as probabilities.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from .errors import ConfigError, WeightsError
from .recognition import MobileFaceNet, MobileFaceNetRecognizer

__all__ = [
    "CANDIDATE_LAYERS",
    "FEATURE_KINDS",
    "LAYERS",
    "ANCHORS",
    "LayerFeatures",
    "ObserverCalibration",
    "ObserverScorer",
    "calibrate",
    "default_calibration_path",
    "extract_features",
    "pseudo_quality",
]

#: Every tap point of :class:`MobileFaceNet`, in forward order.
LAYERS: tuple[str, ...] = (
    ("conv1", "dw_conv1") + tuple(f"blocks.{i}" for i in range(15)) + ("conv2", "linear7", "embedding")
)

#: Channels of each tap point (``embedding`` is ``linear1``'s output before normalisation).
LAYER_CHANNELS: dict[str, int] = {
    "conv1": 64, "dw_conv1": 64,
    **{f"blocks.{i}": 64 if i < 5 else 128 for i in range(15)},
    "conv2": 512, "linear7": 512, "embedding": 128,
}

#: Depths tried by :func:`calibrate`: the stem, the end of each bottleneck stage and the
#: middle of the long ones, and the head.
CANDIDATE_LAYERS: tuple[str, ...] = (
    "conv1", "dw_conv1", "blocks.1", "blocks.4", "blocks.5", "blocks.8", "blocks.11",
    "blocks.12", "blocks.14", "conv2", "linear7", "embedding",
)

#: ``pooled``: global-average-pooled channel vector (ridge read-out); ``norm``: its L2 norm;
#: ``mean_abs``: mean absolute activation of the whole map. The scalars are read out alone.
FEATURE_KINDS: tuple[str, ...] = ("pooled", "norm", "mean_abs")

CROP_SHAPE = (112, 96, 3)
FORMAT = "facegate-observer"
FORMAT_VERSION = 1
SHIPPED_NAME = "observer_mobilefacenet_casia.json"

#: Ridge penalties tried (on standardised features); chosen per candidate by leave-one-out error.
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))


def default_calibration_path() -> Path:
    """The calibration shipped inside the package (for the shared MobileFaceNet checkpoint)."""
    from .scorer import default_weights_dir

    return default_weights_dir() / SHIPPED_NAME


# --------------------------------------------------------------------------- inputs


def _check_crops(crops: np.ndarray) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != CROP_SHAPE or crops.dtype != np.uint8:
        raise ConfigError(
            f"expected aligned crops of shape (N, 112, 96, 3) uint8 (recognizer.align), "
            f"got {crops.shape} {crops.dtype}"
        )
    return crops


def _to_input(crops: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(B, 112, 96, 3)`` uint8 -> ``(B, 3, 112, 96)`` float, scaled as MobileFaceNet expects."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).to(device)
    return (x.permute(0, 3, 1, 2).float() - 127.5) / 128.0


# --------------------------------------------------------------------------- pseudo-labels


def _perturbation_plan(perturbations: int, seed: int) -> list[dict]:
    """The same ``perturbations`` random draws for every crop, so a crop's pseudo-label is a
    function of the crop alone (not of its batch) and crops are compared on equal terms."""
    rng = np.random.default_rng(seed)
    plan = []
    for _ in range(perturbations):
        plan.append({
            "shift": rng.uniform(-2.0, 2.0, 2),  # pixels of the 96x112 crop
            "scale": float(np.exp(rng.uniform(-0.05, 0.05))),
            "flip": bool(rng.uniform() < 0.5),
            "contrast": float(rng.uniform(0.9, 1.1)),
            "brightness": float(rng.uniform(-8.0, 8.0)),
            # grey noise of 3-6 grey levels: what carries the signal on blurred, dark and
            # low-resolution crops (their embedding moves; a sharp face's barely does)
            "noise": rng.normal(0.0, float(rng.uniform(3.0, 6.0)), CROP_SHAPE[:2] + (1,)).astype(np.float32),
        })
    return plan


def _perturb(crop: np.ndarray, p: dict) -> np.ndarray:
    """One ``(112, 96, 3)`` uint8 crop re-sampled (shift, scale about the centre), maybe
    mirrored, with mild brightness/contrast jitter and light grey Gaussian noise."""
    h, w = crop.shape[:2]
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    matrix = np.zeros((2, 3))
    matrix[0, 0] = matrix[1, 1] = p["scale"]
    matrix[:, 2] = centre - p["scale"] * centre + p["shift"]
    out = cv2.warpAffine(crop, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    if p["flip"]:
        out = out[:, ::-1]
    out = (out.astype(np.float32) - 127.5) * p["contrast"] + 127.5 + p["brightness"] + p["noise"]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


#: How perturbed embeddings are compared (see :func:`pseudo_quality`).
ANCHORS = ("original", "pairwise")


def pseudo_quality(
    recognizer: MobileFaceNetRecognizer,
    crops: np.ndarray,
    perturbations: int = 8,
    seed: int = 0,
    *,
    anchor: str = "original",
) -> np.ndarray:
    """Unsupervised quality of aligned crops: embedding stability under perturbations.

    Each crop is embedded (``recognizer.embed_aligned``: image + mirror, 256-d) as it is
    and under the same ``perturbations`` random quality-neutral-ish perturbations (small
    shift and scale by re-sampling, mirror, brightness/contrast jitter, light noise).

    ``anchor="original"`` (default): mean cosine similarity of each perturbed embedding to
    the crop's own embedding. ``anchor="pairwise"``: mean pairwise cosine similarity among
    the perturbed embeddings. The pairwise form is fooled by the worst crops: noisy copies of
    a featureless (heavily blurred) face all fall into the same "no face detail" region, so
    they agree with one another while all moving far from the crop's embedding; on LFW with
    the shared MobileFaceNet, pairwise ranks Gaussian-blurred crops *above* clean ones.

    Args:
        crops: ``(N, 112, 96, 3)`` uint8 RGB, aligned with ``recognizer.align``.

    Returns:
        ``(N,)`` float64 in [-1, 1], higher = more stable.
    """
    crops = _check_crops(crops)
    if anchor not in ANCHORS:
        raise ConfigError(f"anchor must be one of {ANCHORS}, got {anchor!r}")
    if perturbations < (2 if anchor == "pairwise" else 1):
        raise ConfigError(f"too few perturbations for anchor={anchor!r}: {perturbations}")
    n = len(crops)
    if n == 0:
        return np.zeros(0)
    plan = _perturbation_plan(perturbations, seed)
    out = np.empty(n)
    chunk = max(4, 4 * recognizer.batch_size // (perturbations + 1))
    iu = np.triu_indices(perturbations, 1)
    for start in range(0, n, chunk):
        part = crops[start : start + chunk]
        b = len(part)
        batch = np.stack([c for c in part] + [_perturb(c, p) for c in part for p in plan])  # (b * (P + 1), 112, 96, 3)
        emb = recognizer.embed_aligned(batch)  # unit rows
        own, moved = emb[:b], emb[b:].reshape(b, perturbations, -1)  # (b, D), (b, P, D)
        if anchor == "original":
            out[start : start + b] = np.einsum("bpd,bd->bp", moved, own).mean(1)
        else:
            sims = np.einsum("bpd,bqd->bpq", moved, moved)  # (b, P, P)
            out[start : start + b] = sims[:, iu[0], iu[1]].mean(1)
    return out


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class LayerFeatures:
    """Candidate features of one depth for ``N`` crops."""

    pooled: np.ndarray  # (N, C) global-average-pooled channels
    norm: np.ndarray  # (N,) L2 norm of ``pooled``
    mean_abs: np.ndarray  # (N,) mean |activation| over the whole (C, H, W) map

    def get(self, kind: str) -> np.ndarray:
        """``(N, D)`` design matrix of one feature kind (scalars as one column)."""
        value = getattr(self, kind)
        return value if value.ndim == 2 else value[:, None]


def _forward_taps(net: MobileFaceNet, x: torch.Tensor, wanted: Sequence[str]) -> dict[str, torch.Tensor]:
    """Mirror of :meth:`MobileFaceNet.forward` that records the ``wanted`` tap points and
    stops as soon as the deepest one is reached (the rest of the net is never run)."""
    wanted = set(wanted)
    unknown = wanted - set(LAYERS)
    if unknown:
        raise ConfigError(f"unknown layers {sorted(unknown)}; choose from {LAYERS}")
    taps: dict[str, torch.Tensor] = {}
    stages = [("conv1", net.conv1), ("dw_conv1", net.dw_conv1)]
    stages += [(f"blocks.{i}", block) for i, block in enumerate(net.blocks)]
    stages += [("conv2", net.conv2), ("linear7", net.linear7), ("embedding", net.linear1)]
    for name, stage in stages:
        x = stage(x)
        if name in wanted:
            taps[name] = x
            if len(taps) == len(wanted):
                break
    return taps


def _summarise(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, C, H, W)`` map -> pooled ``(B, C)``, its norm ``(B,)``, mean |activation| ``(B,)``."""
    pooled = t.mean((2, 3))
    return pooled, pooled.norm(dim=1), t.abs().flatten(1).mean(1)


def extract_features(
    recognizer: MobileFaceNetRecognizer,
    crops: np.ndarray,
    layers: Sequence[str] = CANDIDATE_LAYERS,
    batch_size: int | None = None,
) -> dict[str, LayerFeatures]:
    """Run the recognizer's net once per batch and summarise each of ``layers``.

    Args:
        crops: ``(N, 112, 96, 3)`` uint8 RGB, aligned with ``recognizer.align``.

    Returns:
        layer name -> :class:`LayerFeatures` (float64).
    """
    crops = _check_crops(crops)
    batch_size = batch_size or recognizer.batch_size
    parts: dict[str, list[list[np.ndarray]]] = {name: [[], [], []] for name in layers}
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            x = _to_input(crops[start : start + batch_size], recognizer.device)
            for name, t in _forward_taps(recognizer.net, x, layers).items():
                for store, value in zip(parts[name], _summarise(t)):
                    store.append(value.double().cpu().numpy())
    out = {}
    for name in layers:
        if parts[name][0]:
            pooled, norm, mean_abs = (np.concatenate(p, 0) for p in parts[name])
        else:
            pooled, norm, mean_abs = np.zeros((0, LAYER_CHANNELS[name])), np.zeros(0), np.zeros(0)
        out[name] = LayerFeatures(pooled, norm, mean_abs)
    return out


# --------------------------------------------------------------------------- calibration


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


@dataclass(frozen=True)
class _Readout:
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.std) @ self.weights + self.bias


def _fit_ridge(x: np.ndarray, y: np.ndarray, alphas: Sequence[float] = RIDGE_ALPHAS) -> _Readout:
    """Closed-form ridge on standardised ``x`` ``(n, d)``; the penalty is the one with the
    lowest leave-one-out error (exact for ridge, from the SVD), so no inner split is needed."""
    mean = x.mean(0)
    std = x.std(0)
    std = np.where(std > 1e-8 * max(1.0, float(np.abs(mean).max(initial=0.0))), std, 1.0)
    xs = (x - mean) / std
    y_mean = float(y.mean())
    yc = y - y_mean
    u, s, vt = np.linalg.svd(xs, full_matrices=False)
    uty = u.T @ yc
    n = len(y)
    best = None
    for alpha in alphas:
        shrink = s**2 / (s**2 + alpha)
        fitted = u @ (shrink * uty)
        hat = (u**2) @ shrink + 1.0 / n
        loo = np.mean(((yc - fitted) / np.maximum(1.0 - hat, 1e-6)) ** 2)
        if best is None or loo < best[0]:
            best = (loo, alpha)
    alpha = best[1]
    weights = vt.T @ (s / (s**2 + alpha) * uty)
    return _Readout(mean, std, weights, y_mean, alpha)


def _split(n: int, groups: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random halves; crops sharing a group (copies of one photo) stay on one side."""
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if len(groups) != n:
        raise ConfigError(f"groups has {len(groups)} entries for {n} crops")
    unique = rng.permutation(np.unique(groups))
    fit_groups = unique[: len(unique) // 2]
    fit = np.isin(groups, fit_groups)
    return np.flatnonzero(fit), np.flatnonzero(~fit)


def calibrate(
    recognizer: MobileFaceNetRecognizer,
    crops: np.ndarray,
    pseudo: np.ndarray,
    seed: int = 0,
    *,
    groups: np.ndarray | None = None,
    layers: Sequence[str] = CANDIDATE_LAYERS,
    recognizer_name: str = "mobilefacenet_casia",
    perturbations: int = 8,
    anchor: str = "original",
) -> ObserverCalibration:
    """Choose a layer and feature of the recognizer that predicts ``pseudo`` and fit its read-out.

    Every (layer, feature kind) candidate is fitted on a random half of the crops and
    ranked by Spearman correlation with ``pseudo`` on the other half; the winner is refitted
    on all crops.

    Args:
        crops: ``(N, 112, 96, 3)`` uint8 aligned crops, ``N >= 8``.
        pseudo: ``(N,)`` labels, usually :func:`pseudo_quality` of ``crops``.
        groups: optional ``(N,)`` ids keeping related crops (a photo and its degraded copy)
            in the same half, so the held-out correlation is not flattered.
        perturbations, anchor, seed: recorded in the calibration (how ``pseudo`` was made).
    """
    from scipy.stats import spearmanr  # training extra

    crops = _check_crops(crops)
    pseudo = np.asarray(pseudo, dtype=np.float64).reshape(-1)
    if len(pseudo) != len(crops):
        raise ConfigError(f"{len(pseudo)} pseudo-labels for {len(crops)} crops")
    if len(crops) < 8:
        raise ConfigError(f"calibration needs at least 8 crops, got {len(crops)}")
    if not np.isfinite(pseudo).all():
        raise ConfigError("pseudo-labels contain NaN or infinity")
    t0 = time.time()
    features = extract_features(recognizer, crops, layers)
    fit, held = _split(len(crops), groups, np.random.default_rng(seed))
    if len(fit) < 4 or len(held) < 4:
        raise ConfigError(f"too few groups to split into halves ({len(fit)} / {len(held)} crops)")

    table, best = [], None
    for layer in layers:
        for kind in FEATURE_KINDS:
            x = features[layer].get(kind)
            readout = _fit_ridge(x[fit], pseudo[fit])
            pred = readout.predict(x[held])
            with np.errstate(all="ignore"):
                rho = float(spearmanr(pred, pseudo[held])[0]) if np.ptp(pred) > 0 else float("nan")
            finite = math.isfinite(rho)
            table.append({"layer": layer, "feature": kind, "srcc": round(rho, 4) if finite else None,
                          "alpha": readout.alpha})
            if finite and (best is None or rho > best[0]):
                best = (rho, layer, kind)
    if best is None:
        raise ConfigError("no candidate correlates with the pseudo-labels (are they constant?)")
    rho, layer, kind = best
    readout = _fit_ridge(features[layer].get(kind), pseudo, alphas=(_table_alpha(table, layer, kind),))
    return ObserverCalibration(
        layer=layer,
        feature=kind,
        mean=tuple(float(v) for v in readout.mean),
        std=tuple(float(v) for v in readout.std),
        weights=tuple(float(v) for v in readout.weights),
        bias=float(readout.bias),
        alpha=float(readout.alpha),
        srcc=round(rho, 4),
        candidates=tuple(table),
        calibration_crops=len(crops),
        recognizer=recognizer_name,
        perturbations=perturbations,
        anchor=anchor,
        seed=seed,
        notes={
            "fit_crops": int(len(fit)),
            "held_out_crops": int(len(held)),
            "pseudo_mean": round(float(pseudo.mean()), 5),
            "pseudo_std": round(float(pseudo.std()), 5),
            "seconds": round(time.time() - t0, 1),
        },
    )


def _table_alpha(table: Sequence[dict], layer: str, kind: str) -> float:
    """The ridge penalty a candidate was selected with (kept when refitting on all crops)."""
    return next(row["alpha"] for row in table if row["layer"] == layer and row["feature"] == kind)


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
        pooled, norm, mean_abs = _summarise(t)
        x = {"pooled": pooled, "norm": norm[:, None], "mean_abs": mean_abs[:, None]}[self.calibration.feature]
        return ((x.float().cpu() - self._mean) / self._std) @ self._weights + self.calibration.bias

    def score_aligned(self, crops: np.ndarray) -> np.ndarray:
        """``(N, 112, 96, 3)`` uint8 crops from ``recognizer.align`` -> ``(N,)`` float64 scores."""
        crops = _check_crops(crops)
        layer = self.calibration.layer
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.recognizer.batch_size):
                x = _to_input(crops[start : start + self.recognizer.batch_size], self.recognizer.device)
                out.append(self._read(_forward_taps(self.recognizer.net, x, (layer,))[layer]).double().numpy())
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

