"""Which failed comparisons does a quality leave in? On ``train.edc``'s LFW degraded set (a
clean photo against a degraded copy of its pair's other photo), the genuine comparisons that
fail at the threshold fixed at FMR 1e-3, and how many of them the lowest ``--discard`` share of
pairs by each method takes out, by the copy's degradation, and how many of those failures
fail with both photos clean as well (the copy did not cause them). Where a method loses the
share of the gap closed, and to what.

    python -m train.edc_misses runs/edc/<weights> [--discard 0.2]

Methods: the ensemble with full views and the FROQ observer, those of them the folder holds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facegate.evaluation import OBSERVER, Method

from .edc import _recognizer, lfw_comparisons

METHODS = (Method("ensemble", "full"), OBSERVER)


def misses_by_kind(kinds: np.ndarray, genuine: np.ndarray, threshold: float, qualities: dict[str, np.ndarray],
                   discard: float = 0.2, failed_clean: np.ndarray | None = None) -> dict:
    """Per degradation kind: pairs, failed pairs, and for each method the failures among its
    lowest ``discard`` share of pairs (``caught``) and the pairs that match among them
    (``wasted``). Ties in quality keep the pairs' order (as no face found: all tied lowest).
    ``failed_clean``: which pairs fail with both photos clean too (the natural set); their
    count among the failures (``failed_clean_too``) says how many the copy did not cause."""
    failed = genuine < threshold
    cut = int(round(discard * len(genuine)))
    lowest = {}
    for name, quality in qualities.items():
        low = np.zeros(len(genuine), bool)
        low[np.argsort(quality, kind="stable")[:cut]] = True
        lowest[name] = low
    out = {}
    for kind in [*sorted(set(kinds)), "all"]:
        mask = np.ones(len(kinds), bool) if kind == "all" else kinds == kind
        out[kind] = {"pairs": int(mask.sum()), "failed": int((failed & mask).sum()),
                     **({"failed_clean_too": int((failed & failed_clean & mask).sum())} if failed_clean is not None
                        else {}),
                     **{name: {"caught": int((failed & low & mask).sum()), "wasted": int((~failed & low & mask).sum())}
                        for name, low in lowest.items()}}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path, help="a train.edc measurement folder (runs/edc/...)")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--fmr", type=float, default=1e-3)
    parser.add_argument("--discard", type=float, default=0.2)
    args = parser.parse_args(argv)
    sets, meta = lfw_comparisons(args.shared, args.cache, args.fmr, _recognizer(args.shared))
    degraded = sets["degraded"]
    kinds = np.array([r["kind"] for r in meta["records"] if r["genuine"]])
    methods = [m for m in METHODS if m in degraded.captures.quality]
    if not methods:
        parser.error(f"{args.cache}: no measurement of {', '.join(map(str, METHODS))} there; make it with train.edc")
    table = misses_by_kind(kinds, degraded.genuine, degraded.threshold,
                           {str(m): degraded.pair_quality(m) for m in methods}, args.discard,
                           failed_clean=sets["natural"].genuine < sets["natural"].threshold)
    print(json.dumps({"cache": str(args.cache), "threshold": degraded.threshold, "discard": args.discard,
                      "by_kind": table}, indent=1))


if __name__ == "__main__":
    main()
