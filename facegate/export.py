"""Export the quality models to ONNX (needs torch and the ``onnx`` extra).

Two kinds of graph, both taking ``crops``: ``(B, S, S, 3)`` uint8 RGB aligned faces (as
``ScorerSpec.crop`` makes them), with the spec's normalisation folded in:

- member graphs, ``<arch>.onnx`` beside ``<arch>.pt``, returning ``utility`` ``(B,)``: what
  the default (onnx) backend of :func:`facegate.scorer.create_scorer` runs, views applied
  outside. Each carries the sha256 of its ``.pt`` file. ``python -m facegate.export
  --members facegate/weights`` regenerates the shipped ones (and the spec's digests).
- one graph for other runtimes (``facegate export``): the whole ensemble with the chosen
  test-time views, returning ``utility`` and ``score`` on the spec's range.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import torch
import torch.nn as nn

from .errors import ConfigError
from .models import TorchScorer, load_member, to_tensor
from .scorer import default_weights_dir
from .spec import ScorerSpec, calibration_tails, file_sha256

__all__ = ["export_onnx", "export_member_graphs"]


class _Normalised(nn.Module):
    """uint8 NHWC crops -> the spec's normalised NCHW input (:func:`to_tensor`) -> ``net``."""

    def __init__(self, net: nn.Module, spec: ScorerSpec):
        super().__init__()
        self.net = net
        self.spec = spec

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(to_tensor(self.spec, crops))


class _Deployable(nn.Module):
    """uint8 NHWC crops -> (utility, score): what ``TorchScorer.score`` does, in one graph;
    the spec's score calibration as a sum of clamped linear pieces between the knots and
    ``ScorerSpec.to_score``'s exponential tails beyond them."""

    def __init__(self, scorer: TorchScorer):
        super().__init__()
        self.ensemble = _Normalised(scorer.ensemble, scorer.spec)
        self.low, self.high = (float(v) for v in scorer.spec.score_range)
        knots = [(float(x), float(y)) for x, y in scorer.spec.score_calibration]
        self.pieces = [(x0, x1, (y1 - y0) / (x1 - x0)) for (x0, y0), (x1, y1) in zip(knots, knots[1:]) if x1 > x0]
        self.start = knots[0][1] if knots else None
        if knots:
            (self.first, self.last), self.rates = (knots[0], knots[-1]), calibration_tails(knots)

    def forward(self, crops: torch.Tensor):
        utility = self.ensemble(crops)
        value = utility
        if self.start is not None:
            value = torch.full_like(utility, self.start)
            for x0, x1, slope in self.pieces:
                value = value + slope * (torch.clamp(utility, x0, x1) - x0)
            (x0, y0), (xn, yn) = self.first, self.last
            below = y0 * torch.exp(self.rates[0] * torch.clamp(utility - x0, max=0.0))
            above = 1.0 - (1.0 - yn) * torch.exp(-self.rates[1] * torch.clamp(utility - xn, min=0.0))
            value = torch.where(utility < x0, below, torch.where(utility > xn, above, value))
        return utility, torch.clamp(self.low + value * (self.high - self.low), self.low, self.high)


def _write(model: nn.Module, path: Path, size: int, outputs: list[str], metadata: dict[str, str],
           opset: int) -> Path:
    try:
        import onnx
        import onnxscript  # noqa: F401
    except ImportError:
        raise ConfigError('ONNX export needs the onnx extras: pip install "facegate[onnx]"') from None
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
        torch.onnx.export(model.eval().cpu(), (example,), str(path), input_names=["crops"], output_names=outputs,
                          dynamic_shapes={"crops": {0: batch}}, opset_version=opset, dynamo=True,
                          external_data=False, verbose=False)
    graph = onnx.load(str(path))
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value)
    onnx.save(graph, str(path))
    return path


def export_onnx(scorer: TorchScorer, path: str | Path, *, opset: int = 18) -> Path:
    """Write the scorer (members, views, preprocessing, score range) as one ONNX file with a
    dynamic batch."""
    spec = scorer.spec
    metadata = {"facegate_views": ",".join(scorer.views), "facegate_spec": spec.name,
                "facegate_input_size": str(spec.input_size), "facegate_members": ",".join(scorer.member_names),
                "facegate_score_scale": spec.score_scale}
    return _write(_Deployable(scorer), Path(path), spec.input_size, ["utility", "score"], metadata, opset)


def export_member_graphs(weights: str | Path | None = None, *, out: str | Path | None = None,
                         update_spec: bool = False, opset: int = 18) -> list[Path]:
    """Write ``<arch>.onnx`` for each member of a weights folder (into ``out``, default the
    folder itself), each carrying the sha256 of the ``.pt`` it was made from.

    ``update_spec`` records those digests in the folder's ``spec.json`` (for weights that
    a training run wrote without them).
    """
    folder = Path(weights) if weights is not None else default_weights_dir()
    out = Path(out) if out is not None else folder
    spec = ScorerSpec.load(folder / "spec.json")
    digests = {name: file_sha256(folder / f"{name}.pt") for name in spec.members}
    if update_spec and digests != spec.member_sha256:
        spec = spec.with_(member_sha256=digests)
        spec.save(folder / "spec.json")
    paths = []
    for name in spec.members:
        net = load_member(spec.verify(folder, name), name)
        model = _Normalised(net, spec)
        metadata = {"facegate_member": name, "facegate_spec": spec.name,
                    "facegate_input_size": str(spec.input_size), "facegate_weights_sha256": digests[name]}
        paths.append(_write(_FlatOutput(model), out / f"{name}.onnx", spec.input_size, ["utility"], metadata, opset))
    return paths


class _FlatOutput(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, crops):
        return self.model(crops).reshape(-1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate the ONNX graphs shipped beside the weights.")
    parser.add_argument("--members", type=Path, default=None,
                        help="weights folder whose member graphs to (re)write (default: the shipped weights)")
    parser.add_argument("--update-spec", action="store_true", help="record the members' sha256 in spec.json")
    parser.add_argument("--mtcnn", type=Path, default=None,
                        help="also write MTCNN's P/R/O-Net graphs into this folder (facegate/weights/mtcnn)")
    args = parser.parse_args(argv)
    for path in export_member_graphs(args.members, update_spec=args.update_spec):
        print(path)
    if args.mtcnn is not None:
        from .mtcnn_export import export_mtcnn

        for path in export_mtcnn(args.mtcnn):
            print(path)


if __name__ == "__main__":
    main()
