"""The decision: a pure function of what detection and scoring found, and a :class:`Policy`.

Statuses: ``accepted``, ``rejected`` (with reasons), ``no_face``, ``unreadable``.
Reasons (machine-readable, stable): see :data:`REASONS`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Sequence

from .detection import Face
from .errors import ConfigError

__all__ = ["Status", "Policy", "REASONS", "decide", "decide_crop"]


class Status(str, Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    NO_FACE = "no_face"
    UNREADABLE = "unreadable"

    def __str__(self) -> str:
        return self.value


#: Every reason a capture can be rejected for, with what a person can do about it.
REASONS = {
    "low_quality": "predicted recognition utility below the threshold (blur, light, pose, occlusion, ...)",
    "face_too_small": "too few pixels between the eyes: move closer or use a higher resolution",
    "multiple_faces": "another sizeable face is in view",
    "low_confidence": "the detector is unsure this is a face",
}


#: Confidence cut-off for a detector whose settings the weights' spec does not give.
DEFAULT_FACE_PROBABILITY = 0.9


@dataclass(frozen=True)
class Policy:
    """Thresholds of the decision. README.md ("Decision policy") says how each default was set.

    Attributes:
        min_score: accept at or above this quality score (0-100, scale ``fg-utility-v1``);
            ``None`` means the default shipped with the weights.
        min_eye_distance: smallest inter-eye distance in pixels.
        reject_multiple_faces: reject when a second sizeable face is in view.
        secondary_face_ratio: a second face is "sizeable" at this fraction of the primary's side.
        min_face_probability: detector confidence below which the primary face is rejected,
            and below which other faces are ignored; ``None`` means the value the weights'
            spec gives for the detector in use (detectors' confidences differ in scale).
    """

    min_score: float | None = None
    min_eye_distance: float = 16.0
    reject_multiple_faces: bool = True
    secondary_face_ratio: float = 0.5
    min_face_probability: float | None = None

    def __post_init__(self):
        for name, kind, optional in _FIELD_KINDS:
            value = getattr(self, name)
            if value is None and optional:
                continue
            ok = isinstance(value, bool) if kind is bool else (
                isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
            if not ok:
                wanted = "true or false" if kind is bool else "a finite number" + (" or null" if optional else "")
                raise ConfigError(f"{name} must be {wanted}, got {value!r}")
        if self.min_score is not None and not 0.0 <= self.min_score <= 100.0:
            raise ConfigError(f"min_score must be within 0-100, got {self.min_score}")
        if self.min_eye_distance < 0:
            raise ConfigError(f"min_eye_distance must be >= 0, got {self.min_eye_distance}")
        if not 0.0 < self.secondary_face_ratio <= 1.0:
            raise ConfigError(f"secondary_face_ratio must be in (0, 1], got {self.secondary_face_ratio}")
        if self.min_face_probability is not None and not 0.0 <= self.min_face_probability <= 1.0:
            raise ConfigError(f"min_face_probability must be in [0, 1], got {self.min_face_probability}")

    def resolve(self, default_threshold: float, default_face_probability: float | None = None) -> "Policy":
        """This policy with what it leaves unset filled in from the weights' spec: the score
        threshold, and the confidence cut-off of the detector in use (0.9 for a detector
        the spec does not know)."""
        changes = {}
        if self.min_score is None:
            changes["min_score"] = default_threshold
        if self.min_face_probability is None:
            changes["min_face_probability"] = (DEFAULT_FACE_PROBABILITY if default_face_probability is None
                                               else default_face_probability)
        return replace(self, **changes) if changes else self

    def save(self, path: str | Path, *, made_by: dict | None = None) -> None:
        """Write the policy file; ``made_by`` records how it was made (command, score scale,
        weights, target, recognizer, data size), for people reading it later."""
        data = {"facegate_policy": 1, **asdict(self)}
        if made_by:
            data["made_by"] = made_by
        Path(path).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read policy file ({exc})") from None
        if not isinstance(data, dict) or data.pop("facegate_policy", None) != 1:
            raise ConfigError(f"{path}: not a facegate policy file (version 1)")
        data.pop("made_by", None)  # provenance, for people
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{path}: unknown policy settings {sorted(unknown)}")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _score_reasons(policy: Policy, score: float | None) -> tuple[str, ...]:
    low = score is not None and policy.min_score is not None and score < policy.min_score
    return ("low_quality",) if low else ()


def decide_crop(policy: Policy, score: float) -> tuple[Status, tuple[str, ...]]:
    """Status and reasons for an already aligned face crop: there was no detection, so the
    score is all there is to decide on."""
    reasons = _score_reasons(policy, score)
    return (Status.REJECTED if reasons else Status.ACCEPTED), reasons


#: (setting, type, may be null) for the checks of :class:`Policy`.
_FIELD_KINDS = (
    ("min_score", float, True),
    ("min_eye_distance", float, False),
    ("reject_multiple_faces", bool, False),
    ("secondary_face_ratio", float, False),
    ("min_face_probability", float, True),
)


def decide(policy: Policy, faces: Sequence[Face], primary: Face | None, score: float | None) -> tuple[Status, tuple[str, ...]]:
    """Status and reasons for one capture.

    Args:
        policy: thresholds, with ``min_score`` set.
        faces: every face found.
        primary: the face the capture is about (``None`` when no face was found).
        score: the primary face's quality score (0-100).
    """
    if primary is None:
        return Status.NO_FACE, ()
    reasons = list(_score_reasons(policy, score))
    if primary.eye_distance < policy.min_eye_distance:
        reasons.append("face_too_small")
    min_probability = DEFAULT_FACE_PROBABILITY if policy.min_face_probability is None else policy.min_face_probability
    if primary.probability < min_probability:
        reasons.append("low_confidence")
    if policy.reject_multiple_faces:
        for face in faces:
            if (
                face is not primary
                and face.probability >= min_probability
                and face.side >= policy.secondary_face_ratio * primary.side
            ):
                reasons.append("multiple_faces")
                break
    return (Status.REJECTED if reasons else Status.ACCEPTED), tuple(reasons)
