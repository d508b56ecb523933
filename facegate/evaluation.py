"""Does discarding low-quality captures make recognition fail less, and where should the
threshold go? Error-versus-discard characteristics and FNMR-targeted calibration.

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

import csv
import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "EDC",
    "comparison_threshold",
    "edc",
    "perfect_edc",
    "random_pauc",
    "pairwise_quality",
    "FNMRTarget",
    "calibrate_for_fnmr",
    "false_non_match_rate",
    "false_match_rate",
    "BASELINES",
    "MeasuredCaptures",
    "measure_captures",
    "impostor_comparisons",
    "edc_report",
    "plot_edc",
    "labelled_captures",
    "laplacian_variance",
    "pair_scores",
    "held_out_check",
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
        raise ValueError("give exactly one of fmr or fnmr")
    if fmr is not None:
        scores = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
        if not len(scores) or not 0 <= fmr < 1:
            raise ValueError("fmr needs impostor scores and a value in [0, 1)")
        allowed = int(np.floor(fmr * len(scores) + 1e-9))
        return float(scores[allowed])  # `allowed` scores lie strictly above it (ties: fewer)
    scores = np.sort(np.asarray(genuine, dtype=np.float64))
    if not len(scores) or not 0 <= fnmr < 1:
        raise ValueError("fnmr needs genuine scores and a value in [0, 1)")
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
        raise ValueError("genuine scores and qualities must be non-empty arrays of the same length")
    order = np.argsort(quality, kind="stable")
    q, miss = quality[order], (genuine[order] <= threshold).astype(np.float64)
    n = len(q)
    # discard points: before the first capture of each distinct quality value
    starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
    misses_from = np.cumsum(miss[::-1])[::-1]  # false non-matches among positions >= k
    discard = starts / n
    fnmr = misses_from[starts] / (n - starts)
    return EDC(discard, fnmr, float(threshold))


def perfect_edc(genuine: np.ndarray, threshold: float) -> EDC:
    """The best any quality measure can do: discard the lowest comparison scores first, so
    every false non-match goes before any match."""
    return edc(genuine, genuine, threshold)


def random_pauc(genuine: np.ndarray, threshold: float, limit: float = 0.2, repeats: int = 50, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the pAUC of random discard orders."""
    rng = np.random.default_rng(seed)
    values = [edc(genuine, rng.random(len(genuine)), threshold).pauc(limit) for _ in range(repeats)]
    return float(np.mean(values)), float(np.std(values))


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
        raise ValueError("no genuine comparisons to calibrate on")
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


# -- measuring captures: quality by every method, and embeddings, in one pass ----------------

#: Baselines a user would try first, each a quality per capture (higher is better).
BASELINES = ("MTCNN probability", "face size (px)", "Laplacian variance")


@dataclass
class MeasuredCaptures:
    """What the evaluation needs of each of N captures.

    Attributes:
        names: ``(N,)`` capture names (paths).
        identities: ``(N,)`` identity labels.
        found: ``(N,)`` whether the detector found a face; every method gives captures
            without one the lowest quality (the gate would reject them as ``no_face``), and
            the recognizer embeds them at the average landmark position instead.
        embeddings: ``(N, D)`` unit vectors from the recognizer.
        landmarks: ``(N, 5, 2)`` landmarks of the primary face (NaN where none).
        quality: method name -> ``(N,)`` quality, higher is better, ``-inf`` where no face.
        seconds: method name -> seconds spent computing it (detection counted separately).
    """

    names: list[str]
    identities: np.ndarray
    found: np.ndarray
    embeddings: np.ndarray
    landmarks: np.ndarray
    quality: dict[str, np.ndarray]
    seconds: dict[str, float]

    def subset(self, idx) -> "MeasuredCaptures":
        idx = np.asarray(idx)
        return MeasuredCaptures([self.names[i] for i in idx], self.identities[idx], self.found[idx],
                                self.embeddings[idx], self.landmarks[idx],
                                {m: q[idx] for m, q in self.quality.items()}, dict(self.seconds))

    def concat(self, other: "MeasuredCaptures") -> "MeasuredCaptures":
        return MeasuredCaptures(self.names + other.names, np.concatenate([self.identities, other.identities]),
                                np.concatenate([self.found, other.found]),
                                np.concatenate([self.embeddings, other.embeddings]),
                                np.concatenate([self.landmarks, other.landmarks]),
                                {m: np.concatenate([q, other.quality[m]]) for m, q in self.quality.items()},
                                {m: self.seconds.get(m, 0.0) + other.seconds.get(m, 0.0)
                                 for m in set(self.seconds) | set(other.seconds)})

    def save(self, path) -> None:
        np.savez_compressed(path, names=np.array(self.names), identities=self.identities, found=self.found,
                            embeddings=self.embeddings, landmarks=self.landmarks, methods=np.array(list(self.quality)),
                            quality=np.stack(list(self.quality.values())),
                            seconds_keys=np.array(list(self.seconds)), seconds=np.array(list(self.seconds.values())))

    @classmethod
    def load(cls, path) -> "MeasuredCaptures":
        data = np.load(path, allow_pickle=False)
        methods = [str(m) for m in data["methods"]]
        return cls([str(n) for n in data["names"]], data["identities"], data["found"], data["embeddings"],
                   data["landmarks"], dict(zip(methods, data["quality"])),
                   dict(zip([str(k) for k in data["seconds_keys"]], data["seconds"].tolist())))


def laplacian_variance(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: the classic sharpness measure."""
    import cv2

    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def measure_captures(images, identities, *, recognizer, weights=None, detector=None, observer=None,
                     views=("none", "full"), baselines: bool = True, batch_size: int = 32,
                     progress=None) -> MeasuredCaptures:
    """Detect, crop, score with every facegate variant and every baseline, and embed.

    Args:
        images: paths (or ``(H, W, 3)`` uint8 RGB arrays) of the captures.
        identities: one label per capture.
        recognizer: a :class:`facegate.recognition.Recognizer` (``embed(images, landmarks)``).
        weights: facegate weights folder (default: shipped).
        detector: a detector (default: MTCNN, as the gate uses).
        observer: optional :class:`facegate.observer.ObserverScorer`, scored as ``"FROQ observer"``.
        views: test-time view settings to score each member and the ensemble with.
        baselines: also measure :data:`BASELINES`.
        progress: called with the number of captures done after each batch.
    """
    import time

    from .detection import MTCNNDetector, choose_primary
    from .errors import ImageError
    from .images import load_rgb
    from .scorer import Scorer

    detector = detector or MTCNNDetector()
    scorers = {v: Scorer(weights, views=v) for v in views}
    spec = next(iter(scorers.values())).spec
    members = spec.members
    methods = [f"{m} ({v})" for v in views for m in members] + [f"ensemble ({v})" for v in views]
    methods += (list(BASELINES) if baselines else []) + (["FROQ observer"] if observer is not None else [])
    n = len(images)
    quality = {m: np.full(n, -np.inf) for m in methods}
    seconds = {m: 0.0 for m in methods}
    seconds["detection"] = 0.0
    found = np.zeros(n, bool)
    landmarks = np.full((n, 5, 2), np.nan)
    embeddings: list[np.ndarray | None] = [None] * n
    pending_no_face: dict[int, np.ndarray | None] = {}
    unreadable: list[str] = []
    landmark_sum, landmark_count = np.zeros((5, 2)), 0

    def tick(name, t0):
        seconds[name] += time.perf_counter() - t0

    for start in range(0, n, batch_size):
        idx, rgbs, faces = [], [], []
        for i in range(start, min(n, start + batch_size)):
            try:
                rgb = images[i] if isinstance(images[i], np.ndarray) else load_rgb(images[i])
            except ImageError as exc:  # it cannot match anything: zero embedding, lowest quality
                unreadable.append(str(exc))
                pending_no_face[i] = None
                continue
            t0 = time.perf_counter()
            face = choose_primary(detector.detect(rgb), rgb.shape)
            tick("detection", t0)
            if face is None:
                pending_no_face[i] = rgb
                continue
            idx.append(i)
            rgbs.append(rgb)
            faces.append(face)
            landmark_sum += face.landmarks / np.array(rgb.shape[1::-1])
            landmark_count += 1
        if idx:
            found[idx] = True
            landmarks[idx] = [f.landmarks for f in faces]
            crops = np.stack([spec.crop(rgb, f.landmarks) for rgb, f in zip(rgbs, faces)])
            for v, scorer in scorers.items():
                t0 = time.perf_counter()
                ensemble, per_member = scorer.score(crops)
                tick(f"ensemble ({v})", t0)
                quality[f"ensemble ({v})"][idx] = ensemble
                for k, m in enumerate(members):
                    quality[f"{m} ({v})"][idx] = per_member[k]
            if baselines:
                quality["MTCNN probability"][idx] = [f.probability for f in faces]
                quality["face size (px)"][idx] = [f.side for f in faces]
                t0 = time.perf_counter()
                quality["Laplacian variance"][idx] = [laplacian_variance(c) for c in crops]
                tick("Laplacian variance", t0)
            if observer is not None:
                t0 = time.perf_counter()
                quality["FROQ observer"][idx] = observer.score(rgbs, [f.landmarks for f in faces])
                tick("FROQ observer", t0)
            for i, e in zip(idx, recognizer.embed(rgbs, [f.landmarks for f in faces])):
                embeddings[i] = e
        if progress is not None:
            progress(min(n, start + batch_size))
    mean_landmarks = landmark_sum / max(1, landmark_count) if landmark_count else _CENTRED_LANDMARKS
    for i, rgb in pending_no_face.items():
        if rgb is not None:
            embeddings[i] = recognizer.embed([rgb], [mean_landmarks * np.array(rgb.shape[1::-1])])[0]
    dim = next((len(e) for e in embeddings if e is not None), 1)
    embeddings = [e if e is not None else np.zeros(dim, np.float32) for e in embeddings]
    for message in unreadable:
        log.warning("skipped: %s", message)
    return MeasuredCaptures([str(x) if not isinstance(x, np.ndarray) else f"#{k}" for k, x in enumerate(images)],
                            np.asarray(identities), found, np.stack(embeddings), landmarks, quality, seconds)


#: Landmarks of a centred frontal face, as fractions of the image width and height.
_CENTRED_LANDMARKS = np.array([[0.38, 0.42], [0.62, 0.42], [0.5, 0.55], [0.41, 0.68], [0.59, 0.68]])


def impostor_comparisons(measured: MeasuredCaptures, rows=None, cols=None, max_comparisons: int = 20_000_000,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every comparison between captures of different identities, as ``(P, 2)`` index pairs
    and ``(P,)`` cosine scores; a seeded random subset when there would be more than
    ``max_comparisons``. By default each unordered pair of all captures once; with ``rows``
    and ``cols`` (index arrays) only comparisons of a ``rows`` capture with a ``cols`` one,
    e.g. enrolled references against probes."""
    emb, ident = measured.embeddings.astype(np.float32), measured.identities
    n = len(ident)
    symmetric = rows is None and cols is None
    rows = np.arange(n) if rows is None else np.asarray(rows)
    cols = np.arange(n) if cols is None else np.asarray(cols)
    pairs, scores = [], []
    for start in range(0, len(rows), 512):
        block = rows[start : start + 512]
        sims = emb[block] @ emb[cols].T
        mask = ident[block, None] != ident[None, cols]
        if symmetric:
            mask &= cols[None, :] > block[:, None]
        r, c = np.nonzero(mask)
        pairs.append(np.stack([block[r], cols[c]], 1).astype(np.int32))
        scores.append(sims[r, c])
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int32)
    scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    if len(scores) > max_comparisons:
        keep = np.sort(np.random.default_rng(seed).choice(len(scores), max_comparisons, replace=False))
        pairs, scores = pairs[keep], scores[keep]
    return pairs, scores


def edc_report(measured: MeasuredCaptures, genuine_pairs: np.ndarray, *, fmr: float | None = 1e-3,
               fnmr: float | None = None, limit: float = 0.2, random_repeats: int = 50,
               impostor_rows=None, impostor_cols=None) -> dict:
    """EDC of every measured method, random order and the perfect reference, on the same
    genuine comparisons, at one comparison threshold (FMR over the impostor comparisons,
    see :func:`impostor_comparisons` for ``impostor_rows``/``impostor_cols``)."""
    genuine_pairs = np.asarray(genuine_pairs)
    genuine = pair_scores(measured.embeddings, genuine_pairs)
    impostor_pairs, impostor = impostor_comparisons(measured, impostor_rows, impostor_cols)
    threshold = (comparison_threshold(impostor=impostor, fmr=fmr) if fnmr is None
                 else comparison_threshold(genuine=genuine, fnmr=fnmr))
    rows, curves = [], {}
    random_mean, random_std = random_pauc(genuine, threshold, limit, random_repeats)
    for method, q in measured.quality.items():
        curve = edc(genuine, pairwise_quality(q, genuine_pairs), threshold)
        curves[method] = curve
        rows.append({"method": method, "pauc": curve.pauc(limit), "relative_to_random": curve.pauc(limit) / random_mean,
                     "fnmr_at_5%": curve.at(0.05), "fnmr_at_10%": curve.at(0.10), "fnmr_at_20%": curve.at(0.20)})
    perfect = perfect_edc(genuine, threshold)
    curves["perfect"] = perfect
    rows.append({"method": "perfect (reference)", "pauc": perfect.pauc(limit), "relative_to_random": perfect.pauc(limit) / random_mean,
                 "fnmr_at_5%": perfect.at(0.05), "fnmr_at_10%": perfect.at(0.10), "fnmr_at_20%": perfect.at(0.20)})
    start = false_non_match_rate(genuine, threshold)
    rows.append({"method": "random order (mean of %d)" % random_repeats, "pauc": random_mean, "pauc_std": random_std,
                 "relative_to_random": 1.0, "fnmr_at_5%": start, "fnmr_at_10%": start, "fnmr_at_20%": start})
    return {
        "captures": len(measured.names),
        "no_face": int((~measured.found).sum()),
        "genuine_comparisons": len(genuine),
        "impostor_comparisons": len(impostor),
        "threshold": threshold,
        "threshold_rule": f"FMR {fmr:g} over all impostor comparisons" if fnmr is None else f"starting FNMR {fnmr:g}",
        "start_fnmr": start,
        "fmr": false_match_rate(impostor, threshold),
        "discard_limit": limit,
        "rows": sorted(rows, key=lambda r: r["pauc"]),
        "curves": curves,
    }


def held_out_check(calibration: MeasuredCaptures, calibration_pairs: np.ndarray, held_out: MeasuredCaptures,
                   held_out_pairs: np.ndarray, *, quality: str, target_fnmr: float, fmr: float = 1e-3,
                   impostors=None) -> dict:
    """Calibrate a quality threshold for ``target_fnmr`` on one set of people and apply it,
    with the comparison threshold, unchanged to another: the FNMR a user will actually get.

    ``impostors(measured) -> (rows, cols)`` restricts the impostor comparisons (see
    :func:`impostor_comparisons`); default: all. The tolerance is the 95% binomial interval
    of an FNMR measured on the held-out genuine comparisons that are kept."""
    def comparisons(measured):
        return impostor_comparisons(measured, *(impostors(measured) if impostors else (None, None)))

    imp_pairs, imp_scores = comparisons(calibration)
    choice = calibrate_for_fnmr(calibration.quality[quality], calibration_pairs,
                                pair_scores(calibration.embeddings, calibration_pairs), imp_pairs, imp_scores,
                                target_fnmr=target_fnmr, fmr=fmr)
    q = held_out.quality[quality]
    scores = pair_scores(held_out.embeddings, held_out_pairs)
    kept = pairwise_quality(q, held_out_pairs) >= choice.quality_threshold
    t_imp_pairs, t_imp = comparisons(held_out)
    kept_imp = pairwise_quality(q, t_imp_pairs) >= choice.quality_threshold
    achieved = false_non_match_rate(scores[kept], choice.comparison_threshold)
    n = int(kept.sum())
    tolerance = 1.96 * np.sqrt(max(target_fnmr * (1 - target_fnmr), 1e-12) / max(n, 1))
    return {
        "method": quality,
        "target_fnmr": target_fnmr,
        "fmr": fmr,
        "calibration": {**choice.to_dict(), "captures": len(calibration.names), "genuine": len(calibration_pairs)},
        "held_out": {
            "captures": len(held_out.names),
            "genuine": len(held_out_pairs),
            "genuine_kept": n,
            "reject_rate": float(np.mean(q < choice.quality_threshold)),
            "fnmr": achieved,
            "fnmr_without_gate": false_non_match_rate(scores, choice.comparison_threshold),
            "fmr": false_match_rate(t_imp[kept_imp], choice.comparison_threshold),
            "tolerance_95": float(tolerance),
            "within_tolerance": bool(abs(achieved - target_fnmr) <= tolerance),
        },
    }


def plot_edc(report: dict, path, title: str = "", methods=None) -> None:
    """Write the EDC plot (needs matplotlib: ``pip install facegate[eval]``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'facegate[eval]'") from exc
    limit = report["discard_limit"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method, curve in report["curves"].items():
        if methods is not None and method not in methods and method != "perfect":
            continue
        x = np.append(curve.discard, 1.0)
        y = np.append(curve.fnmr, curve.fnmr[-1])
        style = {"color": "black", "linestyle": ":"} if method == "perfect" else {}
        ax.step(x, y, where="post", label=method, **style)
    ax.axhline(report["start_fnmr"], color="grey", linestyle="--", linewidth=1, label="random order (expected)")
    ax.axvline(limit, color="grey", linewidth=0.5)
    ax.set_xlim(0, min(1.0, 2 * limit))
    ax.set_xlabel("fraction of genuine comparisons discarded (lowest pairwise quality first)")
    ax.set_ylabel("FNMR at the fixed comparison threshold")
    ax.set_ylim(0, max(0.01, 1.15 * max(float(c.fnmr[c.discard <= 2 * limit].max()) for c in report["curves"].values())))
    ax.set_title(f"{title}\n(threshold: {report['threshold_rule']})", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def labelled_captures(source, pairs_file=None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Captures with identities, and the genuine comparisons to evaluate.

    ``source`` is a folder with one sub-folder per identity (every pair of captures of the
    same identity is a genuine comparison), or, with ``pairs_file``, a CSV with columns
    ``left,right,genuine`` (paths relative to the CSV's folder unless absolute; the
    identity of a capture is its parent folder's name unless ``left_id``/``right_id``
    columns give it). Returns paths, ``(N,)`` identities and ``(G, 2)`` genuine index pairs.
    """
    from pathlib import Path

    from .errors import ConfigError
    from .folder import find_images

    if pairs_file is not None:
        pairs_file = Path(pairs_file)
        paths, ident, index, genuine = [], [], {}, []
        with pairs_file.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"left", "right", "genuine"} <= set(reader.fieldnames):
                raise ConfigError(f"{pairs_file}: needs a header with left,right,genuine columns")
            for row in reader:
                ids = []
                for side in ("left", "right"):
                    p = Path(row[side])
                    p = p if p.is_absolute() else pairs_file.parent / p
                    key = str(p)
                    if key not in index:
                        index[key] = len(paths)
                        paths.append(key)
                        ident.append(row.get(f"{side}_id") or p.parent.name)
                    ids.append(index[key])
                if row["genuine"].strip().lower() in ("1", "true", "yes", "genuine"):
                    genuine.append(ids)
        return paths, np.array(ident), np.array(genuine, dtype=int).reshape(-1, 2)
    root = Path(source)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder (expected one sub-folder per identity)")
    paths = [str(p) for p in find_images(root) if p.parent != root]
    if not paths:
        raise ConfigError(f"{root}: no images in identity sub-folders")
    ident = np.array([Path(p).parent.relative_to(root).as_posix() for p in paths])
    genuine = [(i, j) for i in range(len(paths)) for j in range(i + 1, len(paths)) if ident[i] == ident[j]]
    return paths, ident, np.array(genuine, dtype=int).reshape(-1, 2)
