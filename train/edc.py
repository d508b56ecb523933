"""Does the gate help recognition? EDC on four held-out sets: the LFW pairs of folds 1-5 and
the CelebA evaluation identities, each natural and degraded (people no weights trained on);
the targets of issue 37 with people-level bootstrap intervals, the reliability of the score scale, crops aligned as recognition
pipelines hold them, sensitivity and rejection checks, and an FNMR calibration checked on
held-out identities. Writes ``docs/evaluation.md`` and its plots.

    python -m train.edc --shared ../shared [--weights DIR]

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from facegate.evaluation import (BASELINES, CEILING, OBSERVER, MeasuredCaptures, Method, edc_report,
                                 gap_closed, held_out_check, measure_captures, plot_edc)
from facegate.evaluation.measure import CENTRED_LANDMARKS, impostor_comparisons
from facegate.evaluation.metrics import comparison_threshold, pair_scores, paired_bootstrap, pairwise_quality
from facegate.capture import CaptureSettings
from facegate.images import load_rgb
from facegate.recognition import MobileFaceNetRecognizer
from facegate.scale import observed_success, reliability_table

from . import celeba
from .evaluate import sensitivity
from .studies.greyscale import measure as grey_measure
from .degradations import DEGRADATIONS, degrade
from .lfw import read_pairs

CALIBRATION_FOLDS, HELD_OUT_FOLDS = (1, 2, 3), (4, 5)
ENSEMBLE_FULL = Method("ensemble", "full")


def _recognizer(shared: Path) -> MobileFaceNetRecognizer:
    return MobileFaceNetRecognizer(str(shared / "models" / "mobilefacenet_casia.ckpt"))


def _observer(recognizer):
    from facegate.observer import ObserverScorer, default_calibration_path

    return ObserverScorer(recognizer, default_calibration_path())


def measure(shared: Path, work: Path, seed: int = 0, per_fold: int | None = None, *, views=("none", "full"),
            observer: bool = True, baselines: bool = True, components: bool = False, weights: Path | None = None,
            recognizer=None, look_again: bool = True):
    """Measure the natural and degraded sets (cached in ``work``); ``per_fold`` keeps the
    first genuine and impostor pairs of each fold only (a quick trial). ``views``,
    ``observer``, ``baselines`` and ``components`` choose the methods measured; ``look_again``:
    detection as the gate does it by default."""
    methods = dict(views=views, baselines=baselines, components=components, weights=weights,
                   capture=CaptureSettings(look_again=look_again))
    pairs = [p for p in read_pairs(shared) if p.fold <= 5]
    if per_fold:
        pairs = [p for f in range(1, 6) for g in (True, False)
                 for p in [q for q in pairs if q.fold == f and q.genuine == g][:per_fold]]
    work.mkdir(parents=True, exist_ok=True)
    natural_cache, degraded_cache = work / "natural.npz", work / "degraded.npz"
    if not (natural_cache.exists() and degraded_cache.exists()):  # the recognizer only to measure
        recognizer = recognizer or _recognizer(shared)
        observer = _observer(recognizer) if observer else None
    photos = sorted({str(p) for pair in pairs for p in (pair.left, pair.right)})
    index = {p: i for i, p in enumerate(photos)}
    if natural_cache.exists():
        natural = MeasuredCaptures.load(natural_cache)
    else:
        t0 = time.time()
        natural = measure_captures(photos, [Path(p).parent.name for p in photos], recognizer=recognizer,
                                   observer=observer, progress=_progress(len(photos), "natural"), **methods)
        natural.seconds["wall"] = time.time() - t0
        natural.save(natural_cache)
    natural_pairs = np.array([[index[str(p.left)], index[str(p.right)]] for p in pairs])

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


@dataclass
class Comparisons:
    """One LFW set of ``measure`` as its EDC sees it: the genuine comparisons' scores and the
    recognizer's threshold fixed at the FMR over the set's impostor comparisons."""

    captures: MeasuredCaptures
    pairs: np.ndarray
    genuine: np.ndarray
    threshold: float

    def pair_quality(self, method: Method) -> np.ndarray:
        return pairwise_quality(self.captures.quality[method], self.pairs)


def lfw_comparisons(shared: Path, work: Path, fmr: float = 1e-3, recognizer=None) -> tuple[dict[str, Comparisons], dict]:
    """The natural and degraded LFW sets from ``measure``'s cache in ``work`` (as train.edc fixes
    their thresholds), and its record of the pairs (folds, degradation of each copy)."""
    sets, meta = measure(shared, work, observer=False, recognizer=recognizer)
    return comparisons(sets, fmr), meta


def comparisons(sets: dict, fmr: float = 1e-3) -> dict[str, Comparisons]:
    """Sets as ``measure`` and :func:`people_sets` give them (captures, genuine pairs, impostor
    probes), each with its genuine scores and the threshold fixed on its impostors."""
    out = {}
    for name, (captures, pairs, probes) in sets.items():
        _, impostor = impostor_comparisons(captures, probes.get("rows"), probes.get("cols"))
        out[name] = Comparisons(captures, pairs, pair_scores(captures.embeddings, pairs),
                                comparison_threshold(impostor=impostor, fmr=fmr))
    return out


def celeba_sets(shared: Path, work: Path, recognizer, seed: int = 0, observer=None, weights: Path | None = None,
                identities: int | None = None, **methods) -> dict:
    """The CelebA evaluation identities (number divisible by 5), natural and degraded (cached
    in ``work``); ``identities``: the first N only (a quick trial)."""
    people = list(celeba.identities(shared, evaluation=True).items())[:identities]
    return people_sets(dict(people), work, "celeba", recognizer, seed, observer, weights, **methods)


def validation_sets(shared: Path, labels_csv: Path, work: Path, recognizer, seed: int = 0, observer=None,
                    weights: Path | None = None, **methods) -> dict:
    """The validation people of the training split (``train.data.split`` of the label CSV:
    LFW training people and CelebA training identities that no weights trained on), natural
    and degraded, as :func:`people_sets`. For choosing between trainings without looking at
    the evaluation sets."""
    from .data import read_csv, split

    samples = read_csv(labels_csv)
    people: dict[str, set] = {}
    for i in split(samples, 0.2, seed)[1]:
        s = samples[i]
        if s.group:  # the source photo, as the labelling command named it (relative to its working folder)
            people.setdefault(s.identity, set()).add(s.group)
    people = {k: sorted(v) for k, v in sorted(people.items()) if len(v) >= 2}
    sets = people_sets(people, work, "validation", recognizer, seed, observer, weights, **methods)
    # each source alone too: LFW's few photos a person and CelebA's many weigh very differently
    for kind in ("natural", "degraded"):
        measured, pairs, probes = sets[f"validation {kind}"]
        source = np.array([who.split("/")[0] for who in measured.identities])
        for name in sorted(set(source)):
            mine = lambda idx: np.asarray(idx)[source[np.asarray(idx)] == name]  # noqa: E731
            sets[f"validation {name} {kind}"] = (measured, pairs[source[pairs[:, 0]] == name],
                                                 {"rows": mine(probes["rows"]), "cols": mine(probes["cols"])})
    return sets


def people_sets(people: dict[str, list], work: Path, name: str, recognizer, seed: int = 0, observer=None,
                weights: Path | None = None, **methods) -> dict:
    """A natural and a degraded set of these people's photos (cached in ``work``). Natural:
    every photo, every same-identity pair genuine. Degraded: each photo also as a seeded
    degraded copy; genuine comparisons are a clean photo against the copy of another photo of
    the same person, impostors every clean photo against every copy of other people's.
    ``methods`` go to :func:`measure_captures`."""
    paths = [str(p) for photos in people.values() for p in photos]
    ident = np.array([who for who, photos in people.items() for _ in photos])
    work.mkdir(parents=True, exist_ok=True)
    cache = work / f"{name}_natural.npz"
    if cache.exists():
        natural = MeasuredCaptures.load(cache)
    else:
        natural = measure_captures(paths, ident, recognizer=recognizer, observer=observer, weights=weights,
                                   progress=_progress(len(paths), name), **methods)
        natural.save(cache)
    n = len(paths)
    same = ident[:, None] == ident[None, :]
    genuine = np.argwhere(np.triu(same, 1))
    cache = work / f"{name}_degraded.npz"
    rng = np.random.default_rng(seed)
    kinds = sorted(DEGRADATIONS)
    records = [(kinds[rng.integers(len(kinds))], float(rng.uniform())) for _ in paths]
    if cache.exists():
        copies = MeasuredCaptures.load(cache)
    else:
        images = []
        for k, (path, (kind, severity)) in enumerate(zip(paths, records)):
            rgb = load_rgb(path)
            lm = natural.landmarks[k]
            if np.isnan(lm).any():  # no face in the clean photo: degrade around a centred face
                lm = CENTRED_LANDMARKS * np.array(rgb.shape[1::-1])
            out, _ = degrade(rgb, lm, kind, severity, np.random.default_rng([seed, k]))
            images.append(out)
        copies = measure_captures(images, ident, recognizer=recognizer, observer=observer, weights=weights,
                                  progress=_progress(len(images), f"{name} degraded"), **methods)
        copies.names = [f"{p} [{kind} {severity:.2f}]" for p, (kind, severity) in zip(paths, records)]
        copies.save(cache)
    both = natural.concat(copies)
    cross = np.argwhere(same & ~np.eye(n, dtype=bool))  # clean i against the copy of j, same person, i != j
    degraded_pairs = np.stack([cross[:, 0], n + cross[:, 1]], 1)
    # the comparison threshold comes from impostors between captures with a face: a photo
    # with no face is embedded at the average landmarks, and two such embeddings of
    # background look alike (cosine above 0.9), which would set the FMR 1e-3 threshold by
    # themselves when both sides have some (here 10 clean photos and 104 copies)
    clean, copy = np.flatnonzero(natural.found), n + np.flatnonzero(copies.found)
    return {f"{name} natural": (natural, genuine, {"rows": clean, "cols": clean}),
            f"{name} degraded": (both, degraded_pairs, {"rows": clean, "cols": copy})}


def _progress(total: int, label: str):
    t0 = time.time()

    def report(done: int):
        if done == total or done % 512 == 0:
            print(f"{label}: {done}/{total} captures, {time.time() - t0:.0f} s", flush=True)

    return report


def reliability(measured: MeasuredCaptures, threshold: float, method: Method) -> list[dict]:
    """The reliability table of ``method``'s scores on held-out captures: predicted chance
    against the observed share of genuine comparisons with good references that succeed."""
    # train.edc names a degraded copy "photo [kind severity]"
    idx, share, count = observed_success(measured, threshold, [name.split(" [")[0] for name in measured.names])
    probes = np.array([" [" in measured.names[i] for i in idx])
    if probes.any():  # a degraded set: the copies are the captures in question
        idx, share, count = idx[probes], share[probes], count[probes]
    return reliability_table(measured.quality[method][idx], share, count)


def arcface_agreement(shared: Path, weights: Path | None, photos: int = 300, seed: int = 0) -> dict:
    """Scores of faces cropped as recognition pipelines hold them (112 x 112, ArcFace
    five-point template, from the gate's own landmarks) through ``Gate.assess_crops``,
    against the gate's scores of the same faces from the full photo, on held-out photos
    (LFW folds 1-5 people and CelebA evaluation identities, half each)."""
    from facegate.alignment import ARCFACE_112, warp_to_template
    from facegate.gate import Gate

    from .lfw import evaluation_people

    rng = np.random.default_rng(seed)
    lfw_dir = shared / "data" / "lfw-deepfunneled"
    pool = [sorted((lfw_dir / p).glob("*.jpg"))[0] for p in sorted(evaluation_people(shared))]
    chosen = list(rng.choice(pool, photos // 2, replace=False))
    celeba_photos = [p for ps in celeba.identities(shared, evaluation=True).values() for p in ps]
    chosen += list(rng.choice(celeba_photos, photos - photos // 2, replace=False))
    gate = Gate(weights=weights)
    full, crops = [], []
    for path in chosen:
        result = gate.assess(path)
        if result.score is None:
            continue
        crops.append(warp_to_template(load_rgb(path), result.face.landmarks, ARCFACE_112, (112, 112)))
        full.append(result.score)
    full = np.array(full)
    aligned = gate.score_crops(crops, color_order="rgb")
    diff = np.abs(aligned - full)
    t = gate.policy.min_score
    return {"photos": len(full), "mean_abs_difference": float(diff.mean()), "p95_abs_difference": float(np.quantile(diff, 0.95)),
            "max_abs_difference": float(diff.max()), "pearson": float(np.corrcoef(aligned, full)[0, 1]),
            "same_side_of_threshold": float(np.mean((aligned >= t) == (full >= t))), "threshold": float(t),
            "arcface_eye_distance_px": float(np.linalg.norm(ARCFACE_112[1] - ARCFACE_112[0])),
            "model_eye_distance_px": float(np.linalg.norm(np.subtract(*gate.spec.template[1::-1])))}


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


#: Issue 37's targets (0.3 weights; issue 13's were 0.50 / 0.85 / 0.50 / 0.85): share of the gap
#: the ensemble closes, per set.
TARGETS = {"LFW natural": 0.50, "LFW degraded": 0.85, "CelebA natural": 0.58, "CelebA degraded": 0.86}


def _interval(report: dict, method: str) -> str:
    """`` [lo, hi]``: the people-level 95% bootstrap interval of a method's share of the gap."""
    found = report.get("intervals", {}).get(method)
    return f" [{found[0]:.2f}, {found[1]:.2f}]" if found else ""


def _table(report: dict) -> list[str]:
    lines = ["| method | pAUC (discard <= %g) | vs random | share of the gap closed | of the ceiling's gap "
             "| FNMR after 5%% | 10%% | 20%% |" % report["discard_limit"], "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['method']} | {r['pauc']:.5f} | {r['relative_to_random']:.2f} | {gap_closed(report, r['key']):.2f}"
                     f"{_interval(report, r['method'])} "
                     f"| {gap_closed(report, r['key'], CEILING):.2f} "
                     f"| {r['fnmr_at_5%']:.4f} | {r['fnmr_at_10%']:.4f} | {r['fnmr_at_20%']:.4f} |")
    return lines


def _reliability_lines(table: list[dict]) -> list[str]:
    lines = ["| score bin | captures | comparisons | mean score (predicted %) | observed success % |", "|---|---|---|---|---|"]
    for row in table:
        if row["captures"]:
            lines.append(f"| {row['bin']} | {row['captures']} | {row['comparisons']} | {row['predicted']:.1f} | "
                         f"{row['observed']:.1f} |")
        else:
            lines.append(f"| {row['bin']} | 0 | 0 | - | - |")
    return lines


SET_NOTES = {
    "LFW natural": "The 3,000 LFW pairs of folds 1-5 as they are (their 1,500 genuine pairs; impostors: all photos "
                   "against each other).",
    "LFW degraded": "The same pairs with the right-hand photo replaced by a copy degraded by one of the nine capture "
                    "degradations of `train/degradations.py` at a seeded random severity (`runs/edc/degraded_pairs.csv`), "
                    "detected and cropped again; impostors: every clean reference against every degraded probe.",
    "CelebA natural": "Every photo of the 43 CelebA evaluation identities (number divisible by 5), every same-identity "
                      "pair genuine; each photo goes through the whole gate, detection included.",
    "CelebA degraded": "Each of those photos also as a seeded degraded copy; genuine: a clean photo against the copy of "
                       "another photo of the same person; impostors: clean photos against other people's copies.",
}


def write_doc(reports: dict, calibrations: list[dict], speed: dict, extra: dict, path: Path, command: str) -> None:
    """docs/evaluation.md: how it was measured, the targets, each set's EDC table, the scale's
    reliability, ArcFace crops, calibration on other people, and the cost; one section a function."""
    spec = extra["spec"]
    lines = (_doc_protocol(spec, speed, extra["work"], command) + _doc_targets(reports, extra["sensitivity"])
             + _doc_sets(reports) + _doc_reliability(spec, extra["reliability"]) + _doc_refit(extra["refit"])
             + _doc_greyscale(extra["greyscale"])
             + _doc_arcface(extra["arcface"])
             + _doc_calibration(calibrations) + _doc_cost(speed))
    path.write_text("\n".join(lines))


def _doc_protocol(spec, speed: dict, work, command: str) -> list[str]:
    """The command, the machine, and how the EDC is measured."""
    return [
        "# Does the gate help recognition? EDC on four held-out sets",
        "",
        f"Command: `{command}` (detectors and models took about {speed['measuring_minutes']:.0f} min on the sets here, "
        f"this run {speed['wall_minutes']:.0f} min; measurements cached in `{work}/`). Weights: `{spec.name}` (scale `{spec.score_scale}`). Machine: {speed['machine']}. "
        f"Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "Every set holds people no facegate weights trained on. Comparison scores: the shared MobileFaceNet "
        "(`../shared/models/mobilefacenet_casia.ckpt`, cosine of image+mirror embeddings, 5-point alignment on the "
        "gate's landmarks). The comparison threshold is fixed at FMR 1e-3 over the set's impostor comparisons "
        "before anything is discarded; genuine comparisons are then discarded lowest pairwise quality first (the "
        "lower quality of the two captures; ties together) and FNMR recomputed (Schlett et al., arXiv 2303.13294). "
        "pAUC: area under the EDC from 0 to 20% discarded, lower is better. `perfect` discards the false "
        "non-matches first; `random order` is the mean of 50 seeded orders. `share of the gap closed`: "
        "(random - method) / (random - perfect) pAUC. Detection is the gate's, looking again on a brightened, "
        "darkened, turned or padded copy where the first look finds no face (as `facegate score` does by "
        "default and as the training labels were made). Captures in which no face is found get the lowest "
        "quality from every method (the gate rejects them as `no_face`), all tied: so no method can discard "
        "them one by one, and the FNMR stays at its start until all their comparisons are gone. `ceiling` is "
        "the best order any quality of such a gate can give (those comparisons first as one tie, then the "
        "rest false non-matches first); `of the ceiling's gap`: (random - method) / (random - ceiling). "
        "Where detection fails on many degraded copies, the ceiling lies well short of perfect.",
        "",
        "Methods: each member and the ensemble with no test-time views (`none`) and the spec's views (`full`: "
        f"{', '.join(spec.views)}); the FROQ-style observer (`facegate.observer`, read from the MobileFaceNet's own "
        "features); baselines: MTCNN's detection probability, face size, variance of the Laplacian of the crop.",
        "",
        "These sets judge the weights; they chose nothing. Training choices were made on the validation people of "
        "the training split (`--gaps-only --validation`; see docs/results.md).",
        "",
        "## Targets (issue 37)",
        "",
        "Beside each share of the gap: its 95% interval from 200 people-level bootstrap draws (the people of the "
        "genuine comparisons drawn with replacement, each with all their comparisons; "
        "`facegate.evaluation.metrics.paired_bootstrap`).",
        "",
        "| set | ensemble (full): share of the gap | target | observer | ensemble >= observer | met "
        "| ceiling: share of the gap | ensemble: of the ceiling's gap |",
        "|---|---|---|---|---|---|---|---|",
    ]


def _doc_targets(reports: dict, sens: dict) -> list[str]:
    """Issue 37's targets, the ceiling, and the held-out photos' sensitivity."""
    lines = []
    for name, target in TARGETS.items():
        r = reports[name]
        ens, obs = gap_closed(r, ENSEMBLE_FULL), gap_closed(r, OBSERVER)
        lines.append(f"| {name} | {ens:.3f}{_interval(r, str(ENSEMBLE_FULL))} | >= {target:.2f} | "
                     f"{obs:.3f}{_interval(r, str(OBSERVER))} | {'yes' if ens >= obs else 'no'} | "
                     f"{'yes' if ens >= target and ens >= obs else 'no'} | {gap_closed(r, CEILING):.3f} | "
                     f"{gap_closed(r, ENSEMBLE_FULL, CEILING):.3f} |")
    lines += ["", "`ceiling`: the best share of the gap any quality can close when the captures without a face "
              "come first as one tie (see above); a target above it cannot be met by any score of this gate "
              "under this protocol."]
    lines += ["", f"Held-out photos ({sens['photos']} photos of LFW folds 1-5 people, through the whole gate; "
              "`python -m train.evaluate sensitivity --shared ../shared --photos 100`):", "",
              "| change | target | measured | rejected by the gate |", "|---|---|---|---|"]
    for name, d in sens["degradations"].items():
        if name.startswith(("turned", "JPEG")):
            lines.append(f"| {name} | >= 95% rejected | {d['share_rejected']:.0%} rejected | {d['rejected_after']} |")
        else:
            lines.append(f"| {name} | score drops for >= 95% | {d['share_dropped']:.0%} drop | {d['rejected_after']} |")
    return lines


def _doc_sets(reports: dict) -> list[str]:
    """Each set: its counts, its EDC table and plot."""
    lines = []
    for name in TARGETS:
        r = reports[name]
        lines += ["", f"## {name}", "", SET_NOTES[name], "",
                  f"{r['captures']} captures ({r['no_face']} with no face found), {r['genuine_comparisons']} genuine and "
                  f"{r['impostor_comparisons']:,} impostor comparisons; threshold {r['threshold']:.4f} "
                  f"(FMR {r['fmr']:.2e}); starting FNMR {r['start_fnmr']:.4f}.", ""]
        lines += _table(r) + ["", f"![EDC, {name}](edc_{name.lower().replace(' ', '_')}.png)"]
    return lines


def _doc_reliability(spec, reliability: dict) -> list[str]:
    """Predicted against observed match rates on held-out people."""
    lines: list[str] = []
    lines += ["", "## Reliability of the scale", "",
              f"Scale `{spec.score_scale}`" + (": a score of s means about s% chance that a genuine comparison of the "
              "capture with a good reference photo succeeds at FMR 1e-3 with the label recognizer (the MobileFaceNet). "
              if spec.score_calibration else " (not calibrated as a chance). ") +
              "Observed here on held-out people: for each capture with a face, the share of its genuine comparisons "
              "with good references of the same set (clean photos that match at least half of their identity's "
              "other photos; never the capture's own original) that reach the set's FMR 1e-3 threshold. Rows are "
              "weighted by comparisons. Natural sets: every capture; degraded sets: the degraded copies.", ""]
    for name, table in reliability.items():
        lines += [f"### {name}", ""] + _reliability_lines(table) + [""]
    return lines


#: Sets and operating points the refit of the scale is checked on.
REFIT_CHECKS = (("CelebA natural", 1e-3), ("CelebA natural", 1e-4), ("LFW natural", 1e-4))


def refit_checks(sets: dict, reports: dict) -> list[dict]:
    """``facegate calibrate --refit-scale``'s fit (:func:`facegate.calibration.scale_refit`,
    2 people-disjoint folds) on held-out sets: the calibration error of the weights' own
    scale and of the refit one, each capture judged by a map fitted on the other fold's people."""
    from facegate.calibration import scale_refit

    out = []
    for name, fmr in REFIT_CHECKS:
        measured = sets[name][0]
        _, impostor = impostor_comparisons(measured)
        threshold = comparison_threshold(impostor=impostor, fmr=fmr)
        r = scale_refit(measured, measured.quality[ENSEMBLE_FULL], threshold)
        out.append({"set": name, "fmr": fmr, "threshold": threshold, "people": r.people, "captures": r.captures,
                    "comparisons": r.comparisons, "error_before": r.error_before, "error_after": r.error_after,
                    "reliability_after": r.reliability_after})
    return out


def _doc_greyscale(grey: dict) -> list[str]:
    lines = ["", "## Grey and near-infrared-like cameras", "",
             "`python -m train.studies.greyscale` (as part of this command): the first photo of each of 120 LFW "
             "folds 1-5 people with more photos and of the CelebA evaluation identities, as it is, as a grey copy and "
             "as an IR-like copy, compared by the label recognizer with the person's other photos the gate accepts "
             "(\"matches\": at least half above its FMR 1e-3 threshold). Agreement: the gate (verification profile) "
             "accepts the copy exactly when it matches. Target (issue 37): grey copies agree >= 90%.", "",
             "| copy | captures | matches | accepted | decision agrees | matched but rejected | median score |",
             "|---|---|---|---|---|---|---|"]
    for kind, r in grey.items():
        lines.append(f"| {kind} | {r['captures']} | {r['matched']:.1%} | {r['accepted']:.1%} | "
                     f"{r['decision_agrees']:.1%} | {r['matched_but_rejected']} | {r['median_score']} |")
    return lines + [""]


def _doc_refit(checks: list[dict]) -> list[str]:
    lines = ["", "## The scale refit for your recognizer (`facegate calibrate --refit-scale`)", "",
             "The refit fits the shipped scale's isotonic map again, from the weights' score to the observed share of "
             "genuine comparisons with good references that succeed at the user's recognizer's threshold, on the "
             "user's people, and saves it in the policy. Checked here with the one recognizer this machine has at "
             "another operating point too (FMR 1e-4 makes s% mean something else than the scale promises): the "
             "people split into two disjoint folds, each fold's captures judged by a map fitted on the other's; "
             "expected calibration error (chance, 10 score bins, weighted by comparisons).", "",
             "| set | FMR | people | captures | comparisons | error, weights' scale | error, refit (held-out people) |",
             "|---|---|---|---|---|---|---|"]
    for c in checks:
        lines.append(f"| {c['set']} | {c['fmr']:g} | {c['people']} | {c['captures']} | {c['comparisons']} | "
                     f"{c['error_before']:.3f} | {c['error_after']:.3f} |")
    return lines


def _doc_arcface(a: dict) -> list[str]:
    """Scores of ArcFace crops against the gate's own."""
    lines = []
    lines += ["## Crops a recognition pipeline already holds", "",
              f"{a['photos']} held-out photos (LFW folds 1-5 and CelebA evaluation identities, half each): each face "
              "cropped to 112 x 112 on the ArcFace five-point template from the gate's landmarks and scored by "
              "`Gate.assess_crops` (`facegate score --aligned`), against the gate's score of the same face from the "
              f"full photo. The models see {a['model_eye_distance_px']:.1f} px between the eyes; the ArcFace crop holds "
              f"{a['arcface_eye_distance_px']:.1f}.", "",
              "| mean absolute difference | 95th percentile | largest | Pearson r | same side of the default threshold |",
              "|---|---|---|---|---|",
              f"| {a['mean_abs_difference']:.2f} | {a['p95_abs_difference']:.2f} | {a['max_abs_difference']:.2f} | "
              f"{a['pearson']:.4f} | {a['same_side_of_threshold']:.1%} (threshold {a['threshold']:g}) |", ""]
    return lines


def _doc_calibration(calibrations: list[dict]) -> list[str]:
    """calibrate_for_fnmr on some people, checked on others."""
    lines = []
    lines += ["## Calibrating for a target FNMR, checked on other people", "",
              "`facegate.evaluation.calibrate_for_fnmr` (what `facegate calibrate --target-fnmr` runs): on the "
              "degraded LFW pairs of folds 1-3 it picks the lowest quality threshold at which genuine comparisons "
              "between accepted captures fail at most the target share, at the comparison threshold fixed at FMR 1e-3 "
              "on those folds' impostors; the thresholds are applied unchanged to folds 4-5 (different people). "
              "Tolerance: the 95% binomial interval of an FNMR estimate on that many genuine comparisons.", "",
              "| quality | target FNMR | threshold | calibration FNMR / reject rate | held-out FNMR (without gate) | held-out reject rate | held-out FMR | tolerance | within |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in calibrations:
        cal, held = c["calibration"], c["held_out"]
        lines.append(f"| {c['method']} | {c['target_fnmr']:.3f} | {cal['quality_threshold']:.2f} | {cal['fnmr']:.4f} / "
                     f"{cal['reject_rate']:.3f} | {held['fnmr']:.4f} ({held['fnmr_without_gate']:.4f}) | "
                     f"{held['reject_rate']:.3f} | {held['fmr']:.1e} | +-{held['tolerance_95']:.4f} | "
                     f"{'yes' if held['within_tolerance'] else 'no'} |")
    return lines


def _doc_cost(speed: dict) -> list[str]:
    """Milliseconds per capture by method."""
    lines = []
    lines += ["", "## Cost per capture", "", "| method | ms per capture (batched, this run) |", "|---|---|"]
    for method, ms in speed["ms_per_capture"].items():
        lines.append(f"| {method} | {ms:.2f} |")
    lines += ["", "Detection (MTCNN) is shared by all methods and counted once above; the facegate rows include "
              "both members at that view setting; the observer row is one MobileFaceNet pass up to its chosen layer "
              "plus the read-out. Scoring speed per face across weights: `python -m benchmarks.bench_speed` "
              "(docs/performance.md).", ""]
    return lines


def _reports(sets: dict, fmr: float, limit: float) -> dict:
    """Each set's EDC report: ``sets`` maps a name to (measured captures, genuine pairs, impostor probes)."""
    return {name: edc_report(m, pairs, fmr=fmr, limit=limit, impostor_rows=probes.get("rows"),
                             impostor_cols=probes.get("cols")) for name, (m, pairs, probes) in sets.items()}


def _print_gaps(reports: dict) -> None:
    print(json.dumps({name: {row["method"]: round(gap_closed(rep, row["key"]), 3) for row in rep["rows"]}
                      for name, rep in reports.items()}, indent=1))


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--weights", type=Path, default=None, help="weights folder (default: the shipped weights)")
    parser.add_argument("--work", type=Path, default=None, help="measurement cache (default: runs/edc/<weights name>)")
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--fmr", type=float, default=1e-3)
    parser.add_argument("--limit", type=float, default=0.2, help="discard limit of the pAUC")
    parser.add_argument("--target-fnmr", type=float, nargs="+", default=[0.02, 0.05])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--gaps-only", action="store_true",
                        help="while developing weights: the four sets' share of the gap closed by each member and the "
                             "ensemble (no test-time views) and the observer, printed; no baselines, no doc")
    parser.add_argument("--validation", type=Path, default=None, metavar="LABELS_CSV",
                        help="with --gaps-only: measure the validation people of this label CSV's training split "
                             "instead of the evaluation sets (for choosing between trainings)")
    parser.add_argument("--no-look-again", action="store_true",
                        help="count a capture as having no face when the first detection finds none (the protocol of "
                             "the measurements before 2026-11-30; the gate looks again by default)")
    parser.add_argument("--per-fold", type=int, default=None,
                        help="a quick trial: first N genuine and N impostor pairs of each fold, 8 CelebA identities, "
                             "fewer photos for the other checks")
    args = parser.parse_args(argv)
    if args.validation and not args.gaps_only:
        parser.error("--validation goes with --gaps-only")
    return args


def main(argv=None):
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from facegate.scorer import default_weights_dir
    from facegate.spec import ScorerSpec

    spec = ScorerSpec.load((args.weights or default_weights_dir()) / "spec.json")
    # the cache is the weights' own: two trainings under one spec name must not share measurements
    digest = "".join(spec.member_sha256.get(m, "")[:6] for m in spec.members)
    work = args.work or Path("runs/edc") / (f"{spec.name}-{digest}" if digest else spec.name)
    t0 = time.time()
    methods = dict(views=("none",), baselines=False) if args.gaps_only else dict(views=("none", "full"))
    if args.gaps_only:
        work = work.with_name(work.name + "-gaps")
    if args.no_look_again:
        methods["capture"] = CaptureSettings(look_again=False)
        work = work.with_name(work.name + "-no-look-again")
    recognizer = _recognizer(args.shared)  # loaded once, for every set
    if args.validation:
        sets = validation_sets(args.shared, args.validation, work, recognizer, observer=_observer(recognizer),
                               weights=args.weights, **methods)
        _print_gaps(_reports(sets, args.fmr, args.limit))
        return
    lfw_sets, meta = measure(args.shared, work, per_fold=args.per_fold, weights=args.weights, recognizer=recognizer,
                             **methods)
    sets = {f"LFW {name}": value for name, value in lfw_sets.items()}
    quick = args.per_fold is not None
    for name, value in celeba_sets(args.shared, work, recognizer, observer=_observer(recognizer), weights=args.weights,
                                   identities=8 if quick else None, **methods).items():
        sets[name.replace("celeba", "CelebA")] = value
    reports = _reports(sets, args.fmr, args.limit)
    if args.gaps_only:
        _print_gaps(reports)
        return
    _write_evaluation(args, spec, work, sets, meta, reports, t0)


def _write_evaluation(args, spec, work: Path, sets: dict, meta: dict, reports: dict, t0: float) -> None:
    """The full evaluation: plots, calibration on other people, reliability, ArcFace crops,
    sensitivity and cost, written to docs/evaluation.md and ``work``/report.json."""
    quick = args.per_fold is not None
    args.docs.mkdir(parents=True, exist_ok=True)  # a new --docs folder, not a crash after the measuring
    for name, report in reports.items():
        plot_edc(report, args.docs / f"edc_{name.lower().replace(' ', '_')}.png", title=f"EDC, {name}, FMR {args.fmr:g}",
                 methods=[ENSEMBLE_FULL, Method("ensemble", "none"), OBSERVER, *BASELINES])
    for name, report in reports.items():  # people-level bootstrap intervals of every method's share of the gap
        m, pairs, _ = sets[name]
        methods = [r for r in report["rows"] if r["key"] in m.quality]
        boot = paired_bootstrap(pair_scores(m.embeddings, pairs), [pairwise_quality(m.quality[r["key"]], pairs)
                                                                    for r in methods], report["threshold"],
                                limit=args.limit, resamples=200, clusters=m.identities[pairs[:, 0]])
        report["intervals"] = {r["method"]: tuple(ci) for r, ci in zip(methods, boot["share_of_gap_95"])}
    measured, pairs, _ = sets["LFW degraded"]
    calibrations = [calibration_check(measured, pairs, meta["folds"], ENSEMBLE_FULL, target, args.fmr)
                    for target in args.target_fnmr]
    extra = {"spec": spec, "work": work,
             "reliability": {name: reliability(sets[name][0], reports[name]["threshold"], ENSEMBLE_FULL)
                             for name in TARGETS},
             "refit": refit_checks(sets, reports),
             "greyscale": grey_measure(args.shared, args.weights, lfw_people=20 if quick else 120),
             "arcface": arcface_agreement(args.shared, args.weights, photos=20 if quick else 300),
             "sensitivity": sensitivity(args.shared, 5 if quick else 100, weights=args.weights)}
    speed = _speed(sets, meta, work, t0)
    command = ("python -m train.edc --shared ../shared" + (f" --weights {args.weights}" if args.weights else "")
               + (" --no-look-again" if args.no_look_again else ""))
    write_doc(reports, calibrations, speed, extra, args.docs / "evaluation.md", command)
    out = {name: {**{k: v for k, v in r.items() if k not in ("curves", "rows")},
                  "rows": [{**{k: v for k, v in row.items() if k != "key"}, "gap_closed": gap_closed(r, row["key"]),
                            "of_ceiling_gap": gap_closed(r, row["key"], CEILING)}
                           for row in r["rows"]]}
           for name, r in reports.items()}
    out.update(calibration=calibrations, speed=speed, reliability=extra["reliability"], refit=extra["refit"],
               greyscale=extra["greyscale"],
               arcface=extra["arcface"],
               sensitivity=extra["sensitivity"])
    (work / "report.json").write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(json.dumps({name: {r["method"]: round(r["gap_closed"], 3) for r in out[name]["rows"]} for name in reports},
                     indent=1))


def _speed(sets: dict, meta: dict, work: Path, t0: float) -> dict:
    """Milliseconds per capture by method, every capture measured once (LFW photos, LFW copies,
    CelebA photos and copies), and the sets' detector and model time recorded with their cache
    (a run that finds them cached is short)."""
    seconds = [sets["LFW natural"][0].seconds, MeasuredCaptures.load(work / "degraded.npz").seconds,
               sets["CelebA degraded"][0].seconds]
    n_captures = len(sets["LFW natural"][0].names) + len(meta["records"]) + len(sets["CelebA degraded"][0].names)
    ms = {m: 1000 * sum(s.get(m, 0) for s in seconds) / n_captures
          for m in ("detection", "ensemble (none)", "ensemble (full)", str(BASELINES[2]), str(OBSERVER))}
    measured_seconds = sum(v for s in seconds for k, v in s.items() if k != "wall")
    return {"ms_per_capture": ms, "wall_minutes": (time.time() - t0) / 60, "measuring_minutes": measured_seconds / 60,
            "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"}


if __name__ == "__main__":
    main()
