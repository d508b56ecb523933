"""Choosing the quality threshold from a user's own captures: the API behind
``facegate calibrate``. Each function returns the new :class:`Policy` and a report of what
to expect at it; writing the policy file is the caller's choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import ConfigError
from .evaluation import (MIN_REJECTED_FOR_CALIBRATION, FNMRTarget, Method, calibrate_for_fnmr, impostor_comparisons,
                         labelled_captures, measure_captures, min_genuine_for_fnmr, pair_scores,
                         threshold_for_reject_rate, view_name, wilson_interval)
from .gate import Gate
from .images import ImageInput
from .policy import Policy, Status, decide
from .text import plural

__all__ = ["RejectRateCalibration", "FNMRCalibration", "calibrate_reject_rate", "calibrate_target_fnmr"]


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


def calibrate_target_fnmr(gate: Gate, source: str | Path, recognizer, *, target_fnmr: float, fmr: float = 1e-3,
                          max_reject_rate: float = 1.0, pairs_file: str | Path | None = None,
                          allow_small_sample: bool = False) -> tuple[Policy, FNMRCalibration]:
    """The gate's policy with the lowest threshold at which genuine comparisons between
    accepted captures fail at most ``target_fnmr`` of the time, the recognizer's threshold
    fixed at ``fmr``.

    Args:
        source: a folder with one sub-folder per identity (or the folder of ``pairs_file``).
        recognizer: a :class:`facegate.recognition.Recognizer`.
        pairs_file: CSV of ``left,right,genuine`` comparisons instead of identity folders.

    Raises:
        ConfigError: the captures give no genuine or no impostor comparisons, or fewer
            genuine comparisons than :func:`~facegate.evaluation.min_genuine_for_fnmr`
            needs to show ``target_fnmr`` at all (unless ``allow_small_sample``).
    """
    images, identities, genuine_pairs = labelled_captures(source, pairs_file)
    if not len(genuine_pairs):
        raise ConfigError("no genuine comparisons: each identity needs at least two captures")
    needed = min_genuine_for_fnmr(target_fnmr)
    if len(genuine_pairs) < needed and not allow_small_sample:
        raise ConfigError(f"{plural(len(genuine_pairs), 'genuine comparison')} "
                          f"{'is' if len(genuine_pairs) == 1 else 'are'} too few to show an FNMR of {target_fnmr:g}: "
                          f"even with none failing, the 95% upper bound would be about {3 / len(genuine_pairs):.3g} "
                          f"(at least {needed} are needed: 3 / target); add captures, or pass --allow-small-sample")
    views = view_name(gate.scorer.views)  # measured with the gate's own stage and scorer
    measured = measure_captures(images, identities, recognizer=recognizer, gate=gate, views=(views,), baselines=False)
    quality = measured.quality[Method("ensemble", views)]
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
