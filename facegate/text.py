"""Words for the messages people read: counts as people write them."""

from __future__ import annotations

__all__ = ["plural"]


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 file``, ``2 files`` (``many`` for irregular words)."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
