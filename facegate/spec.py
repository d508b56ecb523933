"""The scorer specification: everything needed to turn a detected face into model input
and a model output into a documented score. Stored beside the shipped weights
(``facegate/weights/spec.json``) so preprocessing always matches the weights.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .alignment import quality_template, warp_to_template
from .models import MEAN, STD

__all__ = ["ScorerSpec", "SCORE_SCALE"]

#: Version tag of the score scale. Scores are predicted recognition utility on 0-100
#: (see facegate/weights/MODEL_CARD.md for the exact label definition); a threshold is
#: meaningful across weights that share this tag.
SCORE_SCALE = "fg-utility-v1"


@dataclass(frozen=True)
class ScorerSpec:
    """How crops are made and scores are read for one set of weights.

    Attributes:
        name: ``arch.tag``-style name of the weights.
        members: member architectures, each with ``<arch>.pt`` beside the spec.
        input_size: side of the square aligned crop, in pixels.
        margin: fraction by which the face template is shrunk to leave context around it.
        mean, std: per-channel normalisation of RGB values in [0, 1].
        score_scale: version tag of the score scale (see :data:`SCORE_SCALE`).
        default_threshold: accept at or above this score unless a policy says otherwise.
        threshold_rule: how ``default_threshold`` was chosen, in words.
    """

    name: str = "facegate-ensemble.untrained"
    members: tuple[str, ...] = ("mobilenet_v3_small", "shufflenet_v2_x1_0")
    input_size: int = 128
    margin: float = 0.2
    mean: tuple[float, float, float] = MEAN
    std: tuple[float, float, float] = STD
    score_scale: str = SCORE_SCALE
    default_threshold: float = 50.0
    threshold_rule: str = ""
    metrics: dict = field(default_factory=dict)

    def crop(self, rgb: np.ndarray, landmarks: np.ndarray, size: int | None = None) -> np.ndarray:
        """Aligned ``(size, size, 3)`` uint8 RGB crop of the face with these landmarks."""
        size = size or self.input_size
        return warp_to_template(rgb, landmarks, quality_template(size, self.margin), (size, size))

    def to_tensor(self, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` normalised float tensor."""
        x = torch.as_tensor(crops).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    @staticmethod
    def to_score(raw: torch.Tensor | np.ndarray) -> np.ndarray:
        """Model output (utility on 0-1) -> score on 0-100, clipped, never NaN."""
        raw = np.nan_to_num(np.asarray(raw, dtype=np.float64), nan=0.0)
        return np.clip(raw * 100.0, 0.0, 100.0)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ScorerSpec":
        data = json.loads(Path(path).read_text())
        for key in ("members", "mean", "std"):
            data[key] = tuple(data[key])
        return cls(**data)

    def with_(self, **changes) -> "ScorerSpec":
        return replace(self, **changes)
