"""A weights folder from trained members, without the release's score scale: for comparing
trainings on the validation people (``train.edc --gaps-only --validation``), which orders
captures and needs no calibration. Raw network outputs are the score (``fg-utility-v2``'s
threshold and reliability do not apply).

Run: ``python -m train.package runs/probe/members runs/probe/weights --members mobilenet_v3_small``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .release import MEMBERS, TRAINING_SPEC, write_weights


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("members_dir", type=Path, help="folder with <arch>.pt from train.fit")
    parser.add_argument("out", type=Path)
    parser.add_argument("--members", nargs="+", default=list(MEMBERS))
    parser.add_argument("--input-size", type=int, default=TRAINING_SPEC.input_size)
    args = parser.parse_args(argv)
    missing = [a for a in args.members if not (args.members_dir / f"{a}.pt").is_file()]
    if missing:
        parser.error(f"{args.members_dir}: no checkpoint for {', '.join(missing)}")
    spec = TRAINING_SPEC.with_(name=f"facegate-probe.{args.members_dir.name}", members=tuple(args.members),
                               input_size=args.input_size)
    print(f"weights: {write_weights(args.members_dir, args.out, spec).name} in {args.out}")


if __name__ == "__main__":
    main()
