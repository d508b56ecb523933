"""From trained members to a weights folder the gate loads: the score scale fitted on the
validation people, the default threshold, the spec, the members and their ONNX graphs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from facegate.models import load_member
from facegate.spec import ScorerSpec

from .data import load_crops, read_csv, split
from facegate.scale import fit_knots, reliability_table
from .trainer import predict

__all__ = ["THRESHOLD_RULE", "calibrate_scale", "choose_threshold", "calibrated", "write_weights"]

#: How the default threshold is chosen, in words (the spec and the model card carry it).
THRESHOLD_RULE = ("maximum Youden J on the validation captures (identity-disjoint), separating captures whose genuine "
                  "comparisons with good references succeed at FMR 1e-3 at least half the time from the others")


def choose_threshold(scores: np.ndarray, usable: np.ndarray) -> dict:
    """The score threshold that best separates usable captures (a genuine comparison with a
    good reference succeeds at FMR 1e-3 at least half the time) from the others: the point
    of maximum Youden's J (true-accept rate minus false-accept rate)."""
    best = {"j": -1.0}
    for t in np.unique(np.round(scores, 1)):
        accept = scores >= t
        tar = accept[usable].mean() if usable.any() else 0.0
        far = accept[~usable].mean() if (~usable).any() else 0.0
        if tar - far > best["j"]:
            best = {"j": float(tar - far), "threshold": float(t), "accept_usable": float(tar),
                    "accept_unusable": float(far), "unusable_share": float(1 - usable.mean())}
    return best


def calibrate_scale(csv_path: Path, member_dir: Path, spec: ScorerSpec, val_fraction: float = 0.2,
                    seed: int = 0) -> dict:
    """The v2 scale on the validation people of the training split (never trained on): the
    knots of the isotonic map from the ensemble's raw output (the spec's views) to the observed
    share of genuine comparisons with good references that succeed at FMR 1e-3, each capture
    weighted by its number of references; the default threshold; the reliability table (on
    the same captures, so in-sample: docs/evaluation.md has it on held-out people)."""
    samples = read_csv(csv_path)
    rows = {}
    with csv_path.open() as fh:
        for row in csv.DictReader(fh):
            rows[row["path"]] = row
    val = [samples[i] for i in split(samples, val_fraction, seed)[1]]
    crops, kept = load_crops(val, spec)
    label_dir = csv_path.parent
    recorded = [rows[val[i].path.relative_to(label_dir).as_posix()] for i in kept]
    observed = np.array([float(r["match_hard"]) for r in recorded])
    weight = np.array([float(r["references"]) for r in recorded])
    raw = np.mean([predict(load_member(member_dir / f"{a}.pt", a), crops, spec, spec.views) for a in spec.members], 0)
    knots = fit_knots(raw, observed, weight)
    scores = spec.with_(score_calibration=knots).to_score(raw)
    return {"knots": knots, "threshold": choose_threshold(scores, observed >= 0.5),
            "reliability": reliability_table(scores, observed, weight), "validation_captures": len(recorded)}


def calibrated(spec: ScorerSpec, scale: dict, rule: str = THRESHOLD_RULE) -> ScorerSpec:
    """``spec`` with the fitted scale and threshold of :func:`calibrate_scale`."""
    return spec.with_(score_calibration=scale["knots"], default_threshold=scale["threshold"]["threshold"],
                      threshold_rule=rule)


def write_weights(member_dir: Path, out: Path, spec: ScorerSpec) -> ScorerSpec:
    """A weights folder the gate loads: ``spec.members``' checkpoints from ``member_dir``, the
    spec, and each member's ONNX graph (what the default backend runs; their sha256 go into the
    spec, which is returned as written)."""
    from facegate.export import export_member_graphs

    out.mkdir(parents=True, exist_ok=True)
    for arch in spec.members:
        ckpt = torch.load(member_dir / f"{arch}.pt", map_location="cpu", weights_only=True)
        torch.save({"arch": arch, "input_size": spec.input_size, "state_dict": ckpt["state_dict"],
                    "stage": ckpt.get("stage"), "epoch": ckpt.get("epoch")}, out / f"{arch}.pt")
    spec.save(out / "spec.json")
    export_member_graphs(out, update_spec=True)
    return ScorerSpec.load(out / "spec.json")
