"""The orientation stage: is the photo upright, or turned 90, 180 or 270 degrees?

Between decoding and detection (decode -> orient -> detect -> crop -> score -> decide).
Whether a photo is turned belongs to the photo, not to one face's tilt: a person lying down
or tilting their head is in an upright photo (their roll is a pose, named by the ``roll``
component), while an upside-down face can make a face detector place upright-looking
landmarks on it. So a small network that sees the whole photo (``orientation.onnx``, trained
by ``python -m train.orientation`` on the training people's photos, turned at random) says
which turn makes it upright. When it is sure the photo is turned, faces are searched on the
upright copy (coordinates stay the photo's own) and the capture is rejected as ``rotated``,
the prompt naming that turn; the photo is still assessed, so the other reasons are the
upright copy's.

    >>> from facegate.orientation import OrientationModel
    >>> OrientationModel()(rgb).turn          # 0, 90, 180 or 270 (degrees clockwise)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .helpers import Helper, softmax

__all__ = ["Orientation", "OrientationModel", "TURNS", "upright_copy"]

#: Degrees clockwise that make the photo upright, in the model's output order.
TURNS = (0, 90, 180, 270)


@dataclass(frozen=True)
class Orientation:
    """The orientation stage's answer for one photo.

    Attributes:
        turn: degrees clockwise that make the photo upright (0: it is upright), decided.
        probabilities: the model's probability for each of :data:`TURNS`.
    """

    turn: int
    probabilities: tuple[float, float, float, float]

    @property
    def turned(self) -> bool:
        return self.turn != 0

    @property
    def upright(self) -> float:
        """The model's probability that the photo is upright."""
        return self.probabilities[0]

    def to_dict(self) -> dict:
        return {"turn": self.turn, "probabilities": {str(t): round(p, 4) for t, p in zip(TURNS, self.probabilities)}}


def upright_copy(rgb: np.ndarray, turn: int) -> np.ndarray:
    """``rgb`` turned ``turn`` degrees clockwise."""
    return np.ascontiguousarray(np.rot90(rgb, k=-(turn // 90))) if turn else rgb


class OrientationModel:
    """``model(rgb)`` -> :class:`Orientation`: the photo squashed to the model's input size
    (the whole photo: the scene says which way is up), and turned only when the model's
    probability for a turn reaches ``min_probability`` (from ``orientation.json``: chosen on
    the validation people so that upright photos are almost never called turned)."""

    def __init__(self, folder: str | Path | None = None, threads: int | None = None):
        self.helper = Helper("orientation", folder, threads)
        self.min_probability = float(self.helper.info.get("min_probability", 0.5))

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        size = self.helper.size
        small = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
        return softmax(self.helper(small[None]).astype(np.float64))[0]

    def __call__(self, rgb: np.ndarray) -> Orientation:
        p = self.probabilities(rgb)
        best = int(np.argmax(p))
        turn = TURNS[best] if best and p[best] >= self.min_probability else 0
        return Orientation(turn, tuple(float(v) for v in p))
