"""Export facenet-pytorch's MTCNN networks (P-, R- and O-Net) to ONNX for :mod:`facegate.mtcnn`.

Needs torch, facenet-pytorch, onnx and onnxscript; imported only by tools and tests (the
runtime, :class:`facegate.mtcnn.OnnxMTCNN`, needs none of them). Each network is exported
exactly as facenet-pytorch defines its ``forward`` (softmax included, R-/O-Net's permute before
flattening), from the weight files facenet-pytorch ships, with metadata naming them:

* ``facegate_source``: ``"facenet-pytorch <version> <PNet|RNet|ONet>"``
* ``facegate_weights_sha256``: sha256 of ``facenet_pytorch/data/<pnet|rnet|onet>.pt``

Inputs and outputs (float32, NCHW, pixels already scaled as ``(x - 127.5) * 0.0078125``):

* ``pnet.onnx``: ``image`` (N, 3, H, W), H and W >= 12 -> ``reg`` (N, 4, H', W'), ``prob`` (N, 2, H', W')
* ``rnet.onnx``: ``image`` (N, 3, 24, 24) -> ``reg`` (N, 4), ``prob`` (N, 2)
* ``onet.onnx``: ``image`` (N, 3, 48, 48) -> ``reg`` (N, 4), ``landmarks`` (N, 10), ``prob`` (N, 2)

onnxruntime's ``PRelu`` kernel works in plain NCHW, so every PReLU forces the convolutions
around it out of onnxruntime's blocked (NCHWc) layout and back; each ``PRelu`` node is
therefore written as ``Relu(x) + slope * Min(x, 0)``, which gives bit-identical outputs (for
x > 0: x + slope * 0; otherwise 0 + slope * x) and makes the networks about 20% faster
(``expand_prelu=False`` keeps the plain export).

Regenerate the shipped graphs with::

    python -m facegate.mtcnn_export --out facegate/weights/mtcnn
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import warnings
from contextlib import redirect_stdout
from pathlib import Path

__all__ = ["NETS", "export_mtcnn", "facenet_version", "main", "weights_file"]

#: file stem -> (facenet-pytorch class name, output names, example input shape)
NETS = {
    "pnet": ("PNet", ("reg", "prob"), (2, 3, 48, 64)),
    "rnet": ("RNet", ("reg", "prob"), (2, 3, 24, 24)),
    "onet": ("ONet", ("reg", "landmarks", "prob"), (2, 3, 48, 48)),
}
OPSET = 18


def facenet_version() -> str:
    from importlib.metadata import version

    return version("facenet-pytorch")


def weights_file(stem: str) -> Path:
    """facenet-pytorch's own weight file for ``pnet``, ``rnet`` or ``onet``."""
    import facenet_pytorch

    return Path(facenet_pytorch.__file__).parent / "data" / f"{stem}.pt"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _expand_prelu(model) -> int:
    """Rewrite every ``PRelu(x, slope)`` node of ``model`` (in place) as
    ``Add(Relu(x), Mul(Min(x, 0), slope))``: the same numbers, bit for bit. Returns the count."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    zero = "facegate_prelu_zero"
    nodes, count = [], 0
    for node in graph.node:
        if node.op_type != "PRelu" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        x, slope = node.input
        (y,) = node.output
        name = node.name or f"prelu_{count}"
        nodes += [
            helper.make_node("Relu", [x], [f"{name}_pos"], f"{name}_relu"),
            helper.make_node("Min", [x, zero], [f"{name}_nonpos"], f"{name}_min"),
            helper.make_node("Mul", [f"{name}_nonpos", slope], [f"{name}_neg"], f"{name}_mul"),
            helper.make_node("Add", [f"{name}_pos", f"{name}_neg"], [y], f"{name}_add"),
        ]
        count += 1
    if count:
        graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), zero))
        del graph.node[:]
        graph.node.extend(nodes)
    return count


def _export_one(stem: str, path: Path, expand_prelu: bool) -> Path:
    import onnx
    import torch
    from facenet_pytorch.models import mtcnn as fmtcnn

    class_name, outputs, shape = NETS[stem]
    net = getattr(fmtcnn, class_name)(pretrained=False)
    source = weights_file(stem)
    net.load_state_dict(torch.load(source, map_location="cpu", weights_only=True))
    net.eval()
    batch = torch.export.Dim("batch", min=1, max=65536)
    if stem == "pnet":
        # H, W >= 12 (P-Net's receptive field); no upper limit worth stating.
        dynamic = {"x": {0: batch, 2: torch.export.Dim("height", min=12, max=32768),
                         3: torch.export.Dim("width", min=12, max=32768)}}
    else:
        dynamic = {"x": {0: batch}}
    example = torch.zeros(shape, dtype=torch.float32)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (example,),
            None,
            input_names=["image"],
            output_names=list(outputs),
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    model = program.model_proto
    if expand_prelu:
        _expand_prelu(model)
    model.doc_string = f"facenet-pytorch {class_name} (MTCNN), exported by facegate.mtcnn_export"
    del model.metadata_props[:]
    for key, value in {
        "facegate_source": f"facenet-pytorch {facenet_version()} {class_name}",
        "facegate_weights_sha256": _sha256(source),
    }.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(model.SerializeToString(deterministic=True))
    os.replace(tmp, path)
    return path


def export_mtcnn(out_dir: str | Path, *, expand_prelu: bool = True) -> list[Path]:
    """Write ``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx`` into ``out_dir`` (created if needed).

    ``expand_prelu``: write PReLU as ``Relu(x) + slope * Min(x, 0)`` (same outputs, faster in
    onnxruntime; see the module docstring).

    Export is deterministic: running it twice with the same torch, onnxscript and
    facenet-pytorch writes byte-identical files.

    Raises:
        facegate.errors.ConfigError: torch, facenet-pytorch or the ONNX exporter is missing.
    """
    try:
        import facenet_pytorch  # noqa: F401
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        from .errors import ConfigError

        raise ConfigError(
            f"MTCNN export needs torch, facenet-pytorch and the onnx extras ({exc}): "
            'pip install "facegate[onnx]"'
        ) from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [_export_one(stem, out_dir / f"{stem}.onnx", expand_prelu) for stem in NETS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m facegate.mtcnn_export",
        description="Export facenet-pytorch's MTCNN P-/R-/O-Net to ONNX for facegate.mtcnn.OnnxMTCNN.",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "weights" / "mtcnn",
                        help="output folder (default: facegate/weights/mtcnn)")
    parser.add_argument("--plain-prelu", action="store_true",
                        help="keep PRelu nodes as exported (slower in onnxruntime, same outputs)")
    args = parser.parse_args(argv)
    for path in export_mtcnn(args.out, expand_prelu=not args.plain_prelu):
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
