"""Export the quality ensemble to ONNX for runtimes without PyTorch.

The exported graph takes ``crops``: ``(B, S, S, 3)`` uint8 RGB aligned faces (as
``ScorerSpec.crop`` makes them) and returns ``utility`` ``(B,)`` (the ensemble's raw output,
0-1) and ``score`` ``(B,)`` (0-100, clipped), with normalisation and the chosen test-time
views folded into the graph.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .errors import ConfigError
from .scorer import Scorer

__all__ = ["export_onnx"]


class _Deployable(nn.Module):
    """uint8 NHWC crops -> (utility, score); everything ``Scorer.score`` does, in one graph."""

    def __init__(self, scorer: Scorer):
        super().__init__()
        self.ensemble = scorer.ensemble
        spec = scorer.spec
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0)

    def forward(self, crops: torch.Tensor):
        x = (crops.permute(0, 3, 1, 2).float() - self.mean) / self.std
        utility = self.ensemble(x)
        return utility, torch.clamp(utility * 100.0, 0.0, 100.0)


def export_onnx(scorer: Scorer, path: str | Path, *, opset: int = 18) -> Path:
    """Write the scorer (members, views, preprocessing) as an ONNX file with a dynamic batch.

    Raises:
        ConfigError: the ``onnx`` exporter packages are missing (``pip install "facegate[onnx]"``).
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError('ONNX export needs the onnx extras: pip install "facegate[onnx]"') from None
    path = Path(path)
    model = _Deployable(scorer).eval().cpu()
    size = scorer.spec.input_size
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["crops"],
        output_names=["utility", "score"],
        dynamic_shapes={"crops": {0: batch}},
        opset_version=opset,
        dynamo=True,
        external_data=False,
    )
    return path
