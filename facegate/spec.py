"""The scorer specification: the one place that binds a set of weights to its use.

Everything that must match the weights lives here and nowhere else: the alignment
template and input size of the crop, the pixel normalisation, the score's range, direction
and scale version, a sha256 of each member file, and the detector settings the weights
were trained and calibrated with (per detector: YuNet's probabilities are not MTCNN's).
Stored beside the weights as ``spec.json``. Plain numpy: reading a spec never imports torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .alignment import quality_template, warp_to_template
from .errors import WeightsError

__all__ = ["ScorerSpec", "SCORE_SCALE", "DETECTOR_DEFAULTS", "file_sha256"]

#: Version tag of the score scale of the shipped weights and of weights trained now: a score
#: s means about s% chance that a genuine comparison with a good reference succeeds at FMR
#: 1e-3 (facegate/weights/MODEL_CARD.md); a threshold is meaningful across weights that share
#: this tag. ``fg-utility-v1`` was facegate 0.1's (100 x the uncalibrated utility).
SCORE_SCALE = "fg-utility-v2"

SPEC_FORMAT = "facegate-spec"
SPEC_VERSION = 2

#: Detector settings used when a spec does not say (a version-1 spec, or a new training run).
#: ``min_face_probability`` is the policy's cut-off for that detector's confidence.
DETECTOR_DEFAULTS: dict[str, dict[str, Any]] = {
    "mtcnn": {"min_face_size": 20, "first_pass_min_face_size": 40, "thresholds": [0.6, 0.7, 0.7],
              "min_face_probability": 0.9, "refine_landmarks": True},
    "yunet": {"score_threshold": 0.7, "nms_threshold": 0.3, "min_face_probability": 0.8},
}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibration_tails(knots) -> tuple[float, float]:
    """Rates of the map's tails beyond the first and last knot: ``y0 * exp(r (x - x0))`` below
    and ``1 - (1 - yn) * exp(-r (x - xn))`` above, each with its end segment's slope at the
    knot. A map that went flat there would give every capture past the last knot the same
    score, so the best captures (most of them, in a good set) could no longer be ordered."""
    knots = np.asarray(knots, dtype=np.float64)
    if len(knots) < 2:
        return 0.0, 0.0
    (x0, y0), (x1, y1) = knots[0], knots[1]
    (xa, ya), (xn, yn) = knots[-2], knots[-1]
    below = (y1 - y0) / (x1 - x0) / y0 if y0 > 0 and x1 > x0 else 0.0
    above = (yn - ya) / (xn - xa) / (1.0 - yn) if yn < 1 and xn > xa else 0.0
    return float(below), float(above)


@dataclass(frozen=True)
class ScorerSpec:
    """How crops are made and scores are read for one set of weights.

    The defaults are the shipped weights' framing, views, scale and detector settings
    (tests/test_spec.py holds them to ``facegate/weights/spec.json``), so a spec made for a new
    training (``train.recipe``) frames crops as the labels and the shipped weights do; what
    training and calibration decide (name, digests, calibration, threshold) has no default
    that could pass for theirs.

    Attributes:
        name: ``arch.tag``-style name of the weights.
        terms: the terms under which these weights may be used, in words: they inherit the
            terms of what trained them (photos, labels' recognizer, starting weights), which
            can be narrower than the code's licence; empty means not stated (weights you
            train yourself: state yours with ``python -m train.release --terms``).
        members: member architectures, each with ``<arch>.pt`` (and ``<arch>.onnx``) beside the spec.
        member_sha256: sha256 of each ``<arch>.pt``; ONNX graphs carry the digest they were
            made from and are refused for other weights.
        input_size: side of the square aligned crop, in pixels.
        margin: fraction by which the ARCFACE_112 template is shrunk to leave context.
        template: the five landmark positions in the ``input_size`` crop (derived from
            ``margin`` when not given).
        mean, std: per-channel normalisation of RGB values in [0, 1].
        score_range: the score's bounds; the networks' raw output is utility on 0-1.
        higher_is_better: direction of the score.
        score_scale: version tag of the score scale (see :data:`SCORE_SCALE`).
        default_threshold: accept at or above this score unless a policy says otherwise;
            None for weights not calibrated yet (a policy must then give ``min_score``).
        threshold_rule: how ``default_threshold`` was chosen, in words.
        detectors: settings per detector name (see :data:`DETECTOR_DEFAULTS`).
        views: the test-time views the weights were trained for (``views="full"`` means
            these); weights trained without vertical flips must not be shown them.
        score_calibration: ``(raw, score-fraction)`` knots of a monotone map from the
            networks' raw output to the scale (linear between knots; beyond the ends it
            keeps the end segment's slope and bends towards 0 and 1, see
            :func:`calibration_tails`); empty means the raw output is the scale (fg-utility-v1).
    """

    name: str = "facegate-ensemble.untrained"
    terms: str = ""
    members: tuple[str, ...] = ("mobilenet_v3_small", "shufflenet_v2_x1_0")
    member_sha256: dict[str, str] = field(default_factory=dict)
    input_size: int = 128
    margin: float = 0.0
    template: tuple[tuple[float, float], ...] = ()
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    score_range: tuple[float, float] = (0.0, 100.0)
    higher_is_better: bool = True
    score_scale: str = SCORE_SCALE
    default_threshold: float | None = None
    threshold_rule: str = ""
    detectors: dict[str, dict[str, Any]] = field(default_factory=lambda: json.loads(json.dumps(DETECTOR_DEFAULTS)))
    views: tuple[str, ...] = ("identity", "hflip")
    score_calibration: tuple[tuple[float, float], ...] = ()

    def __post_init__(self):
        if not self.template:
            points = quality_template(self.input_size, self.margin)
            object.__setattr__(self, "template", tuple((float(x), float(y)) for x, y in points))

    # -- crops and scores --------------------------------------------------------------
    def crop(self, rgb: np.ndarray, landmarks: np.ndarray, size: int | None = None, reduction: int = 1) -> np.ndarray:
        """Aligned ``(size, size, 3)`` uint8 RGB crop of the face with these landmarks (in
        ``rgb``, the image reduced ``reduction`` times: the crop is the full image's)."""
        size = size or self.input_size
        template = np.asarray(self.template, dtype=np.float64) * (size / self.input_size)
        return warp_to_template(rgb, landmarks, template, (size, size), reduction=reduction)

    def to_score(self, raw) -> np.ndarray:
        """Network output -> score on :attr:`score_range` (through :attr:`score_calibration`
        when there is one), clipped, never NaN."""
        low, high = self.score_range
        raw = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0)
        if self.score_calibration:
            knots = np.asarray(self.score_calibration, dtype=np.float64)
            (x0, y0), (xn, yn) = knots[0], knots[-1]
            below_rate, above_rate = calibration_tails(knots)
            inside = np.interp(raw, knots[:, 0], knots[:, 1])
            below = y0 * np.exp(below_rate * np.minimum(raw - x0, 0.0))
            above = 1.0 - (1.0 - yn) * np.exp(-above_rate * np.maximum(raw - xn, 0.0))
            raw = np.where(raw < x0, below, np.where(raw > xn, above, inside))
        return np.clip(low + raw * (high - low), low, high)

    def detector_settings(self, name: str) -> dict[str, Any]:
        """Settings of detector ``name`` for these weights (constructor options and the
        policy's ``min_face_probability``)."""
        settings = dict(DETECTOR_DEFAULTS.get(name, {}))
        settings.update(self.detectors.get(name, {}))
        return settings

    # -- files -------------------------------------------------------------------------
    def verify(self, folder: str | Path, member: str) -> Path:
        """The member's weights file in ``folder``, checked against :attr:`member_sha256`.

        Raises:
            WeightsError: the file is missing or its digest differs from the spec's.
        """
        path = Path(folder) / f"{member}.pt"
        if not path.is_file():
            raise WeightsError(f"{path}: weights file not found")
        expected = self.member_sha256.get(member)
        if expected and file_sha256(path) != expected:
            raise WeightsError(f"{path}: sha256 differs from the one in spec.json (weights and spec do not belong together)")
        return path

    def save(self, path: str | Path) -> None:
        data = {"format": SPEC_FORMAT, "version": SPEC_VERSION, **asdict(self)}
        Path(path).write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ScorerSpec":
        """Read ``spec.json`` (version 2, or version 1 from facegate 0.1: no digests, default
        detector settings)."""
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path.parent}: no spec.json; not a facegate weights folder")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise WeightsError(f"{path}: cannot read the spec ({exc})") from None
        if not isinstance(data, dict):
            raise WeightsError(f"{path}: not a facegate spec")
        version = data.pop("version", 1)
        data.pop("format", None)
        data.pop("metrics", None)  # version 1 kept an always-empty field
        if version not in (1, SPEC_VERSION):
            raise WeightsError(f"{path}: spec version {version}; this facegate reads 1 and {SPEC_VERSION}")
        try:
            for key in ("members", "mean", "std", "score_range", "views"):
                if key in data:
                    data[key] = tuple(data[key])
            if "score_calibration" in data:
                data["score_calibration"] = tuple((float(a), float(b)) for a, b in data["score_calibration"])
            if "template" in data:
                data["template"] = tuple(tuple(float(v) for v in p) for p in data["template"])
            return cls(**data)
        except TypeError as exc:
            raise WeightsError(f"{path}: malformed spec ({exc})") from None

    def with_(self, **changes) -> "ScorerSpec":
        """A copy with ``changes``; the template follows a new size or margin."""
        if ("input_size" in changes or "margin" in changes) and "template" not in changes:
            changes["template"] = ()
        return replace(self, **changes)
