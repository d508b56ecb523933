"""The capture stage's small helper networks (photo orientation, occlusion) as onnxruntime runs them.

Each helper is an ONNX graph with a ``.json`` beside it (``train.small_nets.export`` writes
both): the input size and normalisation, the outputs, the settings its decision uses and the
terms its weights carry. They ship in ``facegate/weights`` beside the quality members and need
no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import WeightsError
from .registry import default_weights_dir
from .runtime import load_onnx, process_threads

__all__ = ["Helper", "softmax"]


class Helper:
    """One helper network: ``helper(images)`` for ``(N, S, S, 3)`` uint8 RGB at the helper's
    input size gives its raw outputs ``(N, K)``."""

    def __init__(self, name: str, folder: str | Path | None = None, threads: int | None = None):
        folder = Path(folder) if folder is not None else default_weights_dir()
        path = folder / f"{name}.onnx"
        try:
            self.info = json.loads(path.with_suffix(".json").read_text())
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{path.with_suffix('.json')}: cannot read the {name} helper's settings ({exc})") from None
        self.name, self.path = name, path
        self.size = int(self.info["input_size"])
        self._mean = np.asarray(self.info["mean"], np.float32) * 255.0
        self._scale = 1.0 / (np.asarray(self.info["std"], np.float32) * 255.0)
        self._session = load_onnx(path, process_threads(threads))
        self._input = self._session.get_inputs()[0].name

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = ((images.astype(np.float32) - self._mean) * self._scale).transpose(0, 3, 1, 2)
        return self._session.run(None, {self._input: np.ascontiguousarray(x)})[0]

    @property
    def terms(self) -> str:
        return self.info.get("terms", "")


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
