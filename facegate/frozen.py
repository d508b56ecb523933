"""Equality and hashing for frozen result types that hold numpy arrays or dicts.

A dataclass's generated ``__eq__`` compares fields with ``==``, which raises on arrays,
and its ``__hash__`` fails on arrays and dicts. Result types inherit :class:`FrozenValue`
instead and are declared ``@dataclass(frozen=True, eq=False)``: two results are equal
when every field holds the same values (arrays by shape, dtype and bytes).
"""

from __future__ import annotations

from dataclasses import fields
from enum import Enum
from typing import Any

import numpy as np

__all__ = ["FrozenValue", "freeze"]


def freeze(value: Any) -> Any:
    """A hashable stand-in for ``value`` that is equal exactly when the values are."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, value.dtype.str, value.tobytes())
    if isinstance(value, FrozenValue):
        return value._key()
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, freeze(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple)) and not isinstance(value, Enum):
        return tuple(freeze(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    return value


class FrozenValue:
    """Value semantics for ``@dataclass(frozen=True, eq=False)`` classes."""

    __slots__ = ()

    def _key(self) -> tuple:
        return (type(self).__name__,) + tuple(freeze(getattr(self, f.name)) for f in fields(self))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self is other or self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
