"""Is one set of weights really ahead of another on the share of the gap closed? A paired
bootstrap over the genuine comparisons of ``train.edc``'s LFW sets (folds 1-5: one pair per
comparison, so resampling comparisons is resampling independent units), from two of its
measurement caches; the comparison threshold stays the one fixed on the impostors.

    python -m train.gap_bootstrap runs/edc/<weights A> runs/edc/<weights B> [--resamples 300]

Prints, per set, each cache's share of the gap closed and the spread of their difference.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facegate.evaluation import Method
from facegate.evaluation.metrics import edc, gap_share, perfect_edc, random_pauc

from .edc import _recognizer, lfw_comparisons


def share_of_gap(genuine: np.ndarray, pair_quality: np.ndarray, threshold: float, limit: float,
                 random_repeats: int = 20, seed: int = 0) -> float:
    """(random - method) / (random - perfect) pAUC, as ``train.edc`` reports it."""
    random_mean, _ = random_pauc(genuine, threshold, limit, random_repeats, seed)
    best = perfect_edc(genuine, threshold).pauc(limit)
    return gap_share(random_mean, edc(genuine, pair_quality, threshold).pauc(limit), best)


def paired_bootstrap(genuine: np.ndarray, qualities: list[np.ndarray], threshold: float, *, limit: float = 0.2,
                     resamples: int = 300, seed: int = 0) -> dict:
    """Shares of the gap of several pair-quality orders of the same comparisons, and the
    bootstrap spread of the first minus each other."""
    point = [share_of_gap(genuine, q, threshold, limit) for q in qualities]
    rng = np.random.default_rng(seed)
    draws = []
    for b in range(resamples):
        pick = rng.integers(0, len(genuine), len(genuine))
        draws.append([share_of_gap(genuine[pick], q[pick], threshold, limit, seed=b) for q in qualities])
    draws = np.array(draws)
    diffs = draws[:, :1] - draws[:, 1:]
    return {"share_of_gap": point, "sd": draws.std(0).tolist(),
            "first_minus_other": (diffs.mean(0)).tolist(),
            "first_minus_other_95": np.percentile(diffs, [2.5, 97.5], axis=0).T.tolist()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("caches", type=Path, nargs="+", help="train.edc measurement folders (runs/edc/...)")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--method", default="ensemble", help="method name as train.edc records it")
    parser.add_argument("--views", default="full")
    parser.add_argument("--fmr", type=float, default=1e-3)
    parser.add_argument("--limit", type=float, default=0.2)
    parser.add_argument("--resamples", type=int, default=300)
    args = parser.parse_args(argv)
    recognizer = _recognizer(args.shared)
    measured = [lfw_comparisons(args.shared, cache, args.fmr, recognizer)[0] for cache in args.caches]
    method = Method(args.method, args.views)
    out = {}
    for name in ("natural", "degraded"):
        first = measured[0][name]
        for other in measured[1:]:
            if other[name].captures.names != first.captures.names:
                parser.error(f"{name}: the caches hold different captures; compare measurements of the same sets")
        qualities = [m[name].pair_quality(method) for m in measured]
        out[f"LFW {name}"] = paired_bootstrap(first.genuine, qualities, first.threshold, limit=args.limit,
                                              resamples=args.resamples)
    print(json.dumps({"caches": [str(c) for c in args.caches], "method": str(method), **out}, indent=1))


if __name__ == "__main__":
    main()
