"""Does the gate help recognition? EDC on the LFW pairs of folds 1-5 (people the shipped
weights never trained on), natural and degraded, and an FNMR calibration checked on
held-out identities. Writes ``docs/evaluation.md`` and its plots.

    python -m train.edc --shared ../shared

Natural: the 3,000 pairs as they are. Degraded: the same pairs with the right-hand photo of
each replaced by a copy degraded with one of ``train.degradations`` at a random severity
(seeded; kind and severity recorded in ``runs/edc/degraded_pairs.csv``), then detected and
cropped again as the gate would. Comparison scores: the shared MobileFaceNet (cosine of
image+mirror embeddings). Threshold: FMR 1e-3 over every comparison between captures of
different people in the set.

Calibration check: folds 1-3 calibrate a quality threshold for a target FNMR at FMR 1e-3;
folds 4-5 (other people) measure the FNMR actually obtained.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from facegate.evaluation import (BASELINES, OBSERVER, PERFECT, RANDOM, MeasuredCaptures, Method, edc_report,
                                 held_out_check, measure_captures, plot_edc)
from facegate.images import load_rgb
from facegate.recognition import MobileFaceNetRecognizer

from .degradations import DEGRADATIONS, degrade
from .lfw import read_pairs

CALIBRATION_FOLDS, HELD_OUT_FOLDS = (1, 2, 3), (4, 5)
ENSEMBLE_FULL = Method("ensemble", "full")


def _observer(recognizer):
    from facegate.observer import ObserverScorer, default_calibration_path

    return ObserverScorer(recognizer, default_calibration_path())


def measure(shared: Path, work: Path, seed: int = 0, per_fold: int | None = None, *, views=("none", "full"),
            observer: bool = True, baselines: bool = True, components: bool = False):
    """Measure the natural and degraded sets (cached in ``work``); ``per_fold`` keeps the
    first genuine and impostor pairs of each fold only (a quick trial). ``views``,
    ``observer``, ``baselines`` and ``components`` choose the methods measured."""
    methods = dict(views=views, baselines=baselines, components=components)
    pairs = [p for p in read_pairs(shared) if p.fold <= 5]
    if per_fold:
        pairs = [p for f in range(1, 6) for g in (True, False)
                 for p in [q for q in pairs if q.fold == f and q.genuine == g][:per_fold]]
    recognizer = MobileFaceNetRecognizer(str(shared / "models" / "mobilefacenet_casia.ckpt"))
    observer = _observer(recognizer) if observer else None
    work.mkdir(parents=True, exist_ok=True)
    photos = sorted({str(p) for pair in pairs for p in (pair.left, pair.right)})
    index = {p: i for i, p in enumerate(photos)}
    natural_cache = work / "natural.npz"
    if natural_cache.exists():
        natural = MeasuredCaptures.load(natural_cache)
    else:
        t0 = time.time()
        natural = measure_captures(photos, [Path(p).parent.name for p in photos], recognizer=recognizer,
                                   observer=observer, progress=_progress(len(photos), "natural"), **methods)
        natural.seconds["wall"] = time.time() - t0
        natural.save(natural_cache)
    natural_pairs = np.array([[index[str(p.left)], index[str(p.right)]] for p in pairs])

    degraded_cache = work / "degraded.npz"
    rng = np.random.default_rng(seed)
    records, images = [], []
    kinds = sorted(DEGRADATIONS)
    for k, pair in enumerate(pairs):
        kind, severity = kinds[rng.integers(len(kinds))], float(rng.uniform())
        records.append({"pair": k, "fold": pair.fold, "left": str(pair.left), "right": str(pair.right),
                        "genuine": int(pair.genuine), "kind": kind, "severity": round(severity, 4)})
    if degraded_cache.exists():
        copies = MeasuredCaptures.load(degraded_cache)
    else:
        t0 = time.time()
        for rec in records:
            rgb = load_rgb(rec["right"])
            lm = natural.landmarks[index[rec["right"]]]
            if np.isnan(lm).any():  # no face in the clean photo: degrade around the average face
                lm = np.nanmean(natural.landmarks, 0)
            out, _ = degrade(rgb, lm, rec["kind"], rec["severity"], np.random.default_rng([seed, rec["pair"]]))
            images.append(out)
        copies = measure_captures(images, [Path(r["right"]).parent.name for r in records], recognizer=recognizer,
                                  observer=observer, progress=_progress(len(images), "degraded"), **methods)
        copies.names = [f"{r['right']} [{r['kind']} {r['severity']:.2f}]" for r in records]
        copies.seconds["wall"] = time.time() - t0
        copies.save(degraded_cache)
    with (work / "degraded_pairs.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    # degraded set: every clean left photo, then one degraded copy per pair
    lefts = sorted({index[str(p.left)] for p in pairs})
    left_pos = {i: k for k, i in enumerate(lefts)}
    degraded = natural.subset(lefts).concat(copies)
    degraded_pairs = np.array([[left_pos[index[str(p.left)]], len(lefts) + k] for k, p in enumerate(pairs)])
    genuine = np.array([p.genuine for p in pairs])
    folds = np.array([p.fold for p in pairs])
    probes = {"rows": np.arange(len(lefts)), "cols": np.arange(len(lefts), len(lefts) + len(copies.names))}
    return {"natural": (natural, natural_pairs[genuine], {}), "degraded": (degraded, degraded_pairs[genuine], probes)}, \
        {"folds": folds[genuine], "records": records}


def _progress(total: int, label: str):
    t0 = time.time()

    def report(done: int):
        if done == total or done % 512 == 0:
            print(f"{label}: {done}/{total} captures, {time.time() - t0:.0f} s", flush=True)

    return report


def calibration_check(measured: MeasuredCaptures, genuine_pairs: np.ndarray, folds: np.ndarray,
                      method: Method, target_fnmr: float, fmr: float = 1e-3) -> dict:
    """Calibrate on the genuine pairs of folds 1-3 and the captures they use, then apply the
    quality and comparison thresholds to folds 4-5 (different people)."""
    def side(fold_set):
        pairs = genuine_pairs[np.isin(folds, fold_set)]
        captures = np.unique(pairs)
        remap = {c: k for k, c in enumerate(captures)}
        sub = measured.subset(captures)
        return sub, np.vectorize(remap.get)(pairs)

    cal, cal_pairs = side(CALIBRATION_FOLDS)
    test, test_pairs = side(HELD_OUT_FOLDS)
    return held_out_check(cal, cal_pairs, test, test_pairs, quality=method, target_fnmr=target_fnmr, fmr=fmr,
                          impostors=references_and_probes)


def references_and_probes(measured: MeasuredCaptures) -> tuple[np.ndarray, np.ndarray]:
    """Clean photos (references) and degraded copies (probes) of a degraded set, told apart
    by the ``[kind severity]`` tag in the copies' names."""
    probe = np.array(["[" in name for name in measured.names])
    return np.flatnonzero(~probe), np.flatnonzero(probe)


def _table(report: dict) -> list[str]:
    random_pauc_ = next(r["pauc"] for r in report["rows"] if r["key"] == RANDOM)
    perfect_pauc = next(r["pauc"] for r in report["rows"] if r["key"] == PERFECT)
    lines = ["| method | pAUC (discard <= %g) | vs random | share of the possible gain | FNMR after 5%% | 10%% | 20%% |"
             % report["discard_limit"], "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        gain = (random_pauc_ - r["pauc"]) / max(random_pauc_ - perfect_pauc, 1e-12)
        lines.append(f"| {r['method']} | {r['pauc']:.5f} | {r['relative_to_random']:.2f} | {gain:.2f} | {r['fnmr_at_5%']:.4f} "
                     f"| {r['fnmr_at_10%']:.4f} | {r['fnmr_at_20%']:.4f} |")
    lines += ["", "`share of the possible gain`: (random - method) / (random - perfect) pAUC; 1 is the perfect "
              "ordering, 0 no better than chance."]
    return lines


def write_doc(reports: dict, calibrations: list[dict], speed: dict, path: Path, command: str) -> None:
    lines = [
        "# Does the gate help recognition? EDC on LFW",
        "",
        f"Command: `{command}` (measuring the captures took about {speed['wall_minutes']:.0f} min here; the "
        f"measurements are cached in `runs/edc/`). Machine: {speed['machine']}. "
        f"Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "Pairs: the 3,000 LFW pairs of folds 1-5, whose 2,086 people the shipped weights never saw in training; "
        "the EDC uses their 1,500 genuine pairs. Comparison scores: the shared MobileFaceNet "
        "(`../shared/models/mobilefacenet_casia.ckpt`, cosine of image+mirror embeddings, 5-point alignment "
        "with MTCNN landmarks). The comparison threshold is fixed at FMR 1e-3 before anything is discarded, "
        "over every comparison between captures of different people (natural set: all 3,811 photos against "
        "each other; degraded set: every clean reference photo against every degraded probe, the comparisons "
        "this design makes), millions in each case, so the FMR is well estimated. Genuine comparisons are then discarded lowest pairwise quality first (the lower "
        "quality of the two captures; ties together) and FNMR recomputed (Schlett et al., arXiv 2303.13294). "
        "pAUC: area under the EDC from 0 to 20% discarded; lower is better. `perfect` discards the false "
        "non-matches first; `random order` is the mean of 50 seeded random orders (its expectation is a flat "
        "line at the starting FNMR). Captures in which MTCNN finds no face get the lowest quality from every "
        "method (the gate rejects them as `no_face`) and are embedded at the average landmark position.",
        "",
        "Methods: facegate's members and ensemble with no test-time views (`none`) and all views (`full`); "
        "the FROQ-style observer (`facegate.observer`, read from the MobileFaceNet's own intermediate "
        "features, calibrated on training people); baselines: MTCNN's detection probability, face size "
        "(square root of the box area, px), variance of the Laplacian of the aligned crop.",
        "",
    ]
    for name, title in (("degraded", "Degraded LFW pairs"), ("natural", "Natural LFW pairs")):
        r = reports[name]
        lines += [f"## {title}", ""]
        if name == "degraded":
            lines += ["The right-hand photo of each pair is degraded by one of the nine capture degradations of "
                      "`train/degradations.py` (blur: defocus, motion, Gaussian; noise; JPEG; under- and "
                      "over-exposure; low resolution; occlusion) at a severity drawn uniformly from [0, 1], seeded; "
                      "`runs/edc/degraded_pairs.csv` records each. The photo is then detected and cropped again.", ""]
        lines += [f"{r['captures']} captures ({r['no_face']} with no face found), {r['genuine_comparisons']} genuine and "
                  f"{r['impostor_comparisons']:,} impostor comparisons; threshold {r['threshold']:.4f} "
                  f"(FMR {r['fmr']:.2e}); starting FNMR {r['start_fnmr']:.4f}.", ""]
        lines += _table(r) + ["", f"![EDC, {title.lower()}](edc_{name}.png)", ""]
    ens = ENSEMBLE_FULL
    deg = {row["key"]: row for row in reports["degraded"]["rows"]}
    random_row = deg[RANDOM]
    baselines = [deg[b] for b in BASELINES]
    lines += ["## Target check", "",
              f"Degraded pairs, FMR 1e-3, discard up to 20%: the ensemble with all views has pAUC "
              f"{deg[ens]['pauc']:.5f}; the best baseline {min(b['pauc'] for b in baselines):.5f}; half of random's "
              f"{random_row['pauc'] / 2:.5f}. Below every baseline: "
              f"{'yes' if deg[ens]['pauc'] < min(b['pauc'] for b in baselines) else 'no'}; below half of random: "
              f"{'yes' if deg[ens]['pauc'] < random_row['pauc'] / 2 else 'no'}. The perfect ordering itself reaches "
              f"{deg[PERFECT]['pauc']:.5f} ({deg[PERFECT]['relative_to_random']:.2f} of random).",
              "",
              "Why half of random is out of reach here: random order keeps FNMR at its start F for the whole "
              "range, while even the perfect order can only remove false non-matches one discarded comparison "
              "at a time, FNMR(x) = (F - x) / (1 - x). With F near 0.3, the perfect curve's area up to 20% "
              "is about three quarters of random's, so no quality measure can reach half. The natural pairs "
              "start near F = 0.07, where half of random is within reach of a good measure.", ""]
    lines += ["## Calibrating for a target FNMR, checked on other people", "",
              "`facegate.evaluation.calibrate_for_fnmr` (what `facegate calibrate --target-fnmr` runs): on the "
              "degraded pairs of folds 1-3 it picks the lowest quality threshold at which genuine comparisons "
              "between accepted captures fail at most the target share, at the comparison threshold fixed at "
              "FMR 1e-3 on those folds' impostors; the thresholds are then applied unchanged to folds 4-5 "
              "(different people). Tolerance: the 95% binomial interval of an FNMR estimate on that many "
              "genuine comparisons (1.96 sqrt(p(1-p)/n)).", "",
              "| quality | target FNMR | threshold | calibration FNMR / reject rate | held-out FNMR (without gate) | held-out reject rate | held-out FMR | tolerance | within |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in calibrations:
        cal, held = c["calibration"], c["held_out"]
        lines.append(f"| {c['method']} | {c['target_fnmr']:.3f} | {cal['quality_threshold']:.2f} | {cal['fnmr']:.4f} / "
                     f"{cal['reject_rate']:.3f} | {held['fnmr']:.4f} ({held['fnmr_without_gate']:.4f}) | "
                     f"{held['reject_rate']:.3f} | {held['fmr']:.1e} | +-{held['tolerance_95']:.4f} | "
                     f"{'yes' if held['within_tolerance'] else 'no'} |")
    lines += ["", "## Cost per capture", "", "| method | ms per capture (batched, this run) |", "|---|---|"]
    for method, ms in speed["ms_per_capture"].items():
        lines.append(f"| {method} | {ms:.2f} |")
    lines += ["", "Detection (MTCNN) is shared by all methods and counted once above; the facegate rows include "
              "both members at that view setting; the observer row is one MobileFaceNet pass up to its chosen layer "
              "plus the read-out (the recognizer's own full pass costs about the same).", ""]
    path.write_text("\n".join(lines))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=Path("runs/edc"))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--fmr", type=float, default=1e-3)
    parser.add_argument("--limit", type=float, default=0.2, help="discard limit of the pAUC")
    parser.add_argument("--target-fnmr", type=float, nargs="+", default=[0.02, 0.05])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--per-fold", type=int, default=None,
                        help="first N genuine and N impostor pairs of each fold only (a quick trial)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    sets, meta = measure(args.shared, args.work, per_fold=args.per_fold)
    reports = {name: edc_report(m, pairs, fmr=args.fmr, limit=args.limit, impostor_rows=probes.get("rows"),
                                impostor_cols=probes.get("cols")) for name, (m, pairs, probes) in sets.items()}
    for name, report in reports.items():
        plot_edc(report, args.docs / f"edc_{name}.png", title=f"EDC, {name} LFW pairs (folds 1-5), FMR {args.fmr:g}",
                 methods=[ENSEMBLE_FULL, Method("ensemble", "none"), OBSERVER, *BASELINES])
    measured, pairs, _ = sets["degraded"]
    calibrations = [calibration_check(measured, pairs, meta["folds"], method, target, args.fmr)
                    for method in (ENSEMBLE_FULL,) for target in args.target_fnmr]
    natural = sets["natural"][0]
    copies_seconds = MeasuredCaptures.load(args.work / "degraded.npz").seconds
    n_captures = len(natural.names) + len(meta["records"])
    ms = {m: 1000 * (natural.seconds.get(m, 0) + copies_seconds.get(m, 0)) / n_captures
          for m in ("detection", "ensemble (none)", "ensemble (full)", str(BASELINES[2]), str(OBSERVER))
          if m in natural.seconds}
    speed = {"ms_per_capture": ms, "wall_minutes": (natural.seconds.get("wall", 0) + copies_seconds.get("wall", 0)) / 60,
             "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"}
    write_doc(reports, calibrations, speed, args.docs / "evaluation.md", "python -m train.edc --shared ../shared")
    out = {name: {**{k: v for k, v in r.items() if k not in ("curves", "rows")},
                  "rows": [{k: v for k, v in row.items() if k != "key"} for row in r["rows"]]}
           for name, r in reports.items()}
    out["calibration"] = calibrations
    out["speed"] = speed
    (args.work / "report.json").write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(json.dumps({name: out[name]["rows"] for name in reports}, indent=1, default=float))
    print(json.dumps(calibrations, indent=1, default=float))


if __name__ == "__main__":
    main()
