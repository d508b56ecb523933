"""Which failed comparisons does a quality leave in? On ``train.edc``'s LFW degraded set (a
clean photo against a degraded copy of its pair's other photo), the genuine comparisons that
fail at the threshold fixed at FMR 1e-3, and how many of them the lowest ``--discard`` share of
pairs by each method takes out, by the copy's degradation, and how many of those failures
fail with both photos clean as well (the copy did not cause them). Where a method loses the
share of the gap closed, and to what. On the natural set, the same count, and the failures
one method takes out and the other leaves in, each with the photo that method found worse and
that photo's percentile under both (where the ensemble loses to the observer, and on what).

    python -m train.studies.edc_misses runs/edc/<weights> [--discard 0.2]

Methods: the ensemble with full views and the FROQ observer, those of them the folder holds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facegate.evaluation import OBSERVER, Method
from facegate.evaluation.metrics import pairwise_quality

from ..edc import lfw_comparisons

METHODS = (Method("ensemble", "full"), OBSERVER)


def lowest_share(quality: np.ndarray, discard: float) -> np.ndarray:
    """The lowest ``discard`` share of ``quality`` (ties keep their order, as the EDC takes them)."""
    low = np.zeros(len(quality), bool)
    low[np.argsort(quality, kind="stable")[:int(round(discard * len(quality)))]] = True
    return low


def misses_by_kind(kinds: np.ndarray, genuine: np.ndarray, threshold: float, qualities: dict[str, np.ndarray],
                   discard: float = 0.2, failed_clean: np.ndarray | None = None) -> dict:
    """Per degradation kind: pairs, failed pairs, and for each method the failures among its
    lowest ``discard`` share of pairs (``caught``) and the pairs that match among them
    (``wasted``). Ties in quality keep the pairs' order (as no face found: all tied lowest).
    ``failed_clean``: which pairs fail with both photos clean too (the natural set); their
    count among the failures (``failed_clean_too``) says how many the copy did not cause."""
    failed = genuine < threshold
    lowest = {name: lowest_share(quality, discard) for name, quality in qualities.items()}
    out = {}
    for kind in [*sorted(set(kinds)), "all"]:
        mask = np.ones(len(kinds), bool) if kind == "all" else kinds == kind
        out[kind] = {"pairs": int(mask.sum()), "failed": int((failed & mask).sum()),
                     **({"failed_clean_too": int((failed & failed_clean & mask).sum())} if failed_clean is not None
                        else {}),
                     **{name: {"caught": int((failed & low & mask).sum()), "wasted": int((~failed & low & mask).sum())}
                        for name, low in lowest.items()}}
    return out


def caught_by_one_only(genuine: np.ndarray, threshold: float, pairs: np.ndarray, names: list[str],
                       qualities: dict[str, np.ndarray], discard: float = 0.2) -> dict:
    """For each method (``qualities``: per capture, a pair's quality its lower one), the failed
    pairs among its lowest ``discard`` share that no other method's takes out: the photo it
    found worse and that photo's percentile among all captures under every method (0: lowest)."""
    low = {name: lowest_share(pairwise_quality(q, pairs), discard) for name, q in qualities.items()}
    rank = {name: np.argsort(np.argsort(q, kind="stable"), kind="stable") / max(1, len(q) - 1)
            for name, q in qualities.items()}
    failed = genuine < threshold
    discarded_by = np.sum(list(low.values()), 0)  # how many methods discard each pair
    out = {}
    for name in qualities:
        alone = failed & low[name] & (discarded_by == 1)
        rows = []
        for a, b in pairs[alone]:
            worse = a if qualities[name][a] <= qualities[name][b] else b
            rows.append({"photo": names[worse], **{f"percentile {o}": round(float(rank[o][worse]), 3)
                                                   for o in qualities}})
        out[name] = rows
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cache", type=Path, help="a train.edc measurement folder (runs/edc/...)")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--fmr", type=float, default=1e-3)
    parser.add_argument("--discard", type=float, default=0.2)
    args = parser.parse_args(argv)
    sets, meta = lfw_comparisons(args.shared, args.cache, args.fmr)
    degraded, natural = sets["degraded"], sets["natural"]
    kinds = np.array([r["kind"] for r in meta["records"] if r["genuine"]])
    methods = [m for m in METHODS if m in degraded.captures.quality]
    if not methods:
        parser.error(f"{args.cache}: no measurement of {', '.join(map(str, METHODS))} there; make it with train.edc")
    table = misses_by_kind(kinds, degraded.genuine, degraded.threshold,
                           {str(m): degraded.pair_quality(m) for m in methods}, args.discard,
                           failed_clean=natural.genuine < natural.threshold)
    qualities = {str(m): natural.captures.quality[m] for m in methods}
    natural_table = misses_by_kind(np.full(len(natural.genuine), "natural"), natural.genuine, natural.threshold,
                                   {name: natural.pair_quality(m) for name, m in zip(qualities, methods)},
                                   args.discard)["natural"]
    only = caught_by_one_only(natural.genuine, natural.threshold, natural.pairs, natural.captures.names, qualities,
                              args.discard)
    print(json.dumps({"cache": str(args.cache), "threshold": degraded.threshold, "discard": args.discard,
                      "by_kind": table, "natural": {"threshold": natural.threshold, **natural_table,
                                                    "caught_by_one_only": only}}, indent=1))


if __name__ == "__main__":
    main()
