"""What every scorer shares, whatever runs it: the :class:`Scores` value and the
:class:`Scorer` protocol, the test-time views, and how a weights folder is opened and its
crops checked. Both backends build on this (:mod:`facegate.scorer`'s onnxruntime one,
:mod:`facegate.models`' torch one); :func:`facegate.scorer.create_scorer` chooses between them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .errors import ConfigError, WeightsError
from .frozen import FrozenValue
from .registry import Weights, weights_folder
from .spec import ScorerSpec

__all__ = ["VIEWS", "Scores", "Scorer", "resolve_views", "view_batch", "open_weights", "check_crops", "combine"]

#: Test-time view sets: identity, then horizontal flip, then vertical flip. With a spec,
#: ``"full"`` is every view its weights were trained for (:attr:`ScorerSpec.views`).
VIEWS: dict[str, tuple[str, ...]] = {
    "none": ("identity",),
    "flip": ("identity", "hflip"),
    "full": ("identity", "hflip", "vflip"),
}

def resolve_views(views: str | Sequence[str], spec: ScorerSpec | None = None) -> tuple[str, ...]:
    """A view-set name (:data:`VIEWS`) or a sequence of view names -> view names; ``"full"``
    means the views ``spec`` says its weights were trained for."""
    if isinstance(views, str):
        if views == "full" and spec is not None:
            return tuple(spec.views)
        if views not in VIEWS:
            raise ConfigError(f"unknown view set {views!r}; choose from {sorted(VIEWS)}")
        return VIEWS[views]
    views = tuple(views)
    for view in views:
        if view not in VIEWS["full"]:
            raise ConfigError(f"unknown test-time view {view!r}; choose from {VIEWS['full']}")
    return views


def view_batch(crops: np.ndarray, views: Sequence[str]) -> np.ndarray:
    """Stack test-time views of ``(B, H, W, 3)`` crops along the batch: ``(V*B, H, W, 3)``."""
    flips = {"identity": crops, "hflip": crops[:, :, ::-1], "vflip": crops[:, ::-1]}
    return np.ascontiguousarray(np.concatenate([flips[v] for v in views], 0))


@dataclass(frozen=True, eq=False)
class Scores(FrozenValue):
    """Scores of a batch of crops on the spec's scale.

    Attributes:
        ensemble: ``(N,)`` the ensemble's score of each crop.
        members: member name -> ``(N,)`` that member's score (each averaged over the views).
    """

    ensemble: np.ndarray
    members: dict[str, np.ndarray]

    def member_scores(self, index: int) -> dict[str, float]:
        """Every member's score of crop ``index``."""
        return {name: float(values[index]) for name, values in self.members.items()}


class Scorer(Protocol):
    """What both backends implement: aligned ``(N, S, S, 3)`` uint8 RGB crops in, :class:`Scores` out."""

    spec: ScorerSpec
    views: tuple[str, ...]
    member_names: tuple[str, ...]
    backend: str

    def score(self, crops: np.ndarray) -> Scores: ...


def open_weights(weights: str | Path | Weights | None, members: Sequence[str] | None
                 ) -> tuple[Path, ScorerSpec, tuple[str, ...]]:
    """The weights folder (default: :attr:`Weights.DEFAULT`), its spec, and the members to use (default: all)."""
    folder = weights_folder(weights)
    spec = ScorerSpec.load(folder / "spec.json")
    names = tuple(members) if members else spec.members
    unknown = set(names) - set(spec.members)
    if unknown:
        raise WeightsError(f"{folder}: has no member(s) {sorted(unknown)}; it has {list(spec.members)}")
    return folder, spec, names


def check_crops(crops: np.ndarray, size: int) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
        raise ConfigError(f"expected aligned crops of shape (N, {size}, {size}, 3) uint8, got {crops.shape} {crops.dtype}")
    return crops


def combine(spec: ScorerSpec, names: Sequence[str], raw: np.ndarray, n_views: int) -> Scores:
    """``(M, V*N)`` raw member outputs -> :class:`Scores` (members averaged over views, then
    over members), on the spec's scale."""
    per_member = raw.reshape(len(names), n_views, -1).mean(1)
    return Scores(spec.to_score(per_member.mean(0)), {n: spec.to_score(v) for n, v in zip(names, per_member)})
