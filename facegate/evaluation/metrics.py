"""Error-versus-discard characteristics and threshold choice: pure functions of arrays.

EDC as in Schlett et al., arXiv 2303.13294 (NIST FATE-Quality, ISO/IEC 29794-5 work): the
comparison threshold is fixed once, on all comparisons, at a starting FMR (or FNMR); genuine
comparisons are then discarded in order of their *pairwise* quality, the lower quality of the
two captures, and FNMR is recomputed on the rest. Captures that tie in quality are discarded
together, so the curve is a step function evaluated at every distinct quality value; the
partial area under it up to a discard limit (pAUC) is the one-number summary. Two reference
curves frame a method: ``random`` (quality carries no information: FNMR stays where it
started, on average) and ``perfect`` (false non-matches are discarded first).

All functions take plain arrays, so any recognizer and any quality measure can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..errors import ConfigError

__all__ = [
    "EDC",
    "FNMRTarget",
    "calibrate_for_fnmr",
    "MIN_REJECTED_FOR_CALIBRATION",
    "min_genuine_for_fnmr",
    "wilson_interval",
    "comparison_threshold",
    "edc",
    "false_match_rate",
    "false_non_match_rate",
    "pair_scores",
    "paired_bootstrap",
    "pairwise_quality",
    "perfect_edc",
    "random_pauc",
    "share_of_gap",
    "threshold_for_reject_rate",
]


def false_match_rate(impostor: np.ndarray, threshold: float) -> float:
    """Share of impostor comparisons that match: a comparison matches when its score is
    strictly above the threshold."""
    impostor = np.asarray(impostor, dtype=np.float64)
    return float(np.mean(impostor > threshold)) if len(impostor) else 0.0


def false_non_match_rate(genuine: np.ndarray, threshold: float) -> float:
    genuine = np.asarray(genuine, dtype=np.float64)
    return float(np.mean(genuine <= threshold)) if len(genuine) else 0.0


def comparison_threshold(
    genuine: np.ndarray | None = None,
    impostor: np.ndarray | None = None,
    *,
    fmr: float | None = None,
    fnmr: float | None = None,
) -> float:
    """The comparison-score threshold at a starting FMR (from impostor scores; the lowest
    threshold whose FMR does not exceed ``fmr``) or at a starting FNMR (from genuine scores;
    the highest threshold whose FNMR does not exceed ``fnmr``). Exactly one target."""
    if (fmr is None) == (fnmr is None):
        raise ConfigError("give exactly one of fmr or fnmr")
    if fmr is not None:
        scores = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
        if not len(scores) or not 0 <= fmr < 1:
            raise ConfigError("fmr needs impostor scores and a value in [0, 1)")
        allowed = int(np.floor(fmr * len(scores) + 1e-9))
        return float(scores[allowed])  # `allowed` scores lie strictly above it (ties: fewer)
    scores = np.sort(np.asarray(genuine, dtype=np.float64))
    if not len(scores) or not 0 <= fnmr < 1:
        raise ConfigError("fnmr needs genuine scores and a value in [0, 1)")
    allowed = int(np.floor(fnmr * len(scores) + 1e-9))
    return float(np.nextafter(scores[allowed], -np.inf))  # at most `allowed` scores at or below it


def pair_scores(embeddings: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``(N, D)`` unit embeddings and ``(P, 2)`` index pairs -> ``(P,)`` cosine similarities."""
    pairs = np.asarray(pairs, dtype=int).reshape(-1, 2)
    return np.sum(embeddings[pairs[:, 0]] * embeddings[pairs[:, 1]], 1).astype(np.float64)


def pairwise_quality(quality: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``(N,)`` capture qualities and ``(P, 2)`` index pairs -> ``(P,)`` lower quality of each pair."""
    quality = np.asarray(quality, dtype=np.float64)
    pairs = np.asarray(pairs)
    return np.minimum(quality[pairs[:, 0]], quality[pairs[:, 1]])


@dataclass(frozen=True)
class EDC:
    """One error-versus-discard curve.

    Attributes:
        discard: ``(K,)`` increasing fractions of genuine comparisons discarded, from 0.
        fnmr: ``(K,)`` FNMR of the comparisons kept at each discard fraction (a step
            function: it holds until the next discard point).
        threshold: the comparison-score threshold, fixed before discarding.
    """

    discard: np.ndarray
    fnmr: np.ndarray
    threshold: float

    @property
    def start(self) -> float:
        return float(self.fnmr[0])

    def at(self, fraction: float) -> float:
        """FNMR after discarding ``fraction`` (the last step at or before it)."""
        k = int(np.searchsorted(self.discard, fraction + 1e-12, side="right")) - 1
        return float(self.fnmr[max(k, 0)])

    def pauc(self, limit: float = 0.2) -> float:
        """Area under the step curve from 0 to ``limit`` discarded."""
        edges = np.append(self.discard, np.inf)
        widths = np.clip(np.minimum(edges[1:], limit) - edges[:-1], 0.0, None)
        return float(np.sum(widths * self.fnmr))

    def to_dict(self, limit: float = 0.2) -> dict:
        return {"threshold": self.threshold, "start_fnmr": self.start, f"pauc@{limit:g}": self.pauc(limit),
                "discard": self.discard.tolist(), "fnmr": self.fnmr.tolist()}


def edc(genuine: np.ndarray, quality: np.ndarray, threshold: float) -> EDC:
    """EDC of ``(G,)`` genuine comparison scores discarded in order of their ``(G,)``
    pairwise qualities (lowest first), at a fixed comparison ``threshold``."""
    genuine = np.asarray(genuine, dtype=np.float64)
    quality = np.nan_to_num(np.asarray(quality, dtype=np.float64), nan=-np.inf)
    if genuine.shape != quality.shape or genuine.ndim != 1 or not len(genuine):
        raise ConfigError("genuine scores and qualities must be non-empty arrays of the same length")
    order = np.argsort(quality, kind="stable")
    q, miss = quality[order], (genuine[order] <= threshold).astype(np.float64)
    n = len(q)
    # discard points: before the first capture of each distinct quality value
    starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
    misses_from = np.cumsum(miss[::-1])[::-1]  # false non-matches among positions >= k
    discard = starts / n
    fnmr = misses_from[starts] / (n - starts)
    return EDC(discard, fnmr, float(threshold))


def perfect_edc(genuine: np.ndarray, threshold: float, found: np.ndarray | None = None) -> EDC:
    """The best any quality measure can do: discard the lowest comparison scores first, so
    every false non-match goes before any match.

    ``found``: ``(G,)`` whether both captures of each comparison have a face. Given, the
    comparisons without one go first as one tie, as every quality measure of a gate that
    rejects ``no_face`` must put them (it has no score to order them by): the ceiling such a
    measure can reach. Its FNMR stays at the start until the whole tie is discarded, so
    where detection fails often (heavily degraded copies) this ceiling lies well short of
    the unconstrained perfect order.
    """
    genuine = np.asarray(genuine, dtype=np.float64)
    # by rank, not by score: equal scores (an unreadable capture's zero embedding gives every
    # comparison of it the same one) are on the same side of the threshold, and the perfect
    # order may discard them one at a time
    rank = np.empty(len(genuine))
    rank[np.argsort(genuine, kind="stable")] = np.arange(len(genuine))
    if found is None:
        return edc(genuine, rank, threshold)
    return edc(genuine, np.where(np.asarray(found, dtype=bool), rank, -np.inf), threshold)


def random_pauc(genuine: np.ndarray, threshold: float, limit: float = 0.2, repeats: int = 50, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the pAUC of random discard orders."""
    rng = np.random.default_rng(seed)
    values = [edc(genuine, rng.random(len(genuine)), threshold).pauc(limit) for _ in range(repeats)]
    return float(np.mean(values)), float(np.std(values))


def gap_share(random: float, method: float, reference: float) -> float:
    """Share of the pAUC gap between random order and a reference order (perfect, or the
    ceiling) that a method's order closes: 1 is as good as the reference, 0 no better than chance."""
    return (random - method) / max(random - reference, 1e-12)


def share_of_gap(genuine: np.ndarray, pair_quality: np.ndarray, threshold: float, limit: float,
                 random_repeats: int = 20, seed: int = 0) -> float:
    """(random - method) / (random - perfect) pAUC, as ``train.edc`` reports it."""
    random_mean, _ = random_pauc(genuine, threshold, limit, random_repeats, seed)
    best = perfect_edc(genuine, threshold).pauc(limit)
    return gap_share(random_mean, edc(genuine, pair_quality, threshold).pauc(limit), best)


def paired_bootstrap(genuine: np.ndarray, qualities: list[np.ndarray], threshold: float, *, limit: float = 0.2,
                     resamples: int = 300, seed: int = 0, clusters: np.ndarray | None = None) -> dict:
    """Shares of the gap of several pair-quality orders of the same comparisons, each one's 95%
    bootstrap interval, and the spread of the first minus each other. ``clusters``: a unit per
    comparison (its person), resampled whole (one person's comparisons are not independent:
    one bad photo enters several); without it, comparisons are resampled one by one."""
    point = [share_of_gap(genuine, q, threshold, limit) for q in qualities]
    rng = np.random.default_rng(seed)
    members = None if clusters is None else [np.flatnonzero(clusters == u) for u in np.unique(clusters)]
    draws = []
    for b in range(resamples):
        if members is None:
            pick = rng.integers(0, len(genuine), len(genuine))
        else:
            pick = np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
        draws.append([share_of_gap(genuine[pick], q[pick], threshold, limit, seed=b) for q in qualities])
    draws = np.array(draws)
    diffs = draws[:, :1] - draws[:, 1:]
    return {"share_of_gap": point, "sd": draws.std(0).tolist(),
            "first_minus_other": (diffs.mean(0)).tolist(),
            "share_of_gap_95": np.percentile(draws, [2.5, 97.5], axis=0).T.tolist(),
            "first_minus_other_95": np.percentile(diffs, [2.5, 97.5], axis=0).T.tolist()}


@dataclass(frozen=True)
class FNMRTarget:
    """A quality threshold chosen for a target FNMR, with what to expect at it.

    Attributes:
        quality_threshold: accept captures whose quality is at or above this.
        comparison_threshold: the recognizer's threshold (fixed at ``fmr``).
        fnmr: FNMR of the genuine comparisons whose two captures are both accepted.
        fmr: FMR of the impostor comparisons whose two captures are both accepted.
        reject_rate: share of captures rejected (quality below the threshold).
        genuine_kept: genuine comparisons left (how much the FNMR estimate rests on).
        reached: whether the target FNMR was reached at all.
    """

    quality_threshold: float
    comparison_threshold: float
    fnmr: float
    fmr: float
    reject_rate: float
    genuine_kept: int
    reached: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def calibrate_for_fnmr(
    quality: np.ndarray,
    genuine_pairs: np.ndarray,
    genuine_scores: np.ndarray,
    impostor_pairs: np.ndarray,
    impostor_scores: np.ndarray,
    *,
    target_fnmr: float,
    fmr: float = 1e-3,
    max_reject_rate: float = 1.0,
) -> FNMRTarget:
    """The lowest quality threshold at which genuine comparisons between accepted captures
    fail no more than ``target_fnmr`` of the time, with the comparison threshold fixed at
    ``fmr`` on all impostor comparisons (before any rejection). Rejecting fewer captures
    is preferred, so the first threshold that reaches the target is taken; when none does
    within ``max_reject_rate``, the one with the lowest FNMR is returned with
    ``reached=False``."""
    quality = np.nan_to_num(np.asarray(quality, dtype=np.float64), nan=-np.inf)
    threshold = comparison_threshold(impostor=impostor_scores, fmr=fmr)
    if not len(genuine_pairs):
        raise ConfigError("no genuine comparisons to calibrate on")
    candidates = np.r_[-np.inf, np.unique(quality[np.isfinite(quality)])]
    # every rate below is a suffix count over comparisons sorted by pairwise quality
    kept_genuine, misses = _kept_counts(pairwise_quality(quality, genuine_pairs),
                                        np.asarray(genuine_scores, dtype=np.float64) <= threshold, candidates)
    kept_impostor, matches = _kept_counts(pairwise_quality(quality, impostor_pairs) if len(impostor_pairs) else np.zeros(0),
                                          np.asarray(impostor_scores, dtype=np.float64) > threshold, candidates)
    reject = np.searchsorted(np.sort(quality), candidates, side="left") / len(quality)
    usable = (reject <= max_reject_rate) & (kept_genuine > 0)
    fnmr = np.where(kept_genuine > 0, misses / np.maximum(kept_genuine, 1), np.inf)
    fmr_kept = np.where(kept_impostor > 0, matches / np.maximum(kept_impostor, 1), 0.0)
    reached = usable & (fnmr <= target_fnmr)
    k = int(np.argmax(reached)) if reached.any() else int(np.argmin(np.where(usable, fnmr, np.inf)))
    return FNMRTarget(float(candidates[k]), threshold, float(fnmr[k]), float(fmr_kept[k]), float(reject[k]),
                      int(kept_genuine[k]), bool(reached[k]))


def _kept_counts(pair_quality: np.ndarray, flagged: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold: how many comparisons have pairwise quality at or above it, and
    how many of those are flagged."""
    order = np.argsort(pair_quality, kind="stable")
    q, f = pair_quality[order], flagged[order].astype(np.int64)
    first = np.searchsorted(q, thresholds, side="left")
    suffix = np.r_[np.cumsum(f[::-1])[::-1], 0]
    return len(q) - first, suffix[first]


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% (``z``) Wilson score interval of a proportion: how far the rate seen on a sample
    may be from the rate on captures like these. Unlike the normal approximation it stays
    inside [0, 1] and is honest at 0 successes (its upper end is then about 3.8 / n)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


#: Below this many captures under the threshold, ``calibrate --reject-rate`` refuses: the
#: threshold would be set by fewer faces than this, and the share of new captures it
#: rejects could be half or twice the one asked for (95% Wilson interval of 5 in 50: 4-21%).
MIN_REJECTED_FOR_CALIBRATION = 5


def min_genuine_for_fnmr(target_fnmr: float) -> int:
    """Genuine comparisons needed before a target FNMR can be claimed at all: with none
    failing among n, the 95% upper bound of the FNMR is about 3 / n (the rule of three),
    so fewer than 3 / target cannot show the target is met even when nothing fails. A target
    of 0 cannot be shown by any sample: none is asked for (the interval is still printed)."""
    return int(np.ceil(3.0 / target_fnmr)) if target_fnmr > 0 else 0


def threshold_for_reject_rate(scores: Iterable[float], reject_rate: float) -> float:
    """The lowest threshold that rejects at least ``reject_rate`` of ``scores`` for low quality
    (a capture is rejected when its score is below the threshold)."""
    values = np.sort(np.asarray([s for s in scores if s is not None], dtype=np.float64))
    if values.size == 0:
        raise ConfigError("no scored faces to calibrate on")
    if not 0.0 <= reject_rate < 1.0:
        raise ConfigError(f"reject rate must be in [0, 1), got {reject_rate}")
    k = int(np.ceil(reject_rate * values.size))
    if k == 0:
        return float(values[0])
    return float(np.nextafter(values[k - 1], np.inf))
