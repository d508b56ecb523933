"""LFW bookkeeping: who is reserved for evaluation and who may be trained on.

The 10 folds of ``lfw-pairs.txt`` share no person. People named in folds 1-5 are kept
for evaluation; every other LFW person is available for training and validation.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pair:
    fold: int
    left: Path
    right: Path
    genuine: bool


def photo_path(lfw_dir: Path, name: str, index: int) -> Path:
    return lfw_dir / name / f"{name}_{index:04d}.jpg"


def read_pairs(shared: Path) -> list[Pair]:
    lfw_dir = shared / "data" / "lfw-deepfunneled"
    lines = (shared / "data" / "lfw-pairs.txt").read_text().split("\n")
    folds, per_fold = (int(v) for v in lines[0].split())
    pairs, row = [], 1
    for fold in range(1, folds + 1):
        for k in range(2 * per_fold):
            parts = lines[row].split()
            row += 1
            if k < per_fold:
                name, i, j = parts
                pairs.append(Pair(fold, photo_path(lfw_dir, name, int(i)), photo_path(lfw_dir, name, int(j)), True))
            else:
                n1, i, n2, j = parts
                pairs.append(Pair(fold, photo_path(lfw_dir, n1, int(i)), photo_path(lfw_dir, n2, int(j)), False))
    return pairs


def evaluation_people(shared: Path, folds: range = range(1, 6)) -> set[str]:
    return {p.parent.name for pair in read_pairs(shared) if pair.fold in folds for p in (pair.left, pair.right)}


def training_people(shared: Path) -> dict[str, list[Path]]:
    """Every LFW person not reserved for evaluation, with their photos (sorted)."""
    held_out = evaluation_people(shared)
    lfw_dir = shared / "data" / "lfw-deepfunneled"
    people: dict[str, list[Path]] = defaultdict(list)
    for person in sorted(lfw_dir.iterdir()):
        if person.is_dir() and person.name not in held_out:
            people[person.name] = sorted(person.glob("*.jpg"))
    return dict(people)
