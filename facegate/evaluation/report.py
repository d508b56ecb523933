"""EDC reports, held-out calibration checks, plots and report files, built on measured
captures (:mod:`facegate.evaluation.measure`) and the metrics
(:mod:`facegate.evaluation.metrics`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .measure import MeasuredCaptures, Method, impostor_comparisons
from .metrics import (calibrate_for_fnmr, comparison_threshold, edc, false_match_rate, false_non_match_rate,
                      gap_share, pair_scores, pairwise_quality, perfect_edc, random_pauc)

__all__ = ["CEILING", "PERFECT", "RANDOM", "edc_report", "gap_closed", "held_out_check", "plot_edc", "write_report"]

#: Reference curves of an EDC report.
PERFECT = Method("perfect (reference)")
RANDOM = Method("random order")
#: The perfect order with the comparisons of captures without a face tied first: the best a
#: gate's quality can do (see :func:`facegate.evaluation.metrics.perfect_edc`).
CEILING = Method("perfect with no-face captures tied first (ceiling)")


def _relative(pauc: float, random_mean: float) -> float | None:
    """pAUC as a multiple of random order's; None when random order's is 0 (no genuine
    comparison fails at all: nothing to take out, no ratio to give)."""
    return pauc / random_mean if random_mean > 0 else None


def edc_report(measured: MeasuredCaptures, genuine_pairs: np.ndarray, *, fmr: float | None = 1e-3,
               fnmr: float | None = None, limit: float = 0.2, random_repeats: int = 50,
               impostor_rows=None, impostor_cols=None) -> dict:
    """EDC of every measured method, random order and the perfect reference, on the same
    genuine comparisons, at one comparison threshold (FMR over the impostor comparisons,
    see :func:`impostor_comparisons` for ``impostor_rows``/``impostor_cols``)."""
    genuine_pairs = np.asarray(genuine_pairs)
    genuine = pair_scores(measured.embeddings, genuine_pairs)
    impostor_pairs, impostor = impostor_comparisons(measured, impostor_rows, impostor_cols)
    threshold = (comparison_threshold(impostor=impostor, fmr=fmr) if fnmr is None
                 else comparison_threshold(genuine=genuine, fnmr=fnmr))
    rows, curves = [], {}
    random_mean, random_std = random_pauc(genuine, threshold, limit, random_repeats)
    for method, q in measured.quality.items():
        curve = edc(genuine, pairwise_quality(q, genuine_pairs), threshold)
        curves[method] = curve
        rows.append({"key": method, "method": str(method), "pauc": curve.pauc(limit), "relative_to_random": _relative(curve.pauc(limit), random_mean),
                     "fnmr_at_5%": curve.at(0.05), "fnmr_at_10%": curve.at(0.10), "fnmr_at_20%": curve.at(0.20)})
    found = measured.found[genuine_pairs].all(1)
    for key, curve in ((PERFECT, perfect_edc(genuine, threshold)), (CEILING, perfect_edc(genuine, threshold, found))):
        curves[key] = curve
        rows.append({"key": key, "method": str(key), "pauc": curve.pauc(limit), "relative_to_random": _relative(curve.pauc(limit), random_mean),
                     "fnmr_at_5%": curve.at(0.05), "fnmr_at_10%": curve.at(0.10), "fnmr_at_20%": curve.at(0.20)})
    start = false_non_match_rate(genuine, threshold)
    rows.append({"key": RANDOM, "method": "random order (mean of %d)" % random_repeats, "pauc": random_mean, "pauc_std": random_std,
                 "relative_to_random": 1.0, "fnmr_at_5%": start, "fnmr_at_10%": start, "fnmr_at_20%": start})
    return {
        "captures": len(measured.names),
        "no_face": int((~measured.found).sum()),
        "genuine_comparisons": len(genuine),
        "impostor_comparisons": len(impostor),
        "threshold": threshold,
        "threshold_rule": f"FMR {fmr:g} over all impostor comparisons" if fnmr is None else f"starting FNMR {fnmr:g}",
        "start_fnmr": start,
        "fmr": false_match_rate(impostor, threshold),
        "discard_limit": limit,
        "rows": sorted(rows, key=lambda r: r["pauc"]),
        "curves": curves,
    }


def gap_closed(report: dict, key, reference: Method = PERFECT) -> float:
    """Share of the gap between random order and ``reference`` (:data:`PERFECT`, or
    :data:`CEILING` for the share of what a gate can reach) that ``key``'s order closes, in
    pAUC: (random - method) / (random - reference); 1 is as good as the reference."""
    rows = {r["key"]: r for r in report["rows"]}
    return gap_share(rows[RANDOM]["pauc"], rows[key]["pauc"], rows[reference]["pauc"])


def held_out_check(calibration: MeasuredCaptures, calibration_pairs: np.ndarray, held_out: MeasuredCaptures,
                   held_out_pairs: np.ndarray, *, quality: Method, target_fnmr: float, fmr: float = 1e-3,
                   impostors=None) -> dict:
    """Calibrate a quality threshold for ``target_fnmr`` on one set of people and apply it,
    with the comparison threshold, unchanged to another: the FNMR a user will actually get.

    ``impostors(measured) -> (rows, cols)`` restricts the impostor comparisons (see
    :func:`impostor_comparisons`); default: all. The tolerance is the 95% binomial interval
    of an FNMR measured on the held-out genuine comparisons that are kept."""
    def comparisons(measured):
        return impostor_comparisons(measured, *(impostors(measured) if impostors else (None, None)))

    imp_pairs, imp_scores = comparisons(calibration)
    choice = calibrate_for_fnmr(calibration.quality[quality], calibration_pairs,
                                pair_scores(calibration.embeddings, calibration_pairs), imp_pairs, imp_scores,
                                target_fnmr=target_fnmr, fmr=fmr)
    q = held_out.quality[quality]
    scores = pair_scores(held_out.embeddings, held_out_pairs)
    kept = pairwise_quality(q, held_out_pairs) >= choice.quality_threshold
    t_imp_pairs, t_imp = comparisons(held_out)
    kept_imp = pairwise_quality(q, t_imp_pairs) >= choice.quality_threshold
    achieved = false_non_match_rate(scores[kept], choice.comparison_threshold)
    n = int(kept.sum())
    tolerance = 1.96 * np.sqrt(max(target_fnmr * (1 - target_fnmr), 1e-12) / max(n, 1))
    return {
        "method": str(quality),
        "target_fnmr": target_fnmr,
        "fmr": fmr,
        "calibration": {**choice.to_dict(), "captures": len(calibration.names), "genuine": len(calibration_pairs)},
        "held_out": {
            "captures": len(held_out.names),
            "genuine": len(held_out_pairs),
            "genuine_kept": n,
            "reject_rate": float(np.mean(q < choice.quality_threshold)),
            "fnmr": achieved,
            "fnmr_without_gate": false_non_match_rate(scores, choice.comparison_threshold),
            "fmr": false_match_rate(t_imp[kept_imp], choice.comparison_threshold),
            "tolerance_95": float(tolerance),
            "within_tolerance": bool(abs(achieved - target_fnmr) <= tolerance),
        },
    }


def plot_edc(report: dict, path, title: str = "", methods=None) -> None:
    """Write the EDC plot (needs matplotlib: ``pip install facegate[eval]``)."""
    from ..extras import MissingExtraError, missing

    if "matplotlib" in missing("eval"):
        raise MissingExtraError("the EDC plot", "eval", "matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    limit = report["discard_limit"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method, curve in report["curves"].items():
        if methods is not None and method not in methods and method not in (PERFECT, CEILING):
            continue
        x = np.append(curve.discard, 1.0)
        y = np.append(curve.fnmr, curve.fnmr[-1])
        style = {PERFECT: {"color": "black", "linestyle": ":"},
                 CEILING: {"color": "dimgray", "linestyle": "-."}}.get(method, {})
        ax.step(x, y, where="post", label=str(method), **style)
    ax.axhline(report["start_fnmr"], color="grey", linestyle="--", linewidth=1, label="random order (expected)")
    ax.axvline(limit, color="grey", linewidth=0.5)
    ax.set_xlim(0, min(1.0, 2 * limit))
    ax.set_xlabel("fraction of genuine comparisons discarded (lowest pairwise quality first)")
    ax.set_ylabel("FNMR at the fixed comparison threshold")
    ax.set_ylim(0, max(0.01, 1.15 * max(float(c.fnmr[c.discard <= 2 * limit].max()) for c in report["curves"].values())))
    ax.set_title(f"{title}\n(threshold: {report['threshold_rule']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report: dict, path: str | Path) -> None:
    """The report as JSON: rows and curves keyed by display name."""
    limit = report["discard_limit"]
    data = {k: v for k, v in report.items() if k not in ("curves", "rows")}
    data["rows"] = [{k: v for k, v in row.items() if k != "key"} for row in report["rows"]]
    data["curves"] = {str(m): c.to_dict(limit) for m, c in report["curves"].items()}
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
