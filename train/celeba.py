"""CelebA subset bookkeeping: identities whose number is divisible by 5 are kept for
evaluation (``../shared/data/celeba-subset/README``); the others may be trained on."""

from __future__ import annotations

from pathlib import Path

from facegate.folder import find_images

__all__ = ["celeba_root", "identities", "is_evaluation"]


def celeba_root(shared: Path) -> Path:
    return shared / "data" / "celeba-subset"


def is_evaluation(identity: str) -> bool:
    return int(identity) % 5 == 0


def identities(shared: Path, *, evaluation: bool) -> dict[str, list[Path]]:
    """Each CelebA identity of one side of the split, with its photos (sorted)."""
    people: dict[str, list[Path]] = {}
    for path in find_images(celeba_root(shared)):
        if is_evaluation(path.parent.name) == evaluation:
            people.setdefault(path.parent.name, []).append(path)
    return {name: sorted(photos) for name, photos in sorted(people.items())}
