"""The decision: a pure function of what detection and scoring found, and a :class:`Policy`.

Statuses: ``accepted``, ``rejected`` (with reasons), ``no_face``, ``unreadable``.
Reasons (machine-readable, stable): see :data:`REASONS`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from enum import Enum
from pathlib import Path
from typing import Sequence

import numpy as np

from .components import COMPONENTS, Components
from .detection import Face
from .errors import ConfigError

__all__ = ["Status", "Policy", "Requirement", "PROFILES", "REASONS", "PROMPTS", "decide", "decide_crop", "explain",
           "prompt_for"]


class Status(str, Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    NO_FACE = "no_face"
    UNREADABLE = "unreadable"

    def __str__(self) -> str:
        return self.value


#: Every reason a capture can be rejected for, with what it means. Component reasons come
#: from :data:`facegate.components.COMPONENTS`; the rest from detection and the score.
REASONS = {
    "low_quality": "predicted recognition utility below the threshold (blur, light, pose, occlusion, ...)",
    "face_too_small": "too few pixels between the eyes: move closer or use a higher resolution",
    "multiple_faces": "another sizeable face is in view",
    "low_confidence": "the detector is unsure this is a face",
    "rotated": "the face was found only after turning the image: the photo is on its side or upside down",
    "too_dark": "too many face pixels near black, or the face was found only after brightening the image",
    "too_bright": "too many face pixels near white, or the face was found only after darkening the image",
    "cut_off": "the face was found only after padding the image's border: it is cut off",
}

#: One prompt per reason, for the person in front of the camera.
PROMPTS = {
    "low_quality": "take another photo: this one is poor for recognition",
    "low_confidence": "face the camera, with nothing covering your face",
    "multiple_faces": "only one person in the picture, please",
    "rotated": "hold the camera upright",
    "too_dark": "more light on your face",
    "too_bright": "less light on your face (avoid direct flash or sun)",
    "cut_off": "move so that your whole face is in the picture",
}
for _definition in COMPONENTS.values():  # each component's reason, where the table above has none
    REASONS.setdefault(_definition.reason, _definition.description)
    PROMPTS.setdefault(_definition.reason, _definition.prompt)

#: Which prompt to give when several requirements fail: first what makes the rest
#: unmeasurable (framing, size), then light, then pose, then the image itself.
_PROMPT_ORDER = ("rotated", "face_too_small", "cut_off", "cut_off_top", "cut_off_bottom", "cut_off_left",
                 "cut_off_right", "multiple_faces", "eyes_covered", "mouth_covered", "face_occluded", "too_dark", "too_bright", "luminance", "uneven_light",
                 "low_dynamic_range", "contrast", "head_turned", "head_tilted_up_down", "head_tilted_sideways",
                 "blurred", "compression_artefacts", "unnatural_colour", "head_size", "low_confidence",
                 "low_quality")


#: Names of the profiles in :data:`PROFILES`.
PROFILE_NAMES = ("verification", "enrollment", "surveillance")


@dataclass(frozen=True)
class Requirement:
    """A bound on one component's native value (see :data:`facegate.components.COMPONENTS`):
    at least ``min``, at most ``max``, magnitude at most ``max_abs``. A component that could
    not be measured fails no requirement (its cause is reported with it)."""

    component: str
    min: float | None = None
    max: float | None = None
    max_abs: float | None = None

    def __post_init__(self):
        if self.component not in COMPONENTS:
            raise ConfigError(f"unknown component {self.component!r}; known: {', '.join(COMPONENTS)}")
        for key in ("min", "max", "max_abs"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ConfigError(f"{self.component}.{key} must be a finite number, got {value!r}")
        if self.min is None and self.max is None and self.max_abs is None:
            raise ConfigError(f"requirement on {self.component} sets none of min, max, max_abs")
        # bounds no value can meet would reject every face with this component's reason
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(f"requirement on {self.component}: min {self.min:g} is above max {self.max:g}, "
                              "so no face could meet it")
        if self.max_abs is not None and self.max_abs < 0:
            raise ConfigError(f"requirement on {self.component}: max_abs {self.max_abs:g} is negative, "
                              "so no face could meet it")
        if self.max_abs is not None and self.min is not None and self.min > self.max_abs:
            raise ConfigError(f"requirement on {self.component}: min {self.min:g} is above max_abs "
                              f"{self.max_abs:g}, so no face could meet it")
        if self.max_abs is not None and self.max is not None and self.max < -self.max_abs:
            raise ConfigError(f"requirement on {self.component}: max {self.max:g} is below -max_abs "
                              f"{-self.max_abs:g}, so no face could meet it")

    def met(self, value: float | None) -> bool:
        if value is None:
            return True
        return ((self.min is None or value >= self.min) and (self.max is None or value <= self.max)
                and (self.max_abs is None or abs(value) <= self.max_abs))

    def to_dict(self) -> dict:
        return {k: v for k, v in (("min", self.min), ("max", self.max), ("max_abs", self.max_abs)) if v is not None}


def _requirements(data: dict | Sequence[Requirement]) -> tuple[Requirement, ...]:
    """Requirements from a policy file's object (``{"yaw": {"max_abs": 20}}``) or a sequence
    of :class:`Requirement`; anything else is refused, naming what was found."""
    if isinstance(data, dict):
        out = []
        for name, bounds in data.items():
            if not isinstance(bounds, dict) or set(bounds) - {"min", "max", "max_abs"}:
                raise ConfigError(f"requirement on {name} must be an object with min, max or max_abs")
            out.append(Requirement(name, **bounds))
        return tuple(out)
    if isinstance(data, (list, tuple)) and all(isinstance(r, Requirement) for r in data):
        return tuple(data)
    raise ConfigError('requirements must be an object of components and their bounds, e.g. '
                      f'{{"yaw": {{"max_abs": 20}}}}; got {json.dumps(data, default=str)}')


#: Confidence cut-off for a detector whose settings the weights' spec does not give.
DEFAULT_FACE_PROBABILITY = 0.9


@dataclass(frozen=True)
class Policy:
    """Thresholds of the decision. README.md ("Decision policy") says how each default was
    set; :data:`PROFILES` holds named policies (``Policy.from_profile("enrollment")``).

    Attributes:
        min_score: accept at or above this quality score (0-100, on the weights' scale);
            ``None`` means the default shipped with the weights.
        score_scale: the scale ``min_score`` was chosen on (``facegate calibrate`` records
            it); a gate refuses weights that score on another scale, as the number would
            mean something else. ``None``: not recorded.
        min_eye_distance: smallest inter-eye distance in pixels.
        reject_multiple_faces: reject when a second sizeable face is in view.
        secondary_face_ratio: a second face is "sizeable" at this fraction of the primary's side.
        min_face_probability: detector confidence below which the primary face is rejected,
            and below which other faces are ignored; ``None`` means the value the weights'
            spec gives for the detector in use (detectors' confidences differ in scale).
        requirements: bounds on quality components (:class:`Requirement`), each failure a
            reason of its own.
        profile: the profile this policy started from, if any (for people and records).
        score_map: ``(weights' score, your score)`` knots of a monotone map, refit by
            ``facegate calibrate --refit-scale`` on your people with your recognizer, so that
            a score of s means about s% chance of a genuine match for them (linear between
            knots, flat beyond the ends); the gate reports scores through it, and
            ``min_score`` is on the refit scale. Empty: the weights' own scale. The map
            starts from ``score_scale``, so weights of another scale refuse it.
        score_map_for: what the map was refit for (recognizer, people, operating point).
    """

    min_score: float | None = None
    min_eye_distance: float = 16.0
    reject_multiple_faces: bool = True
    secondary_face_ratio: float = 0.5
    min_face_probability: float | None = None
    requirements: tuple[Requirement, ...] = ()
    profile: str | None = None
    score_scale: str | None = None
    score_map: tuple[tuple[float, float], ...] = ()
    score_map_for: str | None = None

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
        requirements = _requirements(self.requirements)
        if not all(isinstance(r, Requirement) for r in requirements):
            raise ConfigError("requirements must be Requirement objects or a {component: {min/max/max_abs}} mapping")
        names = [r.component for r in requirements]
        if len(set(names)) != len(names):
            raise ConfigError(f"more than one requirement on one component: {names}")
        object.__setattr__(self, "requirements", requirements)
        if self.score_scale is not None and not isinstance(self.score_scale, str):
            raise ConfigError(f"score_scale must be a scale name such as 'fg-utility-v2', got {self.score_scale!r}")
        if self.profile is not None and self.profile not in PROFILE_NAMES:
            raise ConfigError(f"unknown profile {self.profile!r}; known: {', '.join(PROFILE_NAMES)}")
        object.__setattr__(self, "score_map", _score_map(self.score_map))
        if self.score_map and self.score_scale is None:
            raise ConfigError("a score_map needs the score_scale it maps from (facegate calibrate records both)")

    def rescore(self, scores):
        """Scores on the weights' scale -> scores on this policy's (through :attr:`score_map`;
        unchanged without one). Takes a number or an array, gives the same kind."""
        if not self.score_map:
            return scores
        knots = np.asarray(self.score_map, dtype=np.float64)
        mapped = np.interp(np.asarray(scores, dtype=np.float64), knots[:, 0], knots[:, 1])
        return float(mapped) if np.ndim(scores) == 0 else mapped

    @classmethod
    def from_profile(cls, name: str, **changes) -> "Policy":
        """The named profile (:data:`PROFILES`), with any setting changed; ``requirements``
        given here are merged into the profile's, component by component."""
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
        return PROFILES[name].with_changes(**changes)

    def with_changes(self, **changes) -> "Policy":
        """This policy with settings changed; requirements are merged by component."""
        if "requirements" in changes:
            merged = {r.component: r for r in self.requirements}
            merged.update({r.component: r for r in _requirements(changes.pop("requirements"))})
            changes["requirements"] = tuple(merged.values())
        return replace(self, **changes)

    @classmethod
    def choose(cls, policy: "Policy | str | Path | None" = None, profile: str | None = None) -> "Policy":
        """The policy a caller means: a :class:`Policy` as given; a policy file, read over
        its profile (or ``profile``); nothing, the ``profile`` (default ``verification``)."""
        if isinstance(policy, Policy):
            if profile is not None:
                raise ConfigError("give a profile or a Policy, not both (Policy.from_profile(name, ...) combines them)")
            return policy
        if policy is not None:
            return cls.load(policy, profile=profile)
        return cls.from_profile(profile or "verification")

    def with_options(self, *, threshold: float | None = None, allow_multiple_faces: bool = False) -> "Policy":
        """This policy with the command line's (and the service's) two overrides: accept at
        or above ``threshold``; bystanders expected (no ``multiple_faces`` rejection)."""
        changed = self
        if threshold is not None:
            changed = replace(changed, min_score=float(threshold))
        if allow_multiple_faces:
            changed = replace(changed, reject_multiple_faces=False)
        return changed

    def requirement(self, component: str) -> Requirement | None:
        return next((r for r in self.requirements if r.component == component), None)

    def to_dict(self) -> dict:
        """Every setting in JSON types (the policy file's body)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["requirements"] = {r.component: r.to_dict() for r in self.requirements}
        data["score_map"] = [list(knot) for knot in self.score_map]
        return data

    def resolve(self, default_threshold: float | None, default_face_probability: float | None = None) -> "Policy":
        """This policy with what it leaves unset filled in from the weights' spec: the score
        threshold, and the confidence cut-off of the detector in use (0.9 for a detector
        the spec does not know).

        Raises:
            ConfigError: neither the policy nor the weights give a threshold (uncalibrated weights)."""
        changes = {}
        if self.min_score is None:
            if default_threshold is None:
                raise ConfigError("these weights have no default threshold (they were not calibrated): give the "
                                  "policy a min_score, or calibrate them (python -m train.package or facegate calibrate)")
            changes["min_score"] = default_threshold
        if self.min_face_probability is None:
            changes["min_face_probability"] = (DEFAULT_FACE_PROBABILITY if default_face_probability is None
                                               else default_face_probability)
        return replace(self, **changes) if changes else self

    def save(self, path: str | Path, *, made_by: dict | None = None) -> None:
        """Write the policy file; ``made_by`` records how it was made (command, score scale,
        weights, target, recognizer, data size), for people reading it later."""
        data = {"facegate_policy": 1, **self.to_dict()}
        if made_by:
            data["made_by"] = made_by
        Path(path).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, *, profile: str | None = None) -> "Policy":
        """Read a policy file. The file changes the settings it names and keeps the rest
        from its ``profile`` (or the ``profile`` argument, or ``verification``); its
        ``requirements`` change the profile's component by component. A file saved from a
        policy of no profile (``"profile": null``) is that policy exactly."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read policy file ({exc})") from None
        if not isinstance(data, dict) or data.pop("facegate_policy", None) != 1:
            raise ConfigError(f"{path}: not a facegate policy file (version 1)")
        made_by = data.pop("made_by", None)  # provenance, for people
        if isinstance(made_by, dict) and data.get("min_score") is not None and "score_scale" not in data:
            data["score_scale"] = made_by.get("score_scale")  # files written before the field existed
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{path}: unknown policy settings {sorted(unknown)}")
        complete = "profile" in data and data["profile"] is None  # saved from a policy of no profile
        named = data.pop("profile", None)
        if profile and (complete or (named and named != profile)):
            raise ConfigError(f"{path}: the file is for {f'profile {named!r}' if named else 'no profile'}, "
                              f"not {profile!r}; drop one of the two")
        try:
            if complete:
                return cls(**data)
            return cls.from_profile(named or profile or "verification", **data)
        except (ConfigError, TypeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None


def _score_map(value) -> tuple[tuple[float, float], ...]:
    """``score_map`` as checked knots: pairs of finite numbers in 0-100, the first strictly
    increasing, the second never decreasing (a higher score never maps lower)."""
    try:
        knots = tuple((float(a), float(b)) for a, b in (value or ()))
    except (TypeError, ValueError):
        raise ConfigError(f"score_map must be a list of [weights' score, your score] pairs, got {value!r}") from None
    flat = [v for k in knots for v in k]
    if not all(math.isfinite(v) and 0.0 <= v <= 100.0 for v in flat):
        raise ConfigError("score_map's knots must be finite scores within 0-100")
    if any(b[0] <= a[0] or b[1] < a[1] for a, b in zip(knots, knots[1:])):
        raise ConfigError("score_map must rise: each knot's weights' score above the last, its score not below it")
    if len(knots) == 1:
        raise ConfigError("score_map needs at least two knots")
    return knots


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


def _profile(name: str, requirements: dict, **settings) -> Policy:
    return Policy(profile=name, requirements=_requirements(requirements), **settings)


#: Named policies; ``docs/components.md`` gives the reasoning and the evidence for each
#: threshold. Every profile keeps the weights' score threshold (``min_score=None``).
PROFILES: dict[str, Policy] = {
    # The default: reject what a recognizer cannot cope with and let the score judge the
    # rest. Near-profile turns, faces mostly in darkness or burnt out, faces cut through
    # the eyes or mouth and JPEG blocks that wipe out texture fail matching; milder
    # versions of each are left to the score.
    "verification": _profile("verification", {
        "yaw": {"max_abs": 50.0},
        "margin_left": {"min": -0.5}, "margin_right": {"min": -0.5},
        "margin_top": {"min": -0.8}, "margin_bottom": {"min": -0.8},
        "under_exposure": {"max": 0.6}, "over_exposure": {"max": 0.5},
        "compression": {"max": 2.5},
        # eyes mostly hidden (dark glasses, a band, a hand) or nose and mouth all but gone
        "eyes_visible": {"min": 0.3}, "mouth_visible": {"min": 0.2},
    }),
    # Close to ISO/IEC 39794-5 / ICAO portrait practice for enrollment photos, with pose
    # limits widened to what five-landmark pose can tell apart (its spread on frontal
    # photos is several degrees): at least 90 px between the eyes, the whole head in the
    # picture, one face, even light without clipped pixels, sharp, natural colour,
    # little compression.
    "enrollment": _profile("enrollment", {
        "yaw": {"max_abs": 10.0}, "pitch": {"max_abs": 15.0}, "roll": {"max_abs": 8.0},
        "margin_left": {"min": 0.2}, "margin_right": {"min": 0.2},
        "margin_top": {"min": 0.2}, "margin_bottom": {"min": 0.2},
        "under_exposure": {"max": 0.05}, "over_exposure": {"max": 0.05},
        "luminance_mean": {"min": 70.0, "max": 200.0}, "dynamic_range": {"min": 60.0},
        "illumination_uniformity": {"min": 0.7},
        "sharpness": {"min": 1.6}, "colour": {"max": 8.0}, "compression": {"max": 1.5},
        # eyes, nose and mouth uncovered (ISO/IEC 39794-5: no sunglasses, nothing over the face)
        "eyes_visible": {"min": 0.6}, "mouth_visible": {"min": 0.6}, "face_visible": {"min": 0.7},
    }, min_eye_distance=90.0, secondary_face_ratio=0.3),
    # Uncooperative subjects at a distance: small faces, turned heads and crowds are the
    # norm; only what no recognizer copes with is rejected.
    "surveillance": _profile("surveillance", {
        "yaw": {"max_abs": 60.0},
        "under_exposure": {"max": 0.8}, "over_exposure": {"max": 0.7},
        "compression": {"max": 3.0},
    }, min_eye_distance=12.0, reject_multiple_faces=False),
}
assert tuple(PROFILES) == PROFILE_NAMES




def decide(policy: Policy, faces: Sequence[Face], primary: Face | None, score: float | None,
           components: Components | None = None, found_by: str | None = None) -> tuple[Status, tuple[str, ...]]:
    """Status and reasons for one capture: every failed requirement is a reason.

    Args:
        policy: thresholds, with ``min_score`` set.
        faces: every face found.
        primary: the face the capture is about (``None`` when no face was found).
        score: the primary face's quality score (0-100).
        components: the primary face's quality components, checked against
            ``policy.requirements`` (skipped when None).
        found_by: how the face was found when the first detection missed it
            (``"turned 90"``, ``"brightened"``, ``"darkened"``, ``"padded"``): a reason of its own.
    """
    if primary is None:
        return Status.NO_FACE, ()
    reasons = list(_score_reasons(policy, score))
    if found_by and _FOUND_BY_REASON[found_by.split()[0]]:
        reasons.append(_FOUND_BY_REASON[found_by.split()[0]])
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
    if components is not None:
        for requirement in policy.requirements:
            if requirement.component in components and not requirement.met(components.value(requirement.component)):
                reason = COMPONENTS[requirement.component].reason
                if reason not in reasons:
                    reasons.append(reason)
    return (Status.REJECTED if reasons else Status.ACCEPTED), tuple(reasons)


#: The reason for each way of finding a face the first detection missed.
#: (A face found on a turned copy of an upright photo, ``"tilted"``, is a pose: ``roll`` names it.)
_FOUND_BY_REASON = {"turned": "rotated", "brightened": "too_dark", "darkened": "too_bright", "padded": "cut_off",
                    "tilted": None, "found": None}

#: Components that can explain a low score when no requirement failed, with the quality
#: below which they are named as the likely cause.
_EXPLAINS_LOW_SCORE = ("sharpness", "under_exposure", "over_exposure", "yaw", "pitch", "illumination_uniformity",
                       "compression", "inter_eye_distance", "luminance_mean", "dynamic_range", "eyes_visible",
                       "mouth_visible", "face_visible")
_EXPLAIN_BELOW = 50.0


def prompt_for(reasons: Sequence[str], components: Components | None = None,
               found_by: str | None = None) -> str | None:
    """One prompt a person can act on for a rejection (see :func:`explain`)."""
    cause = explain(reasons, components, found_by)
    return None if cause is None else cause[1]


def explain(reasons: Sequence[str], components: Components | None = None,
            found_by: str | None = None) -> tuple[str, str] | None:
    """The main cause of a rejection and one prompt for it, as ``(cause, prompt)``: the
    first failed requirement in the order things are best fixed (framing, then light,
    then pose, then the image). When only the overall score failed, the weakest component
    below quality 50 is named as the likely cause (e.g. ``"blurred"``); when none is that
    weak, the cause stays ``low_quality`` and the prompt says that no measured component
    explains it."""
    if not reasons:
        return None
    first = min(reasons, key=lambda r: _PROMPT_ORDER.index(r) if r in _PROMPT_ORDER else len(_PROMPT_ORDER))
    if first == "rotated" and found_by and found_by.startswith("turned"):
        return first, f"hold the camera upright (the photo needs turning {found_by.split()[-1]} degrees clockwise)"
    if first == "cut_off" and components is not None:
        side = _cut_side(components)
        if side:
            return first, PROMPTS[COMPONENTS[side].reason]
    if first == "uneven_light" and components is not None and "illumination_uniformity" in components:
        detail = components["illumination_uniformity"].detail or ""
        side = "left" if detail.startswith("left") else "right"
        return first, f"more light on the {side} side of the image: that side of the face is in shadow"
    if first != "low_quality":
        return first, PROMPTS.get(first, REASONS.get(first, first))
    if components is not None:
        weak = [c for c in components if c.name in _EXPLAINS_LOW_SCORE and c.quality is not None
                and c.quality < _EXPLAIN_BELOW]
        if weak:
            reason = COMPONENTS[min(weak, key=lambda c: c.quality).name].reason
            return reason, PROMPTS[reason]
    return first, ("take another photo: this one is poor for recognition, for a reason none of the measured "
                   "components explains (expression, make-up or the face itself)")


def _cut_side(components: Components) -> str | None:
    margins = [(components.value(n), n) for n in ("margin_top", "margin_bottom", "margin_left", "margin_right")
               if components.value(n) is not None]
    return min(margins)[1] if margins else None
