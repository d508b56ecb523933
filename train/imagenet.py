"""An ImageNet start for the MobileNetV3-Small member, read from Google's quantized TFLite model.

The model hub is out of reach here; ``../shared/models/mobilenet_v3_small_imagenet_uint8.tflite``
(TF-slim's quantization-aware-trained MobileNetV3-Small 1.0, 224 px; Apache-2.0 code, trained
on ImageNet: research and education) is the one ImageNet start on these machines. This module
reads it with the ``tflite`` FlatBuffers parser (no TensorFlow), dequantizes every tensor
(``(q - zero point) x scale``; the folded int32 biases carry their own scale, input scale x
weight scale) and loads it into torchvision's ``mobilenet_v3_small(num_classes=1001)``
unchanged: SE convolutions with plain biases, ``Conv_2`` as ``classifier[0]``, ``Logits`` as
``classifier[3]`` (TFLite class i is torchvision's i - 1, class 0 being "background"), batch norm
folded into the convolutions and so set to identity with the folded bias.

Two things decide whether the network is TFLite's (``check``, ``python -m train.imagenet
--check``): TF's 'SAME' padding, which pads the five stride-2 convolutions (0, 1) for 3x3 and
(1, 2) for 5x5 kernels where torchvision pads symmetrically (:func:`tf_padded` makes the exact
network for the check; the member keeps torchvision's layout and learns the one-pixel shift),
and the input scaling, (x - 128) / 127 against the spec's mean and std (folded into the first
convolution by :func:`fold_input_scaling`).

The batch norms hold identity statistics, which a network in train mode replaces by each
batch's: :func:`refit_batch_norm` measures every batch norm's input on face crops and sets
``running_mean``/``running_var`` to them with weight and bias chosen so that the eval-mode
network is unchanged, so train mode starts from the same function as eval mode.

    python -m train.imagenet --shared ../shared --csv runs/release/labels/labels.csv --out runs/release/imagenet
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torchvision

from facegate.spec import ScorerSpec

from .recipe import IMAGENET_TERMS as TERMS

__all__ = ["TFLITE_FILE", "read_tflite", "from_tflite", "tf_padded", "fold_input_scaling", "refit_batch_norm",
           "imagenet_backbone", "write_start", "check", "TERMS"]

#: The file in ``SHARED/models`` (the terms a model card built on it names: :data:`TERMS`).
TFLITE_FILE = "mobilenet_v3_small_imagenet_uint8.tflite"
#: TFLite's input scaling: real value = (x - 128) / 127 for uint8 x.
TFLITE_INPUT = (128.0, 127.0)


def read_tflite(path: str | Path) -> dict[str, np.ndarray]:
    """Every constant tensor of the model, dequantized to float32, by its TF-slim name."""
    import tflite

    buf = Path(path).read_bytes()
    model = tflite.Model.GetRootAsModel(buf, 0)
    sub = model.Subgraphs(0)
    kinds = {tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT32: np.int32,
             tflite.TensorType.INT8: np.int8, tflite.TensorType.FLOAT32: np.float32}
    out = {}
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data is None or t.Type() not in kinds:
            continue  # an activation: no stored data
        shape = tuple(t.ShapeAsNumpy()) if t.ShapeLength() else ()
        values = np.frombuffer(data.tobytes(), dtype=kinds[t.Type()]).reshape(shape).astype(np.float64)
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            scale, zero = float(q.Scale(0)), float(q.ZeroPoint(0)) if q.ZeroPointLength() else 0.0
            values = (values - zero) * scale
        out[t.Name().decode()] = values.astype(np.float32)
    return out


def _weights(tensors: dict, prefix: str) -> np.ndarray:
    return tensors[f"{prefix}/weights_quant/FakeQuantWithMinMaxVars"]


def _bias(tensors: dict, prefix: str, folded: bool) -> np.ndarray:
    return tensors[f"{prefix}/{'Conv2D_Fold_bias' if folded else 'Conv2D_bias'}"]


def _set_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d, weight: np.ndarray, bias: np.ndarray) -> None:
    """A convolution with its batch norm folded in: the weights, and the norm as identity
    plus the folded bias."""
    if weight.shape[0] == 1 and conv.groups > 1:  # depthwise [1, H, W, C] -> [C, 1, H, W]
        w = weight.transpose(3, 0, 1, 2)
    else:  # OHWI -> OIHW
        w = weight.transpose(0, 3, 1, 2)
    if tuple(w.shape) != tuple(conv.weight.shape):
        raise ValueError(f"weights {w.shape} do not fit {tuple(conv.weight.shape)}")
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
        bn.weight.fill_(1.0)
        bn.bias.copy_(torch.from_numpy(bias))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)


def _set_plain(layer: nn.Module, weight: np.ndarray, bias: np.ndarray) -> None:
    w = weight.transpose(0, 3, 1, 2) if isinstance(layer, nn.Conv2d) else weight.reshape(weight.shape[0], -1)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)).reshape(layer.weight.shape))
        layer.bias.copy_(torch.from_numpy(bias))


def _named_parts(block: nn.Sequential):
    """A torchvision inverted residual's layers under TF-slim's names: ``expand`` (absent
    when the expansion is 1), ``depthwise``, ``squeeze_excite`` (absent in two blocks), ``project``."""
    from torchvision.ops.misc import SqueezeExcitation

    layers = list(block)
    convs = [layer for layer in layers if not isinstance(layer, SqueezeExcitation)]
    names = (["expand"] if convs[0][0].groups == 1 else []) + ["depthwise", "project"]
    named = dict(zip(map(id, convs), names))
    return [("squeeze_excite" if isinstance(layer, SqueezeExcitation) else named[id(layer)], layer) for layer in layers]


def from_tflite(path: str | Path) -> nn.Module:
    """torchvision's ``mobilenet_v3_small(num_classes=1001)`` with the TFLite model's weights
    (symmetric padding and TFLite's input scaling: :func:`tf_padded`, :func:`fold_input_scaling`)."""
    tensors = read_tflite(path)
    net = torchvision.models.mobilenet_v3_small(weights=None, num_classes=1001)
    stem = net.features[0]
    _set_conv_bn(stem[0], stem[1], _weights(tensors, "MobilenetV3/Conv"), _bias(tensors, "MobilenetV3/Conv", True))
    for index in range(11):
        name = "MobilenetV3/expanded_conv" + (f"_{index}" if index else "")
        for part, layer in _named_parts(net.features[index + 1].block):
            prefix = f"{name}/{part}"
            if part == "squeeze_excite":
                _set_plain(layer.fc1, _weights(tensors, f"{prefix}/Conv"), _bias(tensors, f"{prefix}/Conv", False))
                _set_plain(layer.fc2, _weights(tensors, f"{prefix}/Conv_1"), _bias(tensors, f"{prefix}/Conv_1", False))
            else:
                folded = tensors.get(f"{prefix}/depthwise_Fold_bias", tensors.get(f"{prefix}/Conv2D_Fold_bias"))
                _set_conv_bn(layer[0], layer[1], _weights(tensors, prefix), folded)
    last = net.features[12]
    _set_conv_bn(last[0], last[1], _weights(tensors, "MobilenetV3/Conv_1"), _bias(tensors, "MobilenetV3/Conv_1", True))
    _set_plain(net.classifier[0], _weights(tensors, "MobilenetV3/Conv_2"), _bias(tensors, "MobilenetV3/Conv_2", False))
    logits = "MobilenetV3/Logits/Conv2d_1c_1x1"
    _set_plain(net.classifier[3], _weights(tensors, logits), _bias(tensors, logits, False))
    return net.eval()


class _SamePadded(nn.Module):
    """A stride-2 convolution with TF's 'SAME' padding: more on the bottom and right."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        k = conv.kernel_size[0]
        before, after = (k - 2) // 2, k - 2 - (k - 2) // 2 if k > 2 else 0
        self.pad = nn.ZeroPad2d((before, after, before, after))
        conv.padding = (0, 0)
        self.conv = conv

    def forward(self, x):
        return self.conv(self.pad(x))


def tf_padded(net: nn.Module) -> nn.Module:
    """``net`` with every stride-2 convolution padded as TF's 'SAME' pads it (in place)."""
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d) and child.stride == (2, 2):
                setattr(module, name, _SamePadded(child))
    return net


def fold_input_scaling(net: nn.Module, mean, std) -> None:
    """Make the first convolution take the spec's input, ``(x/255 - mean) / std``, where the
    TFLite weights expect ``(x - 128) / 127``: per input channel the TFLite input is
    ``a z + b``, so the weights are scaled by ``a`` and the constant ``b`` moves into the
    folded bias (exact away from the border, where the zero padding differs)."""
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    centre, spread = TFLITE_INPUT
    a = 255.0 * std / spread
    b = (255.0 * mean - centre) / spread
    conv, bn = net.features[0][0], net.features[0][1]
    with torch.no_grad():
        w = conv.weight.double()
        bn.bias += (w * torch.from_numpy(b).view(1, 3, 1, 1)).sum(dim=(1, 2, 3)).float()
        conv.weight.copy_((w * torch.from_numpy(a).view(1, 3, 1, 1)).float())


def refit_batch_norm(features: nn.Module, batches) -> int:
    """Give every batch norm in ``features`` the mean and variance of its input on
    ``batches`` (tensors as the member takes them), with weight and bias chosen so that the
    network in eval mode computes what it computed before: ``(x - m) / s * g + b`` is the old
    ``x + bias`` when ``g = s`` and ``b = m + bias``. Returns how many were refitted."""
    norms = [m for m in features.modules() if isinstance(m, nn.BatchNorm2d)]
    sums = {id(m): [0.0, 0.0, 0] for m in norms}

    def hook(module, inputs, _output):
        x = inputs[0].double()
        acc = sums[id(module)]
        acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
        acc[1] = acc[1] + (x * x).sum(dim=(0, 2, 3))
        acc[2] += x.shape[0] * x.shape[2] * x.shape[3]

    handles = [m.register_forward_hook(hook) for m in norms]
    features.eval()
    with torch.inference_mode():
        for batch in batches:
            features(batch)
    for h in handles:
        h.remove()
    with torch.no_grad():
        for m in norms:
            total, squares, n = sums[id(m)]
            mean = total / n
            var = (squares / n - mean * mean).clamp_min(1e-6)
            # before: y = (x - rm) / sqrt(rv + eps) * w + b, with the stored values
            gain = m.weight.double() / torch.sqrt(m.running_var.double() + m.eps)
            shift = m.bias.double() - m.running_mean.double() * gain  # y = x * gain + shift
            sd = torch.sqrt(var + m.eps)
            m.running_mean.copy_(mean.float())
            m.running_var.copy_(var.float())
            m.weight.copy_((gain * sd).float())
            m.bias.copy_((shift + gain * mean).float())
    return len(norms)


def imagenet_backbone(path: str | Path, spec: ScorerSpec, crops: np.ndarray | None = None, batch: int = 128) -> dict:
    """The member's backbone file content (torchvision key names, as
    :func:`facegate.models.load_backbone_weights` reads them): the TFLite weights, the spec's
    input scaling folded in, and the batch norms refitted on ``crops`` (``(N, S, S, 3)`` uint8
    aligned crops; None: left as identity)."""
    from facegate.models import backbone_state_dict, build_member, to_tensor

    net = from_tflite(path)
    fold_input_scaling(net, spec.mean, spec.std)
    member = build_member("mobilenet_v3_small")
    member.features.load_state_dict(net.features.state_dict())
    refitted = 0
    if crops is not None and len(crops):
        refitted = refit_batch_norm(member.features, (to_tensor(spec, crops[i : i + batch])
                                                      for i in range(0, len(crops), batch)))
    return {"arch": "mobilenet_v3_small", "state_dict": backbone_state_dict(member),
            "source": f"{Path(path).name} (ImageNet), batch norm refitted on {len(crops) if refitted else 0} crops",
            "terms": TERMS}


# -- the mapping check -------------------------------------------------------------------------
def _interpreter_logits(path: Path, images: list[np.ndarray]) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = []
    for image in images:
        interp.set_tensor(inp["index"], image[None])
        interp.invoke()
        q = interp.get_tensor(out["index"]).astype(np.float64)[0]
        scale, zero = out["quantization"]
        rows.append((q - zero) * scale)
    return np.stack(rows)


def check(path: str | Path, photos: list[Path], tf_pad: bool = True) -> dict:
    """The mapping's check: top classes of the PyTorch network and of a TFLite interpreter
    (``ai-edge-litert``) on the same 224 px photos. Returns the agreements."""
    from PIL import Image

    images = [np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR)) for p in photos]
    lite = _interpreter_logits(Path(path), images)  # softmax output, dequantized
    net = from_tflite(path)
    if tf_pad:
        tf_padded(net)
    x = torch.from_numpy((np.stack(images).astype(np.float32) - TFLITE_INPUT[0]) / TFLITE_INPUT[1]).permute(0, 3, 1, 2)
    with torch.inference_mode():
        ours = torch.softmax(net(x), 1).numpy()
    # both have 1001 outputs, 0 being background (torchvision's 1000-class index is i - 1)
    top1 = float(np.mean(ours.argmax(1) == lite.argmax(1)))
    top5_lite = [set(np.argsort(-r)[:5]) for r in lite]
    in_top5 = float(np.mean([o.argmax() in t for o, t in zip(ours, top5_lite)]))
    overlap = float(np.mean([len(set(np.argsort(-o)[:5]) & t) / 5 for o, t in zip(ours, top5_lite)]))
    corr = float(np.mean([np.corrcoef(o, l)[0, 1] for o, l in zip(ours, lite)]))
    return {"photos": len(images), "tf_padding": tf_pad, "top1_agreement": top1, "top1_in_tflite_top5": in_top5,
            "top5_overlap": overlap, "probability_correlation": corr}


def write_start(shared: Path, csv: Path | None, spec: ScorerSpec, path: Path, val_fraction: float = 0.2,
                split_seed: int = 0, refit_crops: int = 4096) -> Path:
    """``path``: the ImageNet backbone for ``spec``'s input, its batch norms refitted on up to
    ``refit_crops`` training crops of the labels ``csv`` (a fixed random draw; the validation
    people are not looked at)."""
    from .data import load_crops, read_csv, split

    crops = None
    if csv is not None:
        samples = read_csv(csv)
        train_idx, _ = split(samples, val_fraction, split_seed)
        crops, kept = load_crops(samples, spec)
        keep = set(int(i) for i in train_idx)
        rows = np.array([p for p, k in enumerate(kept) if int(k) in keep])
        rows = np.random.default_rng(0).permutation(rows)[:refit_crops]
        crops = crops[np.sort(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(imagenet_backbone(shared / "models" / TFLITE_FILE, spec, crops), partial)
    partial.replace(path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--csv", type=Path, default=None, help="labels whose training crops refit the batch norms")
    parser.add_argument("--out", type=Path, default=None, help="folder for mobilenet_v3_small.backbone.pt")
    parser.add_argument("--check", type=int, default=0, metavar="N",
                        help="compare top classes with the TFLite interpreter on N LFW photos (needs ai-edge-litert)")
    args = parser.parse_args(argv)
    if args.check:
        photos = sorted((args.shared / "data" / "lfw-deepfunneled").rglob("*.jpg"))[:: 97][: args.check]
        for tf_pad in (True, False):
            print(json.dumps(check(args.shared / "models" / TFLITE_FILE, photos, tf_pad)))
    if args.out:
        print(write_start(args.shared, args.csv, ScorerSpec(), args.out / "mobilenet_v3_small.backbone.pt"))


if __name__ == "__main__":
    main()
