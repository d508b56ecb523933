"""Training data: any CSV of ``path,score`` (optionally ``identity``), loaded once into memory
as aligned uint8 crops.

Optional pairing columns: ``group`` (or ``source``) names the photo a capture was made from,
and ``reference`` = 1 (or ``degradation`` = ``none``) marks the undegraded original; the
ranking term of :mod:`train.fit` uses them.

Paths are absolute or relative to the CSV's folder. ``images="aligned"`` means the files are
already aligned face crops (resized to the input size); ``images="photos"`` runs each file
through facegate's capture stage, exactly as inference does, and drops files with no face.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facegate.alignment import resize_crop
from facegate.capture import CaptureStage
from facegate.errors import ImageError
from facegate.images import load_rgb
from facegate.spec import ScorerSpec


@dataclass(frozen=True)
class Sample:
    path: Path
    score: float
    identity: str | None
    group: str | None = None
    reference: bool = False


def read_csv(path: str | Path, target: str = "score") -> list[Sample]:
    """Samples of a CSV; ``target`` names the column trained on."""
    path = Path(path)
    samples = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"path", target} <= set(reader.fieldnames):
            raise ValueError(f"{path}: needs a header with at least 'path' and {target!r} columns")
        for line, row in enumerate(reader, 2):
            try:
                score = float(row[target])
            except ValueError:
                raise ValueError(f"{path}:{line}: {target} {row[target]!r} is not a number") from None
            if not np.isfinite(score):
                raise ValueError(f"{path}:{line}: {target} is not finite")
            image = Path(row["path"])
            group = row.get("group") or row.get("source") or None
            reference = row.get("reference") == "1" or row.get("degradation") == "none"
            samples.append(Sample(image if image.is_absolute() else path.parent / image, score,
                                  row.get("identity") or None, group, reference))
    if not samples:
        raise ValueError(f"{path}: no samples")
    return samples


def split(samples: list[Sample], val_fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of a train/validation split: by identity when every sample has one (so no
    person is on both sides), else by sample."""
    rng = np.random.default_rng(seed)
    if all(s.identity for s in samples):
        people = sorted({s.identity for s in samples})
        rng.shuffle(people)
        val_people = set(people[: max(1, round(len(people) * val_fraction))])
        val = [i for i, s in enumerate(samples) if s.identity in val_people]
    else:
        order = rng.permutation(len(samples))
        val = sorted(order[: max(1, round(len(samples) * val_fraction))].tolist())
    val_set = set(val)
    return [i for i in range(len(samples)) if i not in val_set], val


def load_crops(samples: list[Sample], spec: ScorerSpec, images: str = "aligned") -> tuple[np.ndarray, np.ndarray]:
    """``(N, S, S, 3)`` uint8 RGB crops and the indices of the samples they came from."""
    size = spec.input_size
    stage = CaptureStage(spec) if images == "photos" else None
    crops, kept = [], []
    for i, sample in enumerate(samples):
        if stage is not None:
            capture = stage.analyse(sample.path)
            if capture.crop is None:
                print(f"skipped: {sample.path}: {capture.error or 'no face found'}")
                continue
            crops.append(capture.crop)
        else:
            try:
                rgb = load_rgb(sample.path)
            except ImageError as exc:
                print(f"skipped: {exc}")
                continue
            crops.append(resize_crop(rgb, size))
        kept.append(i)
    if not crops:
        raise ValueError("no usable images in the data set")
    return np.stack(crops), np.array(kept)


def resize_all(crops: np.ndarray, size: int) -> np.ndarray:
    if crops.shape[1] == size:
        return crops
    return np.stack([resize_crop(c, size) for c in crops])
