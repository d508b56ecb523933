"""The occlusion helper: how much of the eyes, the nose and mouth, and the face is uncovered.

ISO/IEC 29794-5 names eyes visible, mouth occlusion prevention and face occlusion prevention
(OFIQ measures them by face parsing). facegate reads them with a small network
(``occlusion.onnx``, trained by ``python -m train.occlusion`` on the training people's crops
with sunglasses, masks, scarves, hands, hair, microphones and other photos' objects drawn on
them) from the face aligned onto the recognition template, the crop the components already
make: three shares in [0, 1], each the uncovered part of a region the template's landmarks lay
out. :func:`facegate.components.measure_components` turns them into the ``eyes_visible``,
``mouth_visible`` and ``face_visible`` components.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .helpers import Helper

__all__ = ["OcclusionModel", "REGIONS"]

#: The regions, in the helper's output order (components ``<region>_visible``).
REGIONS = ("eyes", "mouth", "face")


class OcclusionModel:
    """``model(crops)`` for ``(N, 112, 112, 3)`` uint8 faces on the recognition template
    (:data:`facegate.alignment.ARCFACE_112`) -> ``(N, 3)`` uncovered shares of :data:`REGIONS`."""

    def __init__(self, folder: str | Path | None = None, threads: int | None = None):
        self.helper = Helper("occlusion", folder, threads)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        size = self.helper.size
        small = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])
        return 1.0 / (1.0 + np.exp(-self.helper(small).astype(np.float64)))
