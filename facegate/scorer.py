"""Load the quality ensemble with its spec and score aligned face crops."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import WeightsError
from .models import QualityEnsemble, QualityNet, build_member
from .spec import ScorerSpec

__all__ = ["Scorer", "default_weights_dir", "load_member"]


def default_weights_dir() -> Path:
    """The weights shipped inside the package."""
    return Path(str(resources.files("facegate") / "weights"))


def load_member(path: str | Path, arch: str | None = None) -> QualityNet:
    """One member network from a facegate checkpoint (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
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


class Scorer:
    """The ensemble, its spec, and a device: aligned crops in, scores (0-100) out.

    Args:
        weights: folder with ``spec.json`` and one ``<arch>.pt`` per member
            (default: the weights shipped in ``facegate/weights``).
        views: test-time views, ``"none"``, ``"flip"`` or ``"full"``.
        members: use only these members (e.g. to score with one model).
        device: torch device.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        *,
        views: str | Sequence[str] = "full",
        members: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
    ):
        folder = Path(weights) if weights is not None else default_weights_dir()
        spec_path = folder / "spec.json"
        if not spec_path.is_file():
            raise WeightsError(f"{folder}: no spec.json; not a facegate weights folder")
        self.spec = ScorerSpec.load(spec_path)
        names = tuple(members) if members else self.spec.members
        unknown = set(names) - set(self.spec.members)
        if unknown:
            raise WeightsError(f"{folder}: has no member(s) {sorted(unknown)}; it has {list(self.spec.members)}")
        self.member_names = names
        self.weights_dir = folder
        self.device = torch.device(device)
        nets = [load_member(folder / f"{name}.pt", name) for name in names]
        self.ensemble = QualityEnsemble(nets, views).to(self.device).eval()

    @property
    def views(self) -> tuple[str, ...]:
        return self.ensemble.views

    def score(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score aligned crops.

        Args:
            crops: ``(N, S, S, 3)`` uint8 RGB, ``S`` = ``spec.input_size``.

        Returns:
            ``(N,)`` ensemble scores and ``(M, N)`` member scores, on 0-100.
        """
        if len(crops) == 0:
            return np.zeros(0), np.zeros((len(self.member_names), 0))
        with torch.inference_mode():
            x = self.spec.to_tensor(crops).to(self.device)
            per_member = self.ensemble.forward_members(x).cpu().numpy()
        return self.spec.to_score(per_member.mean(0)), self.spec.to_score(per_member)
