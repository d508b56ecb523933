"""Choosing the quality threshold, and refitting the score scale, from a user's own captures:
the API behind ``facegate calibrate``. Each function returns the new :class:`Policy` and a report of what
to expect at it; writing the policy file is the caller's choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import ConfigError
from .evaluation import (MIN_REJECTED_FOR_CALIBRATION, FNMRTarget, MeasuredCaptures, Method, calibrate_for_fnmr,
                         comparison_threshold, impostor_comparisons, labelled_captures, measure_captures,
                         min_genuine_for_fnmr, pair_scores, threshold_for_reject_rate, view_name, wilson_interval)
from .gate import Gate
from .images import ImageInput
from .policy import Policy, Status, decide
from .scale import calibration_error, fit_knots, observed_success, reliability_table
from .text import plural

__all__ = ["RejectRateCalibration", "FNMRCalibration", "PeopleMeasurement", "ScaleRefit", "calibrate_reject_rate",
           "calibrate_target_fnmr", "measure_people", "refit_scale", "scale_refit"]


@dataclass(frozen=True)
class RejectRateCalibration:
    """What :func:`calibrate_reject_rate` found.

    Attributes:
        threshold: the chosen ``min_score``.
        scored: captures with a face (and so a score).
        low_quality: of those, rejected for low quality at ``threshold``.
        captures: readable captures.
        rejected: of those, rejected for any reason (or with no face) under the new policy.
    """

    threshold: float
    scored: int
    low_quality: int
    captures: int
    rejected: int

    @property
    def interval(self) -> tuple[float, float]:
        """95% interval of the share of captures like these the threshold rejects for low
        quality (Wilson, on ``low_quality`` of ``scored``)."""
        return wilson_interval(self.low_quality, self.scored)


@dataclass(frozen=True)
class FNMRCalibration:
    """What :func:`calibrate_target_fnmr` found: the choice (see
    :class:`facegate.evaluation.FNMRTarget`) and the data it rests on."""

    threshold: float
    choice: FNMRTarget
    captures: int
    no_face: int
    genuine: int
    impostor: int

    @property
    def fnmr_interval(self) -> tuple[float, float]:
        """95% interval of the FNMR at the threshold (Wilson, on the genuine comparisons kept)."""
        kept = self.choice.genuine_kept
        return wilson_interval(int(round(self.choice.fnmr * kept)), kept)

    @property
    def reject_interval(self) -> tuple[float, float]:
        """95% interval of the share of captures the threshold rejects."""
        return wilson_interval(int(round(self.choice.reject_rate * self.captures)), self.captures)


def calibrate_reject_rate(gate: Gate, images: Iterable[ImageInput], reject_rate: float, *,
                          allow_small_sample: bool = False) -> tuple[Policy, RejectRateCalibration]:
    """The gate's policy with the threshold that rejects ``reject_rate`` of the scored faces
    for low quality.

    Raises:
        ConfigError: fewer than :data:`~facegate.evaluation.MIN_REJECTED_FOR_CALIBRATION`
            faces would fall below the threshold (unless ``allow_small_sample``): so few
            cannot place it, and the share it rejects of new captures could be half or
            twice the one asked for.
    """
    results = [r for r in gate.assess_many(images) if r.status is not Status.UNREADABLE]
    scores = [r.score for r in results if r.score is not None]
    if not scores:
        raise ConfigError("no faces found to calibrate on")
    below = int(np.ceil(reject_rate * len(scores)))
    if below < MIN_REJECTED_FOR_CALIBRATION and not allow_small_sample:
        needed = int(np.ceil(MIN_REJECTED_FOR_CALIBRATION / reject_rate)) if reject_rate > 0 else None
        raise ConfigError(f"{plural(len(scores), 'scored face')} {'is' if len(scores) == 1 else 'are'} too few for a "
                          f"reject rate of {reject_rate:g}: the threshold would rest on {plural(below, 'face')} below "
                          f"it (at least "
                          f"{MIN_REJECTED_FOR_CALIBRATION} are needed"
                          + (f", so at least {needed} scored faces" if needed else "")
                          + "); add captures, or pass --allow-small-sample to write it anyway")
    threshold = threshold_for_reject_rate(scores, reject_rate)
    policy = replace(gate.policy, min_score=threshold)
    rejected = sum(decide(policy, r.faces, r.face, r.score, r.components, r.found_by)[0] is not Status.ACCEPTED
                   for r in results)
    report = RejectRateCalibration(threshold, len(scores), sum(s < threshold for s in scores), len(results), rejected)
    return policy, report


@dataclass(frozen=True)
class PeopleMeasurement:
    """A user's labelled captures measured once by the gate's own stages and scorer and by
    their recognizer (on the weights' scale), for :func:`refit_scale` and
    :func:`calibrate_target_fnmr` to share."""

    images: list[str]
    genuine_pairs: np.ndarray
    measured: MeasuredCaptures
    method: Method

    @property
    def quality(self) -> np.ndarray:
        """Each capture's score on the weights' scale (``-inf`` where no face was found)."""
        return self.measured.quality[self.method]


def measure_people(gate: Gate, source: str | Path, recognizer, *, pairs_file: str | Path | None = None
                   ) -> PeopleMeasurement:
    """Detect, crop and score ``source`` (a folder with a sub-folder per identity, or the
    captures of ``pairs_file``) as ``gate`` does, and embed each capture with ``recognizer``.

    Raises:
        ConfigError: no genuine comparisons (each identity needs two captures)."""
    images, identities, genuine_pairs = labelled_captures(source, pairs_file)
    if not len(genuine_pairs):
        raise ConfigError("no genuine comparisons: each identity needs at least two captures")
    views = view_name(gate.scorer.views)  # measured with the gate's own stage and scorer
    measured = measure_captures(images, identities, recognizer=recognizer, gate=gate, views=(views,), baselines=False)
    return PeopleMeasurement(images, genuine_pairs, measured, Method("ensemble", views))


def _comparison_threshold(measured: MeasuredCaptures, fmr: float) -> float:
    _, impostor = impostor_comparisons(measured)
    if not len(impostor):
        raise ConfigError("no impostor comparisons: captures of at least two identities are needed")
    return comparison_threshold(impostor=impostor, fmr=fmr)


#: Fewest comparisons with good references a refit of the scale rests on.
MIN_COMPARISONS_FOR_REFIT = 200


@dataclass(frozen=True)
class ScaleRefit:
    """What :func:`refit_scale` found.

    Attributes:
        knots: the map from the weights' score to the refit score (0-100 both), fitted on
            every person (the policy's ``score_map``).
        comparison_threshold: the recognizer's threshold at the FMR the scale speaks of.
        captures, people, comparisons: what the fit rests on (captures with a face and at
            least one good reference of their person; their comparisons with those references).
        folds: people-disjoint folds of the held-out check.
        error_before, error_after: expected calibration error (chance, 0-1; 10 bins) on
            people each fold's map did not see: of the weights' own scale, and of the refit one.
        reliability_before, reliability_after: the held-out reliability tables behind them.
    """

    knots: tuple[tuple[float, float], ...]
    comparison_threshold: float
    captures: int
    people: int
    comparisons: int
    folds: int
    error_before: float
    error_after: float
    reliability_before: list
    reliability_after: list


def _refit_knots(scores: np.ndarray, observed: np.ndarray, weight: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Knots (weights' score, refit score) of the isotonic fit, with the scale's ends (0 -> 0,
    100 -> 100) added, so scores beyond the fitted range keep their order."""
    knots = [(x, 100.0 * y) for x, y in fit_knots(scores, observed, weight)]
    if knots[0][0] > 0.0:
        knots.insert(0, (0.0, 0.0))
    if knots[-1][0] < 100.0:
        knots.append((100.0, 100.0))
    return tuple((round(x, 4), round(y, 4)) for x, y in knots)


def scale_refit(measured: MeasuredCaptures, quality: np.ndarray, threshold: float, *, folds: int = 2, seed: int = 0,
                sources=None, allow_small_sample: bool = False) -> ScaleRefit:
    """The fit behind :func:`refit_scale` on measured captures: ``quality`` on the weights'
    scale, ``threshold`` the recognizer's at the FMR the scale is to speak of, ``sources``
    as :func:`facegate.scale.observed_success` takes them (train.edc's degraded copies)."""
    idx, observed, weight = observed_success(measured, threshold, sources)
    people = np.asarray(measured.identities)[idx]
    names = np.unique(people)
    if not len(idx):
        raise ConfigError("no capture has a good reference of its person: nothing to refit the scale on")
    if not allow_small_sample and (weight.sum() < MIN_COMPARISONS_FOR_REFIT or len(names) < 2 * folds):
        raise ConfigError(f"{plural(int(weight.sum()), 'comparison')} with good references among "
                          f"{plural(len(names), 'person', 'people')} are too few to refit the scale (at least "
                          f"{MIN_COMPARISONS_FOR_REFIT} comparisons and {2 * folds} people are needed, so each knot rests "
                          "on enough comparisons and the check has people the fit did not see); add people, or pass "
                          "--allow-small-sample")
    scores = np.asarray(quality, dtype=np.float64)[idx]
    fold_of = dict(zip(np.random.default_rng(seed).permutation(names), np.arange(len(names)) % folds))
    fold = np.array([fold_of[p] for p in people])
    mapped = np.empty_like(scores)
    for k in range(folds):
        held = fold == k
        if held.all() or not held.any():
            mapped[held] = scores[held]
            continue
        knots = np.asarray(_refit_knots(scores[~held], observed[~held], weight[~held]))
        mapped[held] = np.interp(scores[held], knots[:, 0], knots[:, 1])
    return ScaleRefit(_refit_knots(scores, observed, weight), threshold, len(idx), len(names), int(weight.sum()), folds,
                      calibration_error(scores, observed, weight), calibration_error(mapped, observed, weight),
                      reliability_table(scores, observed, weight), reliability_table(mapped, observed, weight))


def refit_scale(gate: Gate, source: str | Path, recognizer, *, fmr: float = 1e-3,
                pairs_file: str | Path | None = None, folds: int = 2, seed: int = 0,
                measurement: PeopleMeasurement | None = None, recognizer_name: str | None = None,
                allow_small_sample: bool = False) -> tuple[Policy, ScaleRefit]:
    """The gate's policy with the score scale refit for ``recognizer`` on these people: a
    score of s then means about s% chance that a genuine comparison of the capture with a
    good reference photo of the person succeeds at ``fmr`` with *this* recognizer (the
    weights' scale promises that for the recognizer that made their labels).

    The same isotonic fit as the shipped scale (:func:`facegate.scale.fit_knots`), from the
    weights' score to each capture's observed success, weighted by its comparisons. Its
    error is measured on people a fit did not see: the people are split into ``folds``
    disjoint folds, each fold's captures judged by a map fitted on the others; the map
    returned is then fitted on everyone. ``min_score`` of the policy returned is unchanged
    (a threshold on the old scale would mean something else: choose one on the new scale,
    as ``facegate calibrate --refit-scale --target-fnmr`` does).

    ``recognizer_name``: how the policy names the recognizer (default: its ``name`` or class).

    Raises:
        ConfigError: fewer than :data:`MIN_COMPARISONS_FOR_REFIT` comparisons with good
            references, or fewer people than ``2 * folds`` (unless ``allow_small_sample``).
    """
    m = measurement or measure_people(gate, source, recognizer, pairs_file=pairs_file)
    threshold = _comparison_threshold(m.measured, fmr)
    report = scale_refit(m.measured, m.quality, threshold, folds=folds, seed=seed, allow_small_sample=allow_small_sample)
    name = recognizer_name or getattr(recognizer, "name", None) or type(recognizer).__name__
    policy = replace(gate.policy, score_scale=gate.spec.score_scale, score_map=report.knots,
                     score_map_for=f"{name} at FMR {fmr:g} on {source} ({plural(report.people, 'person', 'people')}, "
                                   f"{plural(report.captures, 'capture')})")
    return policy, report


def calibrate_target_fnmr(gate: Gate, source: str | Path, recognizer, *, target_fnmr: float, fmr: float = 1e-3,
                          max_reject_rate: float = 1.0, pairs_file: str | Path | None = None,
                          allow_small_sample: bool = False,
                          measurement: PeopleMeasurement | None = None) -> tuple[Policy, FNMRCalibration]:
    """The gate's policy with the lowest threshold at which genuine comparisons between
    accepted captures fail at most ``target_fnmr`` of the time, the recognizer's threshold
    fixed at ``fmr``. The threshold is on the gate's policy's scale (a refit ``score_map``
    applies).

    Args:
        source: a folder with one sub-folder per identity (or the folder of ``pairs_file``).
        recognizer: a :class:`facegate.recognition.Recognizer`.
        pairs_file: CSV of ``left,right,genuine`` comparisons instead of identity folders.
        measurement: the captures already measured (:func:`measure_people`).

    Raises:
        ConfigError: the captures give no genuine or no impostor comparisons, or fewer
            genuine comparisons than :func:`~facegate.evaluation.min_genuine_for_fnmr`
            needs to show ``target_fnmr`` at all (unless ``allow_small_sample``).
    """
    if measurement is None:
        images, _, genuine_pairs = labelled_captures(source, pairs_file)
        if not len(genuine_pairs):
            raise ConfigError("no genuine comparisons: each identity needs at least two captures")
    else:
        images, genuine_pairs = measurement.images, measurement.genuine_pairs
    needed = min_genuine_for_fnmr(target_fnmr)
    if len(genuine_pairs) < needed and not allow_small_sample:
        raise ConfigError(f"{plural(len(genuine_pairs), 'genuine comparison')} "
                          f"{'is' if len(genuine_pairs) == 1 else 'are'} too few to show an FNMR of {target_fnmr:g}: "
                          f"even with none failing, the 95% upper bound would be about {3 / len(genuine_pairs):.3g} "
                          f"(at least {needed} are needed: 3 / target); add captures, or pass --allow-small-sample")
    m = measurement or measure_people(gate, source, recognizer, pairs_file=pairs_file)
    measured = m.measured
    quality = gate.policy.rescore(m.quality)
    genuine = pair_scores(measured.embeddings, genuine_pairs)
    impostor_pairs, impostor = impostor_comparisons(measured)
    if not len(impostor):
        raise ConfigError("no impostor comparisons: captures of at least two identities are needed")
    choice = calibrate_for_fnmr(quality, genuine_pairs, genuine, impostor_pairs, impostor, target_fnmr=target_fnmr,
                                fmr=fmr, max_reject_rate=max_reject_rate)
    low, high = gate.spec.score_range
    threshold = float(np.clip(choice.quality_threshold, low, high))
    report = FNMRCalibration(threshold, choice, len(images), int((~measured.found).sum()), len(genuine), len(impostor))
    return replace(gate.policy, min_score=threshold), report
