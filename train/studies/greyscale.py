"""Grey and near-infrared captures: does the score's decision agree with the recognizer?

A grey camera (or a near-infrared one, which renders skin bright and even) gives photos a
recognizer may still match well. For evaluation people (LFW folds 1-5 people with two or
more photos, CelebA evaluation identities), the first photo of each person, as it is, as a
grey copy (luminance) and as an IR-like copy (``train.degradations.greyscale``), is compared
by the label recognizer (the shared MobileFaceNet, image and mirror) with the person's other
photos the gate accepts; it "matches" when at least half of them are above the recognizer's
threshold at FMR 1e-3 (the labels' ``threshold.json``, or 0.3925 as the shipped labels').
Agreement: the gate accepts the copy exactly when it matches.

    python -m train.studies.greyscale --shared ../shared --weights facegate/weights
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facegate import Gate
from facegate.images import load_rgb

from ..degradations import greyscale

#: The shipped labels' cosine threshold at FMR 1e-3 (runs/release/labels/threshold.json).
THRESHOLD = 0.3925


def people(shared: Path, lfw_people: int = 120, seed: int = 0) -> list[list[Path]]:
    from ..celeba import identities
    from ..lfw import evaluation_people

    rng = np.random.default_rng(seed)
    lfw = shared / "data" / "lfw-deepfunneled"
    several = [fs for fs in (sorted((lfw / p).glob("*.jpg")) for p in sorted(evaluation_people(shared))) if len(fs) >= 2]
    out = [several[i] for i in rng.permutation(len(several))[:lfw_people]]
    for photos in identities(shared, evaluation=True).values():
        out.append([photos[i] for i in rng.permutation(len(photos))[:4]])
    return out


def measure(shared: Path, weights: Path | None, threshold: float = THRESHOLD, lfw_people: int = 120) -> dict:
    from facegate.recognition import MobileFaceNetRecognizer

    recognizer = MobileFaceNetRecognizer(str(shared / "models" / "mobilefacenet_casia.ckpt"))
    gate = Gate(weights=weights)
    rng = np.random.default_rng(1)
    kinds = {"as it is": lambda rgb: rgb, "grey": lambda rgb: greyscale(rgb, 0.0, rng),
             "near-infrared-like": lambda rgb: greyscale(rgb, 1.0, rng)}
    rows = {k: [] for k in kinds}
    for photos in people(shared, lfw_people):
        results = [gate.assess(p) for p in photos]
        refs = [(load_rgb(p), r.face.landmarks) for p, r in zip(photos[1:], results[1:])
                if r.face is not None and r.status.value == "accepted"]
        if results[0].face is None or not refs:
            continue
        gallery = recognizer.embed([a for a, _ in refs], [b for _, b in refs])
        rgb = load_rgb(photos[0])
        for kind, make in kinds.items():
            copy = make(rgb)
            r = gate.assess(copy, color_order="rgb")
            if r.face is None:
                continue
            e = recognizer.embed([copy], [r.face.landmarks])[0]
            matched = bool(np.mean(gallery @ e > threshold) >= 0.5)
            rows[kind].append({"matched": matched, "accepted": r.status.value == "accepted", "score": r.score})
    summary = {}
    for kind, rs in rows.items():
        n = len(rs)
        summary[kind] = {
            "captures": n, "matched": round(float(np.mean([r["matched"] for r in rs])), 3),
            "accepted": round(float(np.mean([r["accepted"] for r in rs])), 3),
            "decision_agrees": round(float(np.mean([r["matched"] == r["accepted"] for r in rs])), 3),
            "matched_but_rejected": sum(r["matched"] and not r["accepted"] for r in rs),
            "median_score": round(float(np.median([r["score"] for r in rs])), 1)}
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--lfw-people", type=int, default=120)
    parser.add_argument("--threshold", type=float, default=THRESHOLD)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.shared, args.weights, args.threshold, args.lfw_people), indent=1))


if __name__ == "__main__":
    main()
