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

__all__ = ["export_onnx", "OnnxScorer", "weights_digest", "shipped_graph"]


def weights_digest(folder: str | Path, members) -> str:
    """sha256 over the members' weight files: ties an exported graph to the weights it holds."""
    import hashlib

    digest = hashlib.sha256()
    for name in members:
        digest.update((Path(folder) / f"{name}.pt").read_bytes())
    return digest.hexdigest()


def shipped_graph(views: str) -> Path | None:
    """The graph pre-exported beside the shipped weights for these views, if there is one."""
    from .scorer import default_weights_dir

    path = default_weights_dir() / f"ensemble_{views}.onnx"
    return path if isinstance(views, str) and path.is_file() else None


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
    import onnx

    graph = onnx.load(str(path))
    for key, value in {"facegate_views": ",".join(scorer.views), "facegate_spec": scorer.spec.name,
                       "facegate_input_size": str(scorer.spec.input_size),
                       "facegate_members": ",".join(scorer.member_names),
                       "facegate_weights_sha256": weights_digest(scorer.weights_dir, scorer.member_names)}.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    return path


class OnnxScorer:
    """Scores aligned crops through an exported graph with onnxruntime: the same interface
    as :class:`facegate.scorer.Scorer`, without per-member scores, and several times less
    overhead per call than PyTorch at batch 1 (docs/performance.md).

    Args:
        path: a file written by :func:`export_onnx` (``facegate export``).
        weights: the weights folder it was exported from, for the spec (default: shipped).
        threads: onnxruntime intra-op threads (default: torch's current setting).
    """

    member_names: tuple[str, ...] = ()

    def __init__(self, path: str | Path, weights: str | Path | None = None, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ConfigError('scoring through ONNX needs onnxruntime: pip install "facegate[onnx]"') from None
        from .scorer import default_weights_dir
        from .spec import ScorerSpec

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ConfigError(f"{path}: cannot load ONNX graph ({exc})") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        self.spec = ScorerSpec.load(Path(weights or default_weights_dir()) / "spec.json")
        if meta.get("facegate_spec") not in (None, self.spec.name):
            raise ConfigError(f"{path}: exported from {meta['facegate_spec']}, not {self.spec.name}")
        folder = Path(weights or default_weights_dir())
        if "facegate_weights_sha256" in meta and \
                meta["facegate_weights_sha256"] != weights_digest(
                    folder, meta.get("facegate_members", ",".join(self.spec.members)).split(",")):
            raise ConfigError(f"{path}: exported from other weights than those in {folder} (re-export it)")
        self.views = tuple(meta.get("facegate_views", "unknown").split(","))

    def score(self, crops) -> tuple:
        import numpy as np

        if len(crops) == 0:
            return np.zeros(0), np.zeros((0, 0))
        _, score = self._session.run(None, {"crops": np.ascontiguousarray(crops, dtype=np.uint8)})
        return score.astype(np.float64), np.zeros((0, len(crops)))
