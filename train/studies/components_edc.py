"""Which quality components predict recognition failure? EDC of each component alone on
the evaluation people of both shared sets, natural and degraded; writes
``docs/components.md``.

    python -m train.studies.components_edc --shared ../shared

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

import cv2
import numpy as np

from facegate.components import COMPONENTS
from facegate.policy import PROFILES
from facegate.evaluation import Method, edc_report, gap_closed
from facegate.evaluation.measure import COMPONENT
from facegate.images import load_rgb
from facegate.recognition import MobileFaceNetRecognizer

from .. import celeba, edc
from ..degradations import gamma

ENSEMBLE = Method("ensemble", "none")
#: Every capture with a face ties, every capture without one comes first: the part of any
#: method's gain that comes from no-face captures alone.
FACES_FOUND = Method("a face was found (nothing else)")
#: Share of the random-to-perfect gap above the floor from which a component counts as
#: predicting recognition failure.
PREDICTS = 0.10
METHODS = dict(views=("none",), baselines=False, components=True)


def _shift(rgb: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """The photo moved by (dx, dy) pixels, black where nothing is."""
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(rgb, matrix, (rgb.shape[1], rgb.shape[0]), borderMode=cv2.BORDER_CONSTANT)


#: Manipulations of a clean photo, each with the reasons that name what is wrong with it.
MANIPULATIONS = {
    "none (clean photo: a look-again reason here is a false alarm)": (
        lambda rgb: rgb, {"rotated", "too_dark", "too_bright", "cut_off"}),
    "dark (gamma 5)": (lambda rgb: gamma(rgb, 5.0), {"too_dark"}),
    "dark (gamma 3, gain 0.15)": (lambda rgb: gamma(rgb, 3.0, 0.15), {"too_dark"}),
    "cut off (moved 40% left)": (lambda rgb: _shift(rgb, -int(0.4 * rgb.shape[1]), 0), {"cut_off", "cut_off_left"}),
    "cut off (moved 40% down)": (lambda rgb: _shift(rgb, 0, int(0.4 * rgb.shape[0])), {"cut_off", "cut_off_bottom"}),
    "cut off (moved 35% up)": (lambda rgb: _shift(rgb, 0, -int(0.35 * rgb.shape[0])), {"cut_off", "cut_off_top"}),
    "turned 90 degrees": (lambda rgb: np.ascontiguousarray(np.rot90(rgb, 1)), {"rotated"}),
    "turned 180 degrees": (lambda rgb: np.ascontiguousarray(rgb[::-1, ::-1]), {"rotated"}),
    "turned 270 degrees": (lambda rgb: np.ascontiguousarray(np.rot90(rgb, -1)), {"rotated"}),
}


def look_again_check(shared: Path, photos: int = 100) -> list[dict]:
    """For clean LFW evaluation photos (one per person, the first ``photos`` people in
    which a face is found): how often each manipulation comes back ``no_face`` without and
    with looking again, and how often it is rejected with a reason that names it."""
    from facegate import CaptureSettings, Gate, Status
    from ..lfw import evaluation_people

    lfw = shared / "data" / "lfw-deepfunneled"
    plain = Gate(views="none", capture=CaptureSettings(look_again=False, orientation=False))
    gate = Gate(views="none")
    clean = []
    for person in sorted(evaluation_people(shared)):
        rgb = load_rgb(sorted((lfw / person).glob("*.jpg"))[0])
        if plain.assess(rgb, color_order="rgb").status is not Status.NO_FACE:
            clean.append(rgb)
        if len(clean) == photos:
            break
    rows = []
    for name, (manipulate, named) in MANIPULATIONS.items():
        before = after = explained = 0
        for rgb in clean:
            image = manipulate(rgb)
            before += plain.assess(image, color_order="rgb").status is Status.NO_FACE
            result = gate.assess(image, color_order="rgb")
            after += result.status is Status.NO_FACE
            explained += bool(named & set(result.reasons))
        rows.append({"manipulation": name, "photos": len(clean), "no_face_before": before, "no_face_after": after,
                     "named": explained})
    return rows


def _bounds(requirement) -> str:
    if requirement is None:
        return "-"
    parts = []
    if requirement.min is not None:
        parts.append(f">= {requirement.min:g}")
    if requirement.max is not None:
        parts.append(f"<= {requirement.max:g}")
    if requirement.max_abs is not None:
        parts.append(f"\\|x\\| <= {requirement.max_abs:g}")
    return ", ".join(parts)


def profile_rejections(shared: Path, lfw_photos: int = 600) -> dict:
    """Share of natural evaluation photos (LFW folds 1-5 people, CelebA evaluation
    identities) that each profile rejects on everything but the score, and the share
    each requirement rejects."""
    from facegate import CaptureStage
    from facegate.policy import decide

    from ..lfw import evaluation_people

    lfw = shared / "data" / "lfw-deepfunneled"
    people = sorted(evaluation_people(shared))
    sets = {"LFW": [p for person in people for p in sorted((lfw / person).glob("*.jpg"))][:: 5][:lfw_photos],
            "CelebA": [p for photos in celeba.identities(shared, evaluation=True).values() for p in photos]}
    stage = CaptureStage()
    out = {}
    for name, paths in sets.items():
        captures = [c for c in (stage.analyse(p) for p in paths) if c.primary is not None]
        row = {"photos": len(captures)}
        for profile, policy in PROFILES.items():
            policy = policy.resolve(0.0, stage.detector_settings.get("min_face_probability"))
            decisions = [decide(policy, c.faces, c.primary, None, c.components)[1] for c in captures]
            row[profile] = sum(bool(d) for d in decisions) / len(captures)
            counts: dict[str, int] = {}
            for reasons in decisions:
                for r in reasons:
                    counts[r] = counts.get(r, 0) + 1
            row[f"{profile} reasons"] = {r: n / len(captures) for r, n in sorted(counts.items(), key=lambda x: -x[1])}
        out[name] = row
    return out


def write_doc(reports: dict, looks: list[dict], rejections: dict, path: Path, command: str, minutes: float) -> None:
    """docs/components.md: the components, the profiles' bounds, each component's EDC, what the
    profiles reject, and what looking again finds; one section a function."""
    lines = (_doc_components() + _doc_profiles() + _doc_evidence(reports, command, minutes)
             + _doc_rejections(rejections) + _doc_looking_again(looks))
    path.write_text("\n".join(lines) + "\n")


def _doc_components() -> list[str]:
    """What each component measures, in which unit, and its reason."""
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
    return lines


def _doc_profiles() -> list[str]:
    """The profiles' requirements, why these values, and what is not measured."""
    lines = ["", "## Profiles", "",
              "Requirements on native values (`facegate.policy.PROFILES`); a policy file changes any of them "
              "(README, \"Decision policy\"). Every profile also applies the score threshold of the weights, the "
              "detector's confidence cut-off and the multiple-face rule.", "",
              "| component | " + " | ".join(PROFILES) + " |", "|---|" + "---|" * len(PROFILES)]
    lines.append("| `min_eye_distance` (px) | " + " | ".join(f"{p.min_eye_distance:g}" for p in PROFILES.values()) + " |")
    lines.append("| reject a second face of this size ratio | " + " | ".join(
        f"{p.secondary_face_ratio:g}" if p.reject_multiple_faces else "no" for p in PROFILES.values()) + " |")
    for name in COMPONENTS:
        cells = [_bounds(p.requirement(name)) for p in PROFILES.values()]
        if any(c != "-" for c in cells):
            lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Why these values: `verification` rejects only what recognizers fail on in the evidence below "
        "(near-profile turns, faces mostly black or burnt out, faces cut through, JPEG blocks that wipe out "
        "texture) and leaves milder cases to the score; `enrollment` follows ISO/IEC 39794-5 / ICAO portrait "
        "practice (90 px or more between the eyes, whole head visible, frontal, evenly lit, no clipping) with "
        "pose limits widened to what five-landmark pose can tell apart (its spread on frontal photos is several "
        "degrees, driven by expression and landmark noise); `surveillance` accepts small, turned faces and "
        "crowds.",
        "",
        "Not measured: eyes closed, mouth open, occlusion of eyes or mouth, glasses. The shared data carries "
        "identities only (LFW, and the CelebA subset without CelebA's attribute annotations), so there are no "
        "labels to train or validate such detectors honestly; hand-labelling a few photos here would not be "
        "validation. The ensemble's score still carries occlusion (`docs/results.md`).",
        "",
        "Head pose comes from the five landmarks fitted to a generic 3D face (`cv2.solvePnP`, focal length the "
        "image's longer side): roll is exact to the landmark accuracy; yaw and pitch are approximate (pitch "
        "moves with smiles, which lift the mouth corners). A dedicated pose network would be more accurate; "
        "this one costs a fraction of a millisecond and needs nothing beyond the detector.",
        "",
        "Missing inputs give `None` with a cause, never NaN: image measures need at least half of the inner face "
        "inside the image; blockiness needs a face box of 32 px or more; the pose needs the PnP fit to converge.",
        "",
    ]
    return lines


def _doc_evidence(reports: dict, command: str, minutes: float) -> list[str]:
    """Each component's EDC alone against the floor of finding a face, on the four sets."""
    names = list(reports)
    lines = [
        "## Evidence: EDC of each component alone",
        "",
        f"Command: `{command}` (about {minutes:.0f} min here, measurements cached in `runs/components/<digest of the weights and helpers>/`). "
        f"Machine: {platform.machine()}, 2 cores. Date: {time.strftime('%Y-%m-%d')}.",
        "",
        "Sets: the LFW pairs of folds 1-5 as in `docs/evaluation.md` (natural, and with the right-hand photo "
        "of each pair degraded by one of `train/degradations.py` at a random severity); the CelebA evaluation "
        "identities (number divisible by 5): every same-person pair of the natural photos, and every clean "
        "photo against a degraded copy of another photo of the same person. Comparison threshold at FMR 1e-3 "
        "over the set's impostor comparisons (shared MobileFaceNet); genuine comparisons discarded lowest "
        "pairwise quality first, up to 20%. `gap closed`: (random - method) / (random - perfect) pAUC; 1 is the "
        "perfect order, 0 chance, negative worse than chance. A component that cannot be measured counts as "
        "quality 50; captures with no face count as the lowest quality for every method, so every method "
        "gains from them: the row `a face was found (nothing else)` shows that floor, and a component helps "
        "only as far as it rises above it. The CelebA thresholds come from impostor comparisons between "
        "captures with a face (two no-face captures, each embedded at the average landmarks, look alike to "
        "the recognizer and would set the threshold by themselves).",
        "",
    ]
    header = "| component | " + " | ".join(f"{n}: gap closed (above the floor) | FNMR after 20%" for n in names) + " |"
    lines += [header, "|---|" + "---|---|" * len(names)]
    start = "| no discarding (FNMR) | " + " | ".join(f"- | {reports[n]['start_fnmr']:.4f}" for n in names) + " |"
    order = [ENSEMBLE, FACES_FOUND] + [Method(c, COMPONENT) for c in COMPONENTS]
    above: dict[str, list[float]] = {}
    for method in order:
        cells = []
        for n in names:
            rows = {r["key"]: r for r in reports[n]["rows"]}
            gain, floor = gap_closed(reports[n], method), gap_closed(reports[n], FACES_FOUND)
            above.setdefault(method.name, []).append(gain - floor)
            cells.append(f"{gain:.2f} ({gain - floor:+.2f}) | {rows[method]['fnmr_at_20%']:.4f}")
        label = ("facegate ensemble (no views), for comparison" if method == ENSEMBLE
                 else f"{method.name}: the floor" if method == FACES_FOUND else f"`{method.name}`")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(start)
    predictors = [c for c in COMPONENTS if sum(v >= PREDICTS for v in above[c]) >= 2]
    checks = [c for c in COMPONENTS if c not in predictors]
    lines += ["", f"**Which components predict recognition failure** (at least {PREDICTS:.2f} of the gap above the "
              f"floor on two or more of the four sets): {', '.join(f'`{c}`' for c in predictors) or 'none'}. "
              f"**Compliance checks** (less than that alone; they still name what is wrong with a capture and "
              f"serve profiles such as `enrollment`): {', '.join(f'`{c}`' for c in checks)}. No single component "
              "comes near the ensemble on natural photos, where several causes mix; on degraded photos "
              "sharpness alone comes close, as most degradations blur."]
    lines += ["", "Set sizes: " + "; ".join(
        f"{n}: {reports[n]['captures']} captures ({reports[n]['no_face']} without a face), "
        f"{reports[n]['genuine_comparisons']:,} genuine and {reports[n]['impostor_comparisons']:,} impostor "
        f"comparisons, threshold {reports[n]['threshold']:.4f}" for n in names) + ". The degraded CelebA copies "
        "are hard (see the last row, no discarding): the degradations' parameters are in pixels of 250 px LFW photos, "
        "and many CelebA faces are much smaller.", ""]
    return lines


def _doc_rejections(rejections: dict) -> list[str]:
    """The share of natural photos each profile rejects, and why."""
    lines = ["## What the profiles reject on natural photos", "",
              "Every fifth photo of the LFW folds 1-5 people (up to 600) and every photo of the CelebA evaluation "
              "identities, with a face found; the share each profile rejects on everything but the score (face "
              "size, confidence, other faces, component requirements), and its most frequent reasons. Same "
              "command as above.", "",
              "| set | photos | " + " | ".join(PROFILES) + " |", "|---|---|" + "---|" * len(PROFILES)]
    for name, row in rejections.items():
        cells = []
        for profile in PROFILES:
            top = ", ".join(f"`{r}` {v:.0%}" for r, v in list(row[f"{profile} reasons"].items())[:4])
            cells.append(f"{row[profile]:.0%} ({top})" if top else f"{row[profile]:.0%}")
        lines.append(f"| {name} | {row['photos']} | " + " | ".join(cells) + " |")
    lines += ["", "LFW and CelebA photos are press and red-carpet photos, not enrollment portraits: `enrollment` is "
              "meant to reject most of them (all LFW faces have fewer than 90 px between the eyes).", ""]
    return lines


def _doc_looking_again(looks: list[dict]) -> list[str]:
    """no_face with and without looking again, by manipulation."""
    lines = [
        "## `no_face` only when there is no face: looking again",
        "",
        f"{looks[0]['photos']} clean LFW evaluation photos (the first photo of each person, in name order, among "
        "those where MTCNN finds a face), each manipulated as below, then assessed by the default gate with and "
        "without looking again (`Gate(look_again=False)`). `named`: rejected with a reason that names the "
        "manipulation (`too_dark`; `cut_off` or the margin of that side; `rotated`). Same command as above.",
        "",
        "| manipulation | no_face without looking again | no_face with | rejected with the reason that names it |",
        "|---|---|---|---|",
    ]
    for r in looks:
        lines.append(f"| {r['manipulation']} | {r['no_face_before']} | {r['no_face_after']} | {r['named']} |")
    lines += [
        "",
        "A face found directly is never looked for again: a photo turned 180 degrees in which MTCNN finds the "
        "face upside down, with landmarks placed as if upright, is judged as found (its low score or pose must "
        "reject it; issue 13 trains the score for that). Darkened photos are mostly still found directly and "
        "then rejected by `under_exposure` where the profile bounds it.",
        "",
    ]
    return lines


def _models_digest() -> str:
    """What the measurements depend on besides the data: the shipped quality weights and the
    helper networks (a cache of other models must not be read as this one's)."""
    import hashlib

    from facegate.scorer import default_weights_dir

    folder = default_weights_dir()
    digest = hashlib.sha256()
    for name in ("spec.json", "occlusion.onnx", "orientation.onnx"):
        path = folder / name
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()[:12]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=None,
                        help="measurement cache (default: runs/components/<digest of the shipped weights and helpers>)")
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--per-fold", type=int, default=None, help="a quick trial on N pairs per fold and kind")
    args = parser.parse_args(argv)
    t0 = time.time()
    args.work = args.work or Path("runs/components") / _models_digest()
    args.work.mkdir(parents=True, exist_ok=True)
    sets, _ = edc.measure(args.shared, args.work, per_fold=args.per_fold, observer=False, **METHODS)
    sets = {f"LFW {k}": v for k, v in sets.items()}
    recognizer = MobileFaceNetRecognizer(str(args.shared / "models" / "mobilefacenet_casia.ckpt"))
    sets.update(edc.celeba_sets(args.shared, args.work, recognizer, **METHODS))
    for measured, _, _ in sets.values():
        measured.quality[FACES_FOUND] = np.where(measured.found, 0.0, -np.inf)
    reports = {name: edc_report(m, pairs, fmr=1e-3, impostor_rows=p.get("rows"), impostor_cols=p.get("cols"))
               for name, (m, pairs, p) in sets.items()}
    looks = look_again_check(args.shared)
    rejections = profile_rejections(args.shared)
    args.docs.mkdir(parents=True, exist_ok=True)  # a new --docs folder, not a crash after the measuring
    write_doc(reports, looks, rejections, args.docs / "components.md", "python -m train.studies.components_edc --shared ../shared",
              (time.time() - t0) / 60)
    summary = {name: {str(r["key"]): round(gap_closed(rep, r["key"]), 3) for r in rep["rows"]} for name, rep in reports.items()}
    (args.work / "report.json").write_text(json.dumps({"gap_closed": summary, "look_again": looks, "profile_rejections": rejections}, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
