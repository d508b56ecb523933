"""A weights folder from trained members, for comparing trainings on the validation people
(``train.edc --gaps-only --validation``) without a whole release: the members, their ONNX
graphs and the release's score scale (fitted on the same validation captures, as the release
does), but no ablation, sensitivity or model card.

Why the scale, when the comparison only orders captures: raw outputs are clipped to the score
range, and a member that predicts below 0 for many heavily degraded copies would give them all
the score 0; the EDC discards tied captures together and would count that as a poor order. The
scale's tails are strictly monotone, so every order survives.

Run: ``python -m train.package runs/probe/members runs/probe/weights --csv runs/release/labels/labels.csv
--members mobilenet_v3_small``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .recipe import SHIPPED
from .weights import calibrate_scale, calibrated, write_weights


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("members_dir", type=Path, help="folder with <arch>.pt from train.fit")
    parser.add_argument("out", type=Path)
    parser.add_argument("--csv", type=Path, required=True, help="the label CSV the members were trained on")
    parser.add_argument("--members", nargs="+", default=list(SHIPPED.members))
    parser.add_argument("--input-size", type=int, default=SHIPPED.input_size)
    args = parser.parse_args(argv)
    missing = [a for a in args.members if not (args.members_dir / f"{a}.pt").is_file()]
    if missing:
        parser.error(f"{args.members_dir}: no checkpoint for {', '.join(missing)}")
    spec = SHIPPED.weights_spec().with_(name=f"facegate-probe.{args.members_dir.name}", members=tuple(args.members),
                               input_size=args.input_size)
    scale = calibrate_scale(args.csv, args.members_dir, spec)
    spec = calibrated(spec, scale, "maximum Youden J on the validation captures (train.package)")
    print(f"weights: {write_weights(args.members_dir, args.out, spec).name} in {args.out}")


if __name__ == "__main__":
    main()
