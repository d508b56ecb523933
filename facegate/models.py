"""Quality models in PyTorch: two small torchvision backbones with MLP heads, their ensemble
(arXiv 2509.10114), and the torch backend of :func:`facegate.scorer.create_scorer`.
Imported only for training, export and ``backend="torch"``.

Every member shares one contract: ``forward_features`` gives pooled backbone features
``(B, C)``, ``forward_head`` maps them to one score per image ``(B,)``, so members are
built, trained and swapped alike. Inputs are ``(B, 3, H, W)`` float tensors, RGB,
normalised as the spec says (:func:`to_tensor`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torchvision

from .errors import ConfigError, WeightsError
from .scores import Scores, check_crops, combine, open_weights, resolve_views
from .spec import ScorerSpec

__all__ = [
    "QualityNet",
    "QualityEnsemble",
    "TorchScorer",
    "apply_views",
    "build_member",
    "list_members",
    "load_backbone_weights",
    "load_member",
    "to_tensor",
]


def to_tensor(spec: ScorerSpec, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 RGB -> ``(N, 3, H, W)`` float tensor, normalised as ``spec`` says."""
    x = torch.as_tensor(crops).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    return (x - mean) / std


def _mlp(sizes: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class QualityNet(nn.Module):
    """A backbone's feature extractor, global average pooling, and an MLP head.

    Args:
        arch: member name, one of :func:`list_members`.
        features: module mapping ``(B, 3, H, W)`` to ``(B, C, h, w)``.
        head_sizes: MLP layer widths from ``C`` down to 1.
        dropout: dropout after each hidden layer of the head.
    """

    def __init__(self, arch: str, features: nn.Module, head_sizes: Sequence[int], dropout: float = 0.2):
        super().__init__()
        self.arch = arch
        self.features = features
        self.head = _mlp(head_sizes, dropout)
        self.num_features = head_sizes[0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, C)``."""
        return self.features(x).mean(dim=(2, 3))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` -> ``(B,)``."""
        return self.head(features).squeeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B,)`` predicted quality."""
        return self.forward_head(self.forward_features(x))

    def head_parameters(self) -> Iterable[nn.Parameter]:
        return self.head.parameters()

    def backbone_parameters(self) -> Iterable[nn.Parameter]:
        return self.features.parameters()


def _mobilenet_v3_small() -> QualityNet:
    net = torchvision.models.mobilenet_v3_small(weights=None)
    return QualityNet("mobilenet_v3_small", net.features, (576, 288, 1))


def _shufflenet_v2_x1_0() -> QualityNet:
    net = torchvision.models.shufflenet_v2_x1_0(weights=None)
    features = nn.Sequential(net.conv1, net.maxpool, net.stage2, net.stage3, net.stage4, net.conv5)
    return QualityNet("shufflenet_v2_x1_0", features, (1024, 512, 256, 1))


_MEMBERS: dict[str, Callable[[], QualityNet]] = {
    "mobilenet_v3_small": _mobilenet_v3_small,
    "shufflenet_v2_x1_0": _shufflenet_v2_x1_0,
}


def list_members() -> list[str]:
    return sorted(_MEMBERS)


def build_member(arch: str) -> QualityNet:
    """A freshly initialised member network."""
    try:
        return _MEMBERS[arch]()
    except KeyError:
        raise ConfigError(f"unknown quality model {arch!r}; choose from {list_members()}") from None


# torchvision's ImageNet checkpoints name the feature layers differently for each family.
_BACKBONE_PREFIXES = {
    "mobilenet_v3_small": {"features.": ""},
    "shufflenet_v2_x1_0": {
        "conv1.": "0.",
        "stage2.": "2.",
        "stage3.": "3.",
        "stage4.": "4.",
        "conv5.": "5.",
    },
}


def load_backbone_weights(net: QualityNet, path: str) -> None:
    """Load pretrained backbone weights (e.g. torchvision's ImageNet checkpoint for the
    same architecture) into ``net.features``; classifier keys are ignored.

    Raises:
        WeightsError: the file cannot be read or does not fit the backbone.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise WeightsError(f"{path}: cannot load backbone weights ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    renamed = {}
    for key, value in state.items():
        for prefix, target in _BACKBONE_PREFIXES[net.arch].items():
            if key.startswith(prefix):
                renamed[target + key[len(prefix):]] = value
    if not renamed:
        raise WeightsError(f"{path}: no {net.arch} backbone keys found")
    try:
        net.features.load_state_dict(renamed, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: does not fit the {net.arch} backbone ({exc})") from None


def backbone_state_dict(net: QualityNet) -> dict[str, torch.Tensor]:
    """``net.features``' weights under torchvision's key names: the file
    :func:`load_backbone_weights` reads (so a backbone trained here passes for a pretrained one)."""
    out = {}
    for key, value in net.features.state_dict().items():
        for prefix, local in _BACKBONE_PREFIXES[net.arch].items():
            if key.startswith(local):
                out[prefix + key[len(local):]] = value
                break
    return out


def apply_views(x: torch.Tensor, views: Sequence[str]) -> torch.Tensor:
    """Stack test-time views along the batch: ``(B, 3, H, W)`` -> ``(V*B, 3, H, W)``."""
    out = []
    for view in views:
        if view == "identity":
            out.append(x)
        elif view == "hflip":
            out.append(x.flip(3))
        elif view == "vflip":
            out.append(x.flip(2))
        else:
            raise ConfigError(f"unknown test-time view {view!r}")
    return torch.cat(out, 0)


def load_member(path: str | Path, arch: str | None = None) -> QualityNet:
    """One member network from a facegate checkpoint (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise WeightsError(f"{path}: cannot load weights ({exc})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "arch" not in ckpt:
        raise WeightsError(f"{path}: not a facegate checkpoint (needs 'arch' and 'state_dict')")
    if arch is not None and ckpt["arch"] != arch:
        raise WeightsError(f"{path}: holds {ckpt['arch']}, expected {arch}")
    net = build_member(ckpt["arch"])
    try:
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: weights do not fit {ckpt['arch']} ({exc})") from None
    return net.eval()


class QualityEnsemble(nn.Module):
    """Average of member predictions, each first averaged over test-time views.

    All views of a batch go through each member in one forward pass.

    Args:
        members: trained :class:`QualityNet` modules.
        views: name in :data:`VIEWS` or a sequence of view names.
    """

    def __init__(self, members: Sequence[QualityNet], views: str | Sequence[str] = "full"):
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.views = resolve_views(views)

    def forward_members(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(M, B)``: each member's view-averaged prediction."""
        batch = x.shape[0]
        stacked = apply_views(x, self.views)
        return torch.stack(
            [m(stacked).view(len(self.views), batch).mean(0) for m in self.members], 0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B,)``."""
        return self.forward_members(x).mean(0)


def count_macs(net: nn.Module, size: int) -> int:
    """Multiply-accumulates of one forward pass on a ``(1, 3, size, size)`` input."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net.eval()(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() // 2


class TorchScorer:
    """The ensemble in PyTorch (``create_scorer(backend="torch")``): the same
    :class:`facegate.scorer.Scorer` interface as the ONNX backend, on any torch device.
    Member files are checked against the spec's sha256 before they are loaded."""

    backend = "torch"

    def __init__(self, weights: str | Path | None = None, *, views: str | Sequence[str] = "full",
                 members: Sequence[str] | None = None, device: str | torch.device = "cpu", threads: int | None = None):
        self.weights_dir, self.spec, self.member_names = open_weights(weights, members)
        folder = self.weights_dir
        from .runtime import torch_imported

        torch_imported()  # torch's pool is the process's: sized once, from its budget
        self.device = torch.device(device)
        nets = [load_member(self.spec.verify(folder, name), name) for name in self.member_names]
        self.ensemble = QualityEnsemble(nets, resolve_views(views, self.spec)).to(self.device).eval()
        self.views = self.ensemble.views

    def score(self, crops: np.ndarray) -> Scores:
        crops = check_crops(crops, self.spec.input_size)
        if not len(crops):
            return Scores(np.zeros(0), {n: np.zeros(0) for n in self.member_names})
        with torch.inference_mode():
            x = to_tensor(self.spec, crops).to(self.device)
            raw = self.ensemble.forward_members(x).double().cpu().numpy()  # (M, N), view-averaged
        return combine(self.spec, self.member_names, raw, 1)
