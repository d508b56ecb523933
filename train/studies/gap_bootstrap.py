"""Is one set of weights really ahead of another on the share of the gap closed? A paired
bootstrap from two or more of ``train.edc``'s measurement caches of the same sets; the
comparison threshold stays the one fixed on the impostors.

    python -m train.studies.gap_bootstrap runs/edc/<weights A> runs/edc/<weights B> [--resamples 300]
    python -m train.studies.gap_bootstrap runs/edc/<A> runs/edc/<B> --sets celeba
    python -m train.studies.gap_bootstrap runs/val/<A>-gaps runs/val/<B>-gaps --sets validation \
        --labels runs/v3c/labels/labels.csv --views none

LFW (folds 1-5): one pair per comparison, so comparisons are resampled. CelebA and the
validation people: every pair of a person's photos is a comparison, and the comparisons of
one person are not independent, so people are resampled (with all their comparisons).
Prints, per set, each cache's share of the gap closed and the spread of their difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facegate.evaluation import Method
from facegate.evaluation.metrics import paired_bootstrap

from ..edc import _recognizer, celeba_sets, comparisons, lfw_comparisons, validation_sets


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("caches", type=Path, nargs="+", help="train.edc measurement folders (runs/edc/...)")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--method", default="ensemble", help="method name as train.edc records it")
    parser.add_argument("--views", default="full")
    parser.add_argument("--fmr", type=float, default=1e-3)
    parser.add_argument("--limit", type=float, default=0.2)
    parser.add_argument("--resamples", type=int, default=300)
    parser.add_argument("--sets", choices=["lfw", "celeba", "validation"], default="lfw",
                        help="which of the caches' sets: LFW folds 1-5, the CelebA evaluation identities, or the "
                             "validation people (train.edc --validation; needs --labels)")
    parser.add_argument("--labels", type=Path, default=None, help="with --sets validation: the label CSV measured")
    args = parser.parse_args(argv)
    if args.sets == "validation" and args.labels is None:
        parser.error("--sets validation needs --labels, the label CSV train.edc --validation was given")
    for cache in args.caches:
        if not cache.is_dir():
            parser.error(f"{cache}: not a train.edc measurement folder")
    recognizer = _recognizer(args.shared)
    measured = [measured_sets(args, cache, recognizer) for cache in args.caches]
    method = Method(args.method, args.views)
    out = {}
    for name, first in measured[0].items():
        for other in measured[1:]:
            if other[name].captures.names != first.captures.names:
                parser.error(f"{name}: the caches hold different captures; compare measurements of the same sets")
        qualities = [m[name].pair_quality(method) for m in measured]
        # a person per comparison where people give many comparisons each
        clusters = None if args.sets == "lfw" else first.captures.identities[first.pairs[:, 0]]
        out[name] = paired_bootstrap(first.genuine, qualities, first.threshold, limit=args.limit,
                                     resamples=args.resamples, clusters=clusters)
    print(json.dumps({"caches": [str(c) for c in args.caches], "method": str(method), **out}, indent=1))


def measured_sets(args, cache: Path, recognizer) -> dict:
    """The chosen sets from one cache, as comparisons with their thresholds (nothing is
    measured: a cache without them is an error, not hours of measuring)."""
    files = {"lfw": ["natural.npz", "degraded.npz"], "celeba": ["celeba_natural.npz", "celeba_degraded.npz"],
             "validation": ["validation_natural.npz", "validation_degraded.npz"]}[args.sets]
    missing = [f for f in files if not (cache / f).exists()]
    if missing:
        raise SystemExit(f"{cache}: no {', '.join(missing)}; measure the {args.sets} sets with train.edc first")
    if args.sets == "lfw":
        return {f"LFW {k}": v for k, v in lfw_comparisons(args.shared, cache, args.fmr, recognizer)[0].items()}
    if args.sets == "celeba":
        return comparisons(celeba_sets(args.shared, cache, recognizer), args.fmr)
    return comparisons(validation_sets(args.shared, args.labels, cache, recognizer), args.fmr)


if __name__ == "__main__":
    main()
