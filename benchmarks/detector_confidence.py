"""Each detector's confidence on clean photos: where the policy's ``min_face_probability``
for a detector should sit so that it rejects no clean capture (the values in spec.json).

    python -m benchmarks.detector_confidence --photos 400

One photo each of every 8th LFW training person (never the evaluation folds). YuNet's
confidences are on another scale than MTCNN's: 0.9, right for MTCNN, would reject about 2%
of clean photos under YuNet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facegate.capture import CaptureSettings, CaptureStage
from train.lfw import training_people

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--photos", type=int, default=400)
    args = parser.parse_args(argv)
    people = training_people(args.shared)
    photos = [paths[0] for _, paths in sorted(people.items())][::8][: args.photos]
    print(f"{len(photos)} clean LFW training photos\n")
    print("| detector | faces found | 1st / 5th / 50th percentile | share at or above the cut-off |\n|---|---|---|---|")
    for name in ("mtcnn", "yunet"):
        stage = CaptureStage(settings=CaptureSettings(detector=name))
        cut = stage.detector_settings["min_face_probability"]
        probs = np.array([c.primary.probability for c in map(stage.analyse, photos) if c.primary is not None])
        q = np.quantile(probs, [0.01, 0.05, 0.5])
        print(f"| {name} | {len(probs)} | {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f} | {np.mean(probs >= cut):.1%} at {cut} "
              f"({np.mean(probs >= 0.9):.1%} at 0.9) |")


if __name__ == "__main__":
    main()
