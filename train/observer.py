"""Calibrate the observer quality scorer (``facegate/observer.py``) on LFW training people.

How a calibration is made:

1. :func:`pseudo_quality`: mean cosine similarity of perturbed embeddings to the crop's
   own embedding (the pairwise form among perturbed copies is available, but it rates
   heavily blurred crops as stable; see there).
2. :func:`extract_features`: one forward pass, pooled channels and two scalar statistics
   at several depths (the recognizer's named stages).
3. :func:`calibrate`: ridge read-outs on half of the crops, candidate (depth, feature)
   chosen by Spearman correlation on the other half, refit on all ->
   :class:`facegate.observer.ObserverCalibration`.

Captures: ``--photos`` photos of distinct LFW training people (seeded; people reserved for
evaluation never enter), each as it is plus one copy degraded by a random kind from
``train/degradations.py`` at a random severity. Landmarks come from the capture stage
(the shipped weights' detector settings) on the clean photo and move with the degradation. Pseudo-labels are embedding stability under
perturbations (no identities used); the read-out is chosen and fitted by
:func:`facegate.observer.calibrate` and saved as a small JSON file.

Run: ``python -m train.observer --shared ../shared --out facegate/weights/observer_mobilefacenet_casia.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from facegate.capture import CaptureStage
from facegate.errors import ConfigError
from facegate.observer import (CROP_SHAPE, FEATURE_KINDS, LAYER_CHANNELS, ObserverCalibration, check_crops,
                               forward_taps, summarise)
from facegate.recognition import MobileFaceNetRecognizer

from .degradations import DEGRADATIONS, degrade
from .lfw import training_people


#: Depths tried by :func:`calibrate`: the stem, the end of each bottleneck stage and the
#: middle of the long ones, and the head.
CANDIDATE_LAYERS: tuple[str, ...] = (
    "conv1", "dw_conv1", "blocks.1", "blocks.4", "blocks.5", "blocks.8", "blocks.11",
    "blocks.12", "blocks.14", "conv2", "linear7", "embedding",
)


#: Ridge penalties tried (on standardised features); chosen per candidate by leave-one-out error.
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))



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
    crops = check_crops(crops)
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
    crops = check_crops(crops)
    batch_size = batch_size or recognizer.batch_size
    parts: dict[str, list[list[np.ndarray]]] = {name: [[], [], []] for name in layers}
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            x = recognizer.to_input(crops[start : start + batch_size])
            for name, t in forward_taps(recognizer.net, x, layers).items():
                for store, value in zip(parts[name], summarise(t)):
                    store.append(value.double().cpu().numpy())
    out = {}
    for name in layers:
        if parts[name][0]:
            pooled, norm, mean_abs = (np.concatenate(p, 0) for p in parts[name])
        else:
            pooled, norm, mean_abs = np.zeros((0, LAYER_CHANNELS[name])), np.zeros(0), np.zeros(0)
        out[name] = LayerFeatures(pooled, norm, mean_abs)
    return out



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
    crops = check_crops(crops)
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

    table, best = _rank_candidates(features, pseudo, fit, held, layers)
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


def _rank_candidates(features: dict, pseudo: np.ndarray, fit: np.ndarray, held: np.ndarray, layers) -> tuple:
    """Every (layer, feature kind) read-out fitted on ``fit`` and its Spearman correlation on
    ``held``: the table of all, and the best as ``(srcc, layer, kind)`` (None if none is finite)."""
    from scipy.stats import spearmanr  # training extra

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
    return table, best


def _table_alpha(table: Sequence[dict], layer: str, kind: str) -> float:
    """The ridge penalty a candidate was selected with (kept when refitting on all crops)."""
    return next(row["alpha"] for row in table if row["layer"] == layer and row["feature"] == kind)


def calibration_captures(
    shared: Path, recognizer: MobileFaceNetRecognizer, photos: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Aligned crops ``(2 * found, 112, 96, 3)`` uint8, their photo index ``(2 * found,)``
    (clean and degraded copy share it) and a label per crop (``none`` or the degradation)."""
    rng = np.random.default_rng(seed)
    people = training_people(shared)
    names = [str(n) for n in rng.permutation(sorted(people))]  # one photo per person: no celebrity dominates
    stage = CaptureStage()
    kinds = sorted(DEGRADATIONS)
    crops, groups, labels = [], [], []
    for name in names:
        if len(crops) >= 2 * photos:
            break
        path = people[name][int(rng.integers(len(people[name])))]
        capture = stage.analyse(path)
        if capture.primary is None:
            continue
        rgb, face = capture.rgb, capture.primary
        kind = str(rng.choice(kinds))
        degraded, moved = degrade(rgb, face.landmarks, kind, float(rng.uniform()), rng)
        crops += [recognizer.align(rgb, face.landmarks), recognizer.align(degraded, moved)]
        groups += [len(groups) // 2] * 2
        labels += ["none", kind]
    return np.stack(crops), np.array(groups), labels


def print_table(cal: ObserverCalibration) -> None:
    print(f"{'layer':<11} {'pooled':>7} {'norm':>7} {'mean_abs':>9}   (SRCC with pseudo-quality, held-out half)")
    rows: dict[str, dict[str, float | None]] = {}
    for row in cal.candidates:
        rows.setdefault(row["layer"], {})[row["feature"]] = row["srcc"]
    fmt = lambda v: "    nan" if v is None else f"{v:7.3f}"  # noqa: E731
    for layer, cells in rows.items():
        print(f"{layer:<11} {fmt(cells.get('pooled'))} {fmt(cells.get('norm'))}   {fmt(cells.get('mean_abs'))}")
    print(f"chosen: {cal.layer}:{cal.feature} (SRCC {cal.srcc:.3f}, ridge alpha {cal.alpha:.3g})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("facegate/weights/observer_mobilefacenet_casia.json"))
    parser.add_argument("--photos", type=int, default=600, help="clean photos (each also gets one degraded copy)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perturbations", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: SHARED/models/mobilefacenet_casia.ckpt")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    checkpoint = args.checkpoint or args.shared / "models" / "mobilefacenet_casia.ckpt"
    recognizer = MobileFaceNetRecognizer(str(checkpoint), batch_size=16)  # small batches are faster on 1 core
    t0 = time.time()
    crops, groups, labels = calibration_captures(args.shared, recognizer, args.photos, args.seed)
    t1 = time.time()
    print(f"{len(crops)} captures from {len(crops) // 2} photos of LFW training people ({t1 - t0:.0f} s)", flush=True)
    pseudo = pseudo_quality(recognizer, crops, args.perturbations, args.seed)
    t2 = time.time()
    labels_arr = np.array(labels)
    print(f"pseudo-quality ({args.perturbations} perturbations, {t2 - t1:.0f} s): "
          f"clean median {np.median(pseudo[labels_arr == 'none']):.3f}, "
          f"degraded median {np.median(pseudo[labels_arr != 'none']):.3f}", flush=True)
    for kind in sorted(DEGRADATIONS):
        sel = labels_arr == kind
        if sel.any():
            print(f"  {kind:<15} n={sel.sum():3d} median {np.median(pseudo[sel]):.3f}")
    cal = calibrate(
        recognizer, crops, pseudo, args.seed, groups=groups,
        recognizer_name=checkpoint.stem, perturbations=args.perturbations,
    )
    t3 = time.time()
    notes = dict(cal.notes)
    notes.update({
        "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "photos": int(len(crops) // 2),
        "seconds_captures": round(t1 - t0, 1),
        "seconds_pseudo_labels": round(t2 - t1, 1),
        "seconds_calibration": round(t3 - t2, 1),
        "threads": args.threads,
        "command": f"python -m train.observer --photos {args.photos} --seed {args.seed} "
                   f"--perturbations {args.perturbations}",
    })
    cal = dataclasses.replace(cal, notes=notes)
    print_table(cal)
    cal.save(args.out)
    print(f"wrote {args.out}; captures {t1 - t0:.0f} s, pseudo-labels {t2 - t1:.0f} s, "
          f"calibration {t3 - t2:.0f} s, total {t3 - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
