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
from .evaluation import (FNMRTarget, Method, calibrate_for_fnmr, impostor_comparisons, labelled_captures,
                         measure_captures, pair_scores, threshold_for_reject_rate, view_name)
from .gate import Gate
from .images import ImageInput
from .policy import Policy, Status, decide

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


def calibrate_reject_rate(gate: Gate, images: Iterable[ImageInput], reject_rate: float
                          ) -> tuple[Policy, RejectRateCalibration]:
    """The gate's policy with the threshold that rejects ``reject_rate`` of the scored faces
    for low quality."""
    results = [r for r in gate.assess_many(images) if r.status is not Status.UNREADABLE]
    scores = [r.score for r in results if r.score is not None]
    if not scores:
        raise ConfigError("no faces found to calibrate on")
    threshold = threshold_for_reject_rate(scores, reject_rate)
    policy = replace(gate.policy, min_score=threshold)
    rejected = sum(decide(policy, r.faces, r.face, r.score, r.components, r.found_by)[0] is not Status.ACCEPTED
                   for r in results)
    report = RejectRateCalibration(threshold, len(scores), sum(s < threshold for s in scores), len(results), rejected)
    return policy, report


def calibrate_target_fnmr(gate: Gate, source: str | Path, recognizer, *, target_fnmr: float, fmr: float = 1e-3,
                          max_reject_rate: float = 1.0, pairs_file: str | Path | None = None
                          ) -> tuple[Policy, FNMRCalibration]:
    """The gate's policy with the lowest threshold at which genuine comparisons between
    accepted captures fail at most ``target_fnmr`` of the time, the recognizer's threshold
    fixed at ``fmr``.

    Args:
        source: a folder with one sub-folder per identity (or the folder of ``pairs_file``).
        recognizer: a :class:`facegate.recognition.Recognizer`.
        pairs_file: CSV of ``left,right,genuine`` comparisons instead of identity folders.

    Raises:
        ConfigError: the captures give no genuine or no impostor comparisons.
    """
    images, identities, genuine_pairs = labelled_captures(source, pairs_file)
    if not len(genuine_pairs):
        raise ConfigError("no genuine comparisons: each identity needs at least two captures")
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
