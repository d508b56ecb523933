"""Measure shipped weights.

``ablation``: SRCC and PLCC against the labels on the identity-disjoint validation split,
for each single model and the ensemble, each without and with test-time views (the
ablation of arXiv 2509.10114, Table 2, on our data).

``sensitivity``: on photos of people from LFW folds 1-5 (never trained on), the share
whose score drops when the photo is blurred (Gaussian sigma 3), darkened (gamma 3) or
downscaled to 24 px between the eyes, and the share the gate rejects when it is turned 90
or 180 degrees or re-encoded at JPEG quality 5 or 1, each through the whole gate (detect,
align, score, decide). ``--people validation`` measures the same on the validation people of the
training split instead: what training choices are made on, so folds 1-5 stay a test.

``landmarks``: on the same held-out photos, how far the score moves when the five landmarks
move by a little Gaussian noise (default 1% of the eye distance per point), as they do
between two detectors or aligners.

Run: ``python -m train.evaluate sensitivity --shared ../shared --photos 100``
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from facegate.gate import Gate
from facegate.images import load_rgb
from facegate.models import load_member
from facegate.spec import ScorerSpec

from .data import load_crops, read_csv, split
from .celeba import celeba_root
from .celeba import identities as celeba_identities
from .degradations import downscale, gamma, gaussian_blur, jpeg
from .trainer import correlations, predict
from .lfw import evaluation_people


def ablation(csv: Path, weights: Path, val_fraction: float = 0.2, seed: int = 0) -> list[dict]:
    spec = ScorerSpec.load(weights / "spec.json")
    samples = read_csv(csv)
    _, val_idx = split(samples, val_fraction, seed)
    val = [samples[i] for i in val_idx]
    crops, kept = load_crops(val, spec)
    target = np.array([val[i].score for i in kept])
    from facegate.scorer import resolve_views

    # "full" is the spec's own views; when those are the flip pair, that row would repeat "flip"
    settings = ("none", "full") if resolve_views("full", spec) == resolve_views("flip") else ("none", "flip", "full")
    preds = {}
    for arch in spec.members:
        net = load_member(weights / f"{arch}.pt", arch)
        for views in settings:
            preds[(arch, views)] = predict(net, crops, spec, views)
    rows = []
    for views in settings:
        for arch in spec.members:
            rows.append({"model": arch, "views": views, "n": len(target), **correlations(preds[(arch, views)], target)})
        ens = np.mean([preds[(a, views)] for a in spec.members], 0)
        rows.append({"model": "ensemble", "views": views, "n": len(target), **correlations(ens, target)})
    return rows


#: Degradations whose score must drop (the share that does is reported).
DEGRADED = {
    "blur (Gaussian sigma 3)": lambda rgb, face: gaussian_blur(rgb, 3.0),
    "dark (gamma 3)": lambda rgb, face: gamma(rgb, 3.0),
    "low resolution (24 px between the eyes)": lambda rgb, face: downscale(rgb, 24.0 / face.eye_distance),
}
#: Captures a recognizer fails on that the gate must reject (the share rejected is reported).
UNUSABLE = {
    "turned 90 degrees": lambda rgb, face: np.ascontiguousarray(np.rot90(rgb, 1)),
    "turned 180 degrees": lambda rgb, face: np.ascontiguousarray(rgb[::-1, ::-1]),
    "JPEG quality 5": lambda rgb, face: jpeg(rgb, 5),
    "JPEG quality 1": lambda rgb, face: jpeg(rgb, 1),
}


def photos_of(shared: Path, identity: str) -> list[Path]:
    """The photos of an identity: an LFW name, ``lfw/<name>`` or ``celeba/<number>``."""
    if identity.startswith("celeba/"):
        return sorted((celeba_root(shared) / identity.removeprefix("celeba/")).glob("*.jpg"))
    return sorted((shared / "data" / "lfw-deepfunneled" / identity.removeprefix("lfw/")).glob("*.jpg"))


def validation_people(csv: Path, val_fraction: float = 0.2, seed: int = 0) -> set[str]:
    """The people on the validation side of the training split (see ``train.data.split``)."""
    samples = read_csv(csv)
    return {samples[i].identity for i in split(samples, val_fraction, seed)[1]}


def labelled_photos(csv_path: Path):
    """``photos_of`` for the people of a labels CSV: each identity's photos as the labels
    recorded them (its ``source`` column), for people that are not in ``../shared``."""
    with Path(csv_path).open(newline="") as fh:
        sources: dict[str, set[str]] = {}
        for row in csv.DictReader(fh):
            sources.setdefault(row["identity"], set()).add(row["source"])
    table = {person: sorted(map(Path, files)) for person, files in sources.items()}
    return lambda _shared, person: table[person]


def held_out_faces(shared: Path, gate: Gate, photos: int, seed: int = 0, people: set[str] | None = None,
                   photos_of=photos_of):
    """``(name, rgb, result)`` of one photo each of up to ``photos`` people, drawn at random
    (seeded), skipping photos in which the gate finds no face; ``people`` (names as
    :func:`photos_of` takes them) defaults to those of LFW folds 1-5, never trained on. With
    fewer people than ``photos``, further rounds take each person's other photos."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(sorted(people or evaluation_people(shared)))
    first: dict[str, Path] = {}
    found, round_no, more = 0, 0, True
    while more:  # a round takes one more photo of each person who has one left
        more = False
        for person in map(str, order):
            if found == photos:
                return
            files = photos_of(shared, person)
            if round_no == 0:
                path = first[person] = files[rng.integers(len(files))]
            else:
                others = [f for f in files if f != first[person]]
                if round_no > len(others):
                    continue
                path = others[round_no - 1]
            more = more or round_no < len(files) - 1
            rgb = load_rgb(path)
            base = gate.assess(rgb, color_order="rgb")
            if base.face is None:
                continue  # the comparisons need a detected face in the original
            found += 1
            inside = path.is_relative_to(shared / "data")
            yield str(path.relative_to(shared / "data") if inside else path), rgb, base
        round_no += 1


EIGHT_DIRECTIONS = [(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)]


def shifted_crop(crop: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``crop`` moved by whole pixels, its edge rows and columns repeated into the gap."""
    h, w = crop.shape[:2]
    padded = np.pad(crop, ((abs(dy), abs(dy)), (abs(dx), abs(dx)), (0, 0)), mode="edge")
    y0, x0 = abs(dy) - dy, abs(dx) - dx
    return np.ascontiguousarray(padded[y0:y0 + h, x0:x0 + w])


def landmark_stability(shared: Path, photos: int = 100, jitter: float = 0.01, draws: int = 8, seed: int = 0,
                       weights: Path | None = None, threads: int | None = None,
                       people: set[str] | None = None, shift: int = 0, views: str = "full") -> dict:
    """How far a score moves when the landmarks move as little as two detectors disagree:
    each of the 5 points of each photo's face shifted by Gaussian noise of ``jitter`` times
    the eye distance (``draws`` times), the face cropped and scored again. A user's own
    aligner never puts the points exactly where ours does.

    ``shift`` > 0: instead, the crop itself moved by that many whole pixels in each of 8
    directions (edges replicated): no resampling at all, so what moves the score is the
    networks' own sensitivity to where the face sits. ``views``: the test-time views scored."""
    gate = Gate(weights=weights, threads=threads, views=views)
    rng = np.random.default_rng([seed, 1])
    spreads, deviations, flips, bases = [], [], 0, []
    for _, rgb, base in held_out_faces(shared, gate, photos, seed, people):
        points = base.face.landmarks
        eyes = float(np.linalg.norm(points[1] - points[0]))
        crops = [gate.spec.crop(rgb, points)]
        if shift:
            crops += [shifted_crop(crops[0], dx * shift, dy * shift) for dx, dy in EIGHT_DIRECTIONS]
        else:
            crops += [gate.spec.crop(rgb, points + rng.normal(0, jitter * eyes, points.shape)) for _ in range(draws)]
        scores = gate.scorer.score(np.stack(crops)).ensemble
        spreads.append(float(scores.max() - scores.min()))
        deviations.append(float(np.abs(scores[1:] - scores[0]).mean()))
        bases.append(float(scores[0]))
        accepted = scores >= gate.policy.min_score
        flips += bool(accepted.any() and not accepted.all())
    spreads, deviations = np.array(spreads), np.array(deviations)
    # where decisions are made: the scale is steep there and flat near 100
    near = np.abs(np.array(bases) - gate.policy.min_score) <= 25

    def stats(keep):
        if not keep.any():
            return {"photos": 0}
        return {"photos": int(keep.sum()), "mean_abs_change": float(deviations[keep].mean()),
                "median_spread": float(np.median(spreads[keep])), "p95_spread": float(np.percentile(spreads[keep], 95)),
                "max_spread": float(spreads[keep].max())}

    moved = {"shift_px": shift} if shift else {"jitter": jitter, "draws": draws}
    moved["views"] = views
    return {**moved, **stats(np.ones(len(spreads), bool)),
            "within_25_of_threshold": stats(near),
            "decision_changes": flips, "share_decision_changes": flips / len(spreads)}


def sensitivity(shared: Path, photos: int = 100, seed: int = 0, weights: Path | None = None,
                threads: int | None = None, people: set[str] | None = None, photos_of=photos_of) -> dict:
    """Per degradation, how many photos score lower after it, and how many the gate rejects;
    ``people`` (names as ``photos_of`` takes them, :func:`photos_of` by default) defaults to
    those of LFW folds 1-5, never trained on."""
    gate = Gate(weights=weights, threads=threads)
    kinds = {**DEGRADED, **UNUSABLE}
    chosen, results = [], {name: [] for name in kinds}
    for name_of_photo, rgb, base in held_out_faces(shared, gate, photos, seed, people, photos_of):
        chosen.append(name_of_photo)
        for name, make in kinds.items():
            after = gate.assess(make(rgb, base.face), color_order="rgb")
            results[name].append({
                "photo": chosen[-1],
                "before": base.score,
                "after": after.score,
                "status_after": after.status.value,
            })
    summary = {"photos": len(chosen), "threshold": gate.policy.min_score, "degradations": {}}
    for name, rows in results.items():
        scored = [r for r in rows if r["after"] is not None]
        drops = sum(r["after"] < r["before"] for r in scored)
        no_face = len(rows) - len(scored)
        summary["degradations"][name] = {
            "score_dropped": drops,
            "no_face_after": no_face,
            "share_dropped": (drops + no_face) / len(rows),
            "share_dropped_of_scored": drops / max(1, len(scored)),
            "median_before": float(np.median([r["before"] for r in rows])),
            "median_after": float(np.median([r["after"] for r in scored])) if scored else None,
            "rejected_after": sum(r["status_after"] != "accepted" for r in rows),
            "share_rejected": sum(r["status_after"] != "accepted" for r in rows) / len(rows),
        }
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("ablation")
    a.add_argument("--csv", type=Path, default=Path("runs/release/labels/labels.csv"))
    a.add_argument("--weights", type=Path, default=None)
    s = sub.add_parser("sensitivity")
    s.add_argument("--shared", type=Path, default=Path("../shared"))
    s.add_argument("--photos", type=int, default=100)
    s.add_argument("--weights", type=Path, default=None)
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--people", choices=["held-out", "validation"], default="held-out",
                   help="folds 1-5 people (default), or the validation people of the training split (needs --csv)")
    s.add_argument("--csv", type=Path, default=Path("runs/release/labels/labels.csv"))
    j = sub.add_parser("landmarks", help="score spread under landmark jitter (held-out photos)")
    j.add_argument("--shared", type=Path, default=Path("../shared"))
    j.add_argument("--photos", type=int, default=100)
    j.add_argument("--jitter", type=float, default=0.01, help="noise per landmark, as a share of the eye distance")
    j.add_argument("--shift", type=int, default=0,
                   help="move the crop by this many whole pixels in 8 directions instead of jittering landmarks")
    j.add_argument("--views", choices=["none", "flip", "full"], default="full",
                   help="test-time views scored (default: those the weights were trained for)")
    j.add_argument("--weights", type=Path, default=None)
    j.add_argument("--threads", type=int, default=None)
    j.add_argument("--people", choices=["lfw", "celeba"], default="lfw",
                   help="LFW folds 1-5 people (default) or the CelebA evaluation identities (several photos each)")
    args = parser.parse_args(argv)
    if args.command == "ablation":
        from facegate.scorer import default_weights_dir

        rows = ablation(args.csv, args.weights or default_weights_dir())
        print(json.dumps(rows, indent=1))
    elif args.command == "landmarks":
        people = None
        if args.people == "celeba":
            people = {f"celeba/{name}" for name in celeba_identities(args.shared, evaluation=True)}
        print(json.dumps(landmark_stability(args.shared, args.photos, args.jitter, weights=args.weights,
                                            threads=args.threads, people=people, shift=args.shift, views=args.views), indent=1))
    else:
        people = validation_people(args.csv) if args.people == "validation" else None
        print(json.dumps(sensitivity(args.shared, args.photos, weights=args.weights, threads=args.threads,
                                     people=people), indent=1))


if __name__ == "__main__":
    main()
