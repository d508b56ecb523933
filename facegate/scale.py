"""The score scale fg-utility-v2: a score of s means about s% chance that a genuine
comparison of the capture with a good reference photo succeeds at FMR 1e-3 (with the
recognizer that made the labels).

The networks' raw output is mapped to that chance by isotonic regression (pool adjacent
violators) on captures of validation people, each weighted by how many comparisons its
observed success rate comes from; the map is stored as knots in ``spec.json``
(:attr:`facegate.spec.ScorerSpec.score_calibration`), so inference needs nothing else.

The same fit refits the scale for a user's recognizer on the user's people
(``facegate calibrate --refit-scale``, :func:`facegate.calibration.refit_scale`): then the
knots map the weights' score to the user's chance and live in the policy
(:attr:`facegate.policy.Policy.score_map`). Runtime code: numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GOOD_REFERENCE", "calibration_error", "fit_knots", "good_references", "isotonic_knots",
           "observed_success", "reliability_table"]

#: A clean photo is a good reference when it matches at least this share of its identity's
#: other photos (the labels' definition, train.labels).
GOOD_REFERENCE = 0.5


def _pool_adjacent_violators(y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blocks (start index, value, weight) of the weighted non-decreasing fit to ``y``."""
    starts, values, weights = [], [], []
    for i, (yi, wi) in enumerate(zip(y, w)):
        starts.append(i)
        values.append(float(yi))
        weights.append(float(wi))
        while len(values) > 1 and values[-2] > values[-1]:
            v2, w2 = values.pop(), weights.pop()
            starts.pop()
            v1, w1 = values[-1], weights[-1]
            values[-1] = (v1 * w1 + v2 * w2) / (w1 + w2)
            weights[-1] = w1 + w2
    return np.array(starts), np.array(values), np.array(weights)


#: Knots stay this far from a chance of 0 or 1.
CHANCE_FLOOR = 1e-3


def isotonic_knots(raw: np.ndarray, observed: np.ndarray, weight: np.ndarray | None = None,
                   min_weight: float = 0.0) -> tuple[tuple[float, float], ...]:
    """Knots ``(raw, chance)`` of the monotone map: each block of the isotonic fit becomes one
    knot at its weighted mean raw value; blocks lighter than ``min_weight`` are merged into
    their neighbour first, so a knot stands on enough comparisons to mean something."""
    raw, observed = np.asarray(raw, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    weight = np.ones_like(raw) if weight is None else np.asarray(weight, dtype=np.float64)
    order = np.argsort(raw, kind="stable")
    raw, observed, weight = raw[order], observed[order], weight[order]
    starts, values, weights = _pool_adjacent_violators(observed, weight)
    bounds = list(starts) + [len(raw)]
    blocks = [(bounds[k], bounds[k + 1]) for k in range(len(starts))]
    merged: list[list[int]] = []
    for k, (a, b) in enumerate(blocks):
        if merged and weights[k] < min_weight:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    if len(merged) > 1 and weight[merged[-1][0]:merged[-1][1]].sum() < min_weight:
        merged[-2][1] = merged.pop()[1]
    knots = []
    for a, b in merged:
        w = weight[a:b]
        x = float(np.average(raw[a:b], weights=w))
        y = float(np.average(observed[a:b], weights=w))
        # a chance of exactly 0 or 1 is never known from a finite sample (and the map's tails
        # need room to bend towards them)
        y = min(max(y, CHANCE_FLOOR), 1 - CHANCE_FLOOR)
        if knots and (x <= knots[-1][0] or y <= knots[-1][1]):  # merging can undo monotonicity by a hair
            continue  # strictly increasing: no two captures tie unless their raw outputs do
        knots.append((round(x, 6), round(y, 6)))
    return tuple(knots)


def fit_knots(raw: np.ndarray, observed: np.ndarray, weight: np.ndarray) -> tuple[tuple[float, float], ...]:
    """The scale's knots as the shipped scale and a refit both fit them: :func:`isotonic_knots`
    with each knot standing on at least 50 comparisons and at least a 40th of them all (so
    the map has at most about 40 steps, none resting on a handful of comparisons)."""
    weight = np.asarray(weight, dtype=np.float64)
    return isotonic_knots(raw, observed, weight, min_weight=max(50.0, float(weight.sum()) / 40))


def reliability_table(scores: np.ndarray, observed: np.ndarray, weight: np.ndarray | None = None,
                      edges=tuple(range(0, 101, 10))) -> list[dict]:
    """Predicted against observed, per score bin: captures, comparisons, mean score, and the
    observed share of comparisons that succeeded."""
    scores, observed = np.asarray(scores, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    weight = np.ones_like(scores) if weight is None else np.asarray(weight, dtype=np.float64)
    rows = []
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        last = k == len(edges) - 2
        inside = (scores >= low) & ((scores <= high) if last else (scores < high))
        if not inside.any():
            rows.append({"bin": f"{low}-{high}", "captures": 0, "comparisons": 0, "predicted": None,
                         "observed": None})
            continue
        w = weight[inside]
        rows.append({"bin": f"{low}-{high}", "captures": int(inside.sum()), "comparisons": int(round(w.sum())),
                     "predicted": round(float(np.average(scores[inside], weights=w)), 1),
                     "observed": round(100 * float(np.average(observed[inside], weights=w)), 1)})
    return rows


def calibration_error(scores: np.ndarray, observed: np.ndarray, weight: np.ndarray | None = None,
                      edges=tuple(range(0, 101, 10))) -> float:
    """Expected calibration error of a 0-100 scale, in chance (0-1): the comparison-weighted
    mean over :func:`reliability_table`'s bins of |predicted - observed|."""
    rows = [r for r in reliability_table(scores, observed, weight, edges) if r["captures"]]
    total = sum(r["comparisons"] for r in rows)
    if not total:
        return 0.0
    return sum(r["comparisons"] * abs(r["predicted"] - r["observed"]) for r in rows) / total / 100.0


def good_references(emb: np.ndarray, identity: np.ndarray, threshold: float) -> np.ndarray:
    """Which clean photos are good references: they match (cosine >= ``threshold``) at least
    :data:`GOOD_REFERENCE` of their identity's other photos."""
    good = np.zeros(len(emb), dtype=bool)
    for name in np.unique(identity):
        idx = np.flatnonzero(identity == name)
        if len(idx) < 2:
            continue
        matches = emb[idx] @ emb[idx].T >= threshold
        np.fill_diagonal(matches, False)
        good[idx] = matches.sum(1) / (len(idx) - 1) >= GOOD_REFERENCE
    return good


def observed_success(measured, threshold: float, sources: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each capture of ``measured`` (:class:`facegate.evaluation.MeasuredCaptures`) with
    a face, the share of its genuine comparisons with good references of its person that
    succeed at ``threshold``; returns (capture indices, observed share, comparisons).

    ``sources``: the photo each capture was made from, where some are degraded copies of
    others: only captures that are their own source are references, and a copy is never
    compared with its own original. Default: every capture is a photo of its own."""
    names = np.asarray(measured.names, dtype=object)
    source = names if sources is None else np.asarray(sources, dtype=object)
    clean = np.flatnonzero(source == names)
    good = np.zeros(len(names), dtype=bool)
    usable = clean[measured.found[clean]]
    good[usable] = good_references(measured.embeddings[usable], measured.identities[usable], threshold)
    idx, share, count = [], [], []
    for i in np.flatnonzero(measured.found):
        refs = np.flatnonzero(good & (measured.identities == measured.identities[i]) & (source != source[i]))
        if len(refs):
            idx.append(i)
            share.append(float(np.mean(measured.embeddings[refs] @ measured.embeddings[i] >= threshold)))
            count.append(len(refs))
    return np.array(idx, dtype=int), np.array(share), np.array(count)
