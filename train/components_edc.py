"""Which quality components predict recognition failure? EDC of each component alone on
the evaluation people of both shared sets, natural and degraded; writes
``docs/components.md``.

    python -m train.components_edc --shared ../shared

Sets (people no facegate weights trained on):

- LFW folds 1-5, natural and degraded: exactly the pairs of ``python -m train.edc``
  (degraded: the right-hand photo of each pair replaced by a seeded degraded copy).
- CelebA evaluation identities (number divisible by 5), natural: every photo, every
  same-identity pair genuine. Degraded: each photo also as a seeded degraded copy; genuine
  comparisons are clean photo against degraded copy of another photo of the same person,
  impostors every clean photo against every copy of other people's.

Comparison scores: the shared MobileFaceNet; threshold at FMR 1e-3 over the set's
impostor comparisons; genuine comparisons discarded lowest pairwise quality first.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from facegate.components import COMPONENTS
from facegate.evaluation import PERFECT, RANDOM, MeasuredCaptures, Method, edc_report, measure_captures
from facegate.evaluation.measure import CENTRED_LANDMARKS, COMPONENT
from facegate.folder import find_images
from facegate.images import load_rgb
from facegate.recognition import MobileFaceNetRecognizer

from . import edc
from .degradations import DEGRADATIONS, degrade

ENSEMBLE = Method("ensemble", "none")
METHODS = dict(views=("none",), baselines=False, components=True)


def celeba_sets(shared: Path, work: Path, recognizer, seed: int = 0) -> dict:
    """The CelebA evaluation identities, natural and degraded (cached in ``work``)."""
    root = shared / "data" / "celeba-subset"
    paths = [str(p) for p in find_images(root) if int(p.parent.name) % 5 == 0]
    ident = np.array([Path(p).parent.name for p in paths])
    cache = work / "celeba_natural.npz"
    if cache.exists():
        natural = MeasuredCaptures.load(cache)
    else:
        natural = measure_captures(paths, ident, recognizer=recognizer, progress=edc._progress(len(paths), "celeba"),
                                   **METHODS)
        natural.save(cache)
    n = len(paths)
    same = ident[:, None] == ident[None, :]
    genuine = np.argwhere(np.triu(same, 1))
    cache = work / "celeba_degraded.npz"
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
        copies = measure_captures(images, ident, recognizer=recognizer,
                                  progress=edc._progress(len(images), "celeba degraded"), **METHODS)
        copies.names = [f"{p} [{kind} {severity:.2f}]" for p, (kind, severity) in zip(paths, records)]
        copies.save(cache)
    both = natural.concat(copies)
    cross = np.argwhere(same & ~np.eye(n, dtype=bool))  # clean i against the copy of j, same person, i != j
    degraded_pairs = np.stack([cross[:, 0], n + cross[:, 1]], 1)
    return {"celeba natural": (natural, genuine, {}),
            "celeba degraded": (both, degraded_pairs, {"rows": np.arange(n), "cols": np.arange(n, 2 * n)})}


def gap_closed(report: dict, row: dict) -> float:
    rows = {r["key"]: r for r in report["rows"]}
    random_pauc, perfect_pauc = rows[RANDOM]["pauc"], rows[PERFECT]["pauc"]
    return (random_pauc - row["pauc"]) / max(random_pauc - perfect_pauc, 1e-12)


def write_doc(reports: dict, path: Path, command: str, minutes: float) -> None:
    names = list(reports)
    lines = [
        "# Quality components: what they measure and which ones predict recognition failure",
        "",
        "Each component (`facegate.components`) has a native value in its unit and a quality 0-100 from a "
        "monotone logistic mapping; the policy's requirements bound the native values, the profiles set them "
        "(`facegate.policy.PROFILES`). Everything is computed from the capture stage's image, faces and five "
        "landmarks, plus one 112 px crop on the recognition template; the cost is in `docs/performance.md` "
        "(`python -m benchmarks.bench_components`).",
        "",
        "## Components",
        "",
        "| component | ISO/IEC 29794-5 | unit | native value | quality mapping | reason when a requirement fails |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in COMPONENTS.items():
        lines.append(f"| `{name}` | {d.iso or '-'} | {d.unit} | {d.description} | {d.mapping.describe()} | "
                     f"`{d.reason}` |")
    lines += [
        "",
        "Missing inputs give `None` with a cause, never NaN: image measures need at least half of the inner face "
        "inside the image; blockiness needs a face box of 32 px or more; the pose needs the PnP fit to converge.",
        "",
        "## Evidence: EDC of each component alone",
        "",
        f"Command: `{command}` (about {minutes:.0f} min here, measurements cached in `runs/components/`). "
        f"Machine: {platform.machine()}, 2 cores. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "Sets: the LFW pairs of folds 1-5 as in `docs/evaluation.md` (natural, and with the right-hand photo "
        "of each pair degraded by one of `train/degradations.py` at a random severity); the CelebA evaluation "
        "identities (number divisible by 5): every same-person pair of the natural photos, and every clean "
        "photo against a degraded copy of another photo of the same person. Comparison threshold at FMR 1e-3 "
        "over the set's impostor comparisons (shared MobileFaceNet); genuine comparisons discarded lowest "
        "pairwise quality first, up to 20%. `gap closed`: (random - method) / (random - perfect) pAUC; 1 is the "
        "perfect order, 0 chance, negative worse than chance. A component that cannot be measured counts as "
        "quality 50; captures with no face count as the lowest quality for every method.",
        "",
    ]
    header = "| component | " + " | ".join(f"{n}: gap closed | FNMR after 10%" for n in names) + " |"
    lines += [header, "|---|" + "---|---|" * len(names)]
    start = "| no discarding (FNMR) | " + " | ".join(f"- | {reports[n]['start_fnmr']:.4f}" for n in names) + " |"
    order = [ENSEMBLE] + [Method(c, COMPONENT) for c in COMPONENTS]
    for method in order:
        cells = []
        for n in names:
            row = next(r for r in reports[n]["rows"] if r["key"] == method)
            cells.append(f"{gap_closed(reports[n], row):.2f} | {row['fnmr_at_10%']:.4f}")
        label = "facegate ensemble (no views), for comparison" if method == ENSEMBLE else f"`{method.name}`"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(start)
    lines += ["", "Set sizes: " + "; ".join(
        f"{n}: {reports[n]['captures']} captures ({reports[n]['no_face']} without a face), "
        f"{reports[n]['genuine_comparisons']:,} genuine and {reports[n]['impostor_comparisons']:,} impostor "
        f"comparisons, threshold {reports[n]['threshold']:.4f}" for n in names) + ".", ""]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=Path("runs/components"))
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--per-fold", type=int, default=None, help="a quick trial on N pairs per fold and kind")
    args = parser.parse_args(argv)
    t0 = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    sets, _ = edc.measure(args.shared, args.work, per_fold=args.per_fold, observer=False, **METHODS)
    sets = {f"LFW {k}": v for k, v in sets.items()}
    recognizer = MobileFaceNetRecognizer(str(args.shared / "models" / "mobilefacenet_casia.ckpt"))
    sets.update(celeba_sets(args.shared, args.work, recognizer))
    reports = {name: edc_report(m, pairs, fmr=1e-3, impostor_rows=p.get("rows"), impostor_cols=p.get("cols"))
               for name, (m, pairs, p) in sets.items()}
    write_doc(reports, args.docs / "components.md", "python -m train.components_edc --shared ../shared",
              (time.time() - t0) / 60)
    summary = {name: {str(r["key"]): round(gap_closed(rep, r), 3) for r in rep["rows"]} for name, rep in reports.items()}
    (args.work / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
