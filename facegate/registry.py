"""Named weights, in the manner of torchvision's ``Weights`` enums: which weights facegate
ships, where they are, and the spec that binds each to its use (crop, views, score scale,
threshold, detector settings). Everything that needs "the shipped weights" asks here, so no
module keeps its own idea of their framing or threshold.

    >>> from facegate.registry import Weights
    >>> Weights.DEFAULT.spec.score_scale
    'fg-utility-v2'
    >>> Weights.DEFAULT.folder            # facegate/weights inside the installed package
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .spec import ScorerSpec

__all__ = ["Weights", "default_weights_dir", "default_spec", "weights_folder"]


def default_weights_dir() -> Path:
    """The folder of :attr:`Weights.DEFAULT`, inside the package."""
    return Path(str(resources.files("facegate") / "weights"))


@lru_cache(maxsize=None)
def _load(folder: str, mtime_ns: int) -> ScorerSpec:
    return ScorerSpec.load(Path(folder) / "spec.json")


class Weights(Enum):
    """The weights facegate ships. The value is the folder's name inside the package; the
    name of the spec (``spec.name``) says which scale they score on."""

    FG_UTILITY_V2 = "weights"
    DEFAULT = "weights"  # an alias: the weights a Gate loads when given none

    @property
    def folder(self) -> Path:
        return Path(str(resources.files("facegate") / self.value))

    @property
    def spec(self) -> ScorerSpec:
        """The spec beside the weights (read once while the file is unchanged)."""
        path = self.folder / "spec.json"
        return _load(str(self.folder), path.stat().st_mtime_ns if path.exists() else 0)

    @property
    def terms(self) -> str:
        return self.spec.terms


def weights_folder(weights: "str | Path | Weights | None") -> Path:
    """A weights argument as a folder: a path, a :class:`Weights` member, or None (the default)."""
    if weights is None:
        return Weights.DEFAULT.folder
    if isinstance(weights, Weights):
        return weights.folder
    return Path(weights)


def default_spec() -> ScorerSpec:
    """The spec of :attr:`Weights.DEFAULT`."""
    return Weights.DEFAULT.spec
