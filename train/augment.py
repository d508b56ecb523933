"""What a training batch sees of a crop: views that keep its quality (a mirror image, small
shifts, a small similarity) and, for the monotone term, worse copies made in crop space."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from facegate.alignment import quality_template

from .degradations import gamma, gaussian_blur
from .recipe import MONOTONE_KINDS

#: How far the consistency view moves a 128 px crop at most (scaled with the stage's size):
#: the working resolution's landmarks differ from full resolution's by up to 1.35% of the
#: eye distance, and users' aligners by more.
CONSISTENCY_PIXELS = 3


def augment(x: torch.Tensor, gen: torch.Generator, jitter: float = 0.0) -> torch.Tensor:
    """A mirror image (the test-time view) and a small shift; nothing that changes quality.
    No vertical flip: an upside-down face is not a view of the same capture to a
    recognizer, it is a capture that fails.

    ``jitter`` > 0: half the crops are also re-sampled through a small similarity (shift of up
    to ``jitter`` of the side, scale 1 +- ``jitter``, rotation +- ``jitter`` radians), the
    spread between where two detectors put the same landmarks, so that the score does not
    hang on where exactly they fell (the crops a user's own pipeline aligns included)."""
    b = x.shape[0]
    hflip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(hflip.view(b, 1, 1, 1), x.flip(3), x)
    pad = max(1, x.shape[-1] // 28)
    dy, dx = torch.randint(-pad, pad + 1, (2,), generator=gen).tolist()
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if jitter > 0:
        x = similarity_jitter(x, gen, jitter)
    return x


def similarity_jitter(x: torch.Tensor, gen: torch.Generator, jitter: float) -> torch.Tensor:
    """Half the crops of ``x`` re-sampled through a random similarity of up to ``jitter``."""
    b = x.shape[0]
    u = (torch.rand(b, 4, generator=gen) * 2 - 1) * jitter
    scale, angle = 1 + u[:, 0], u[:, 1]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = scale * torch.cos(angle), -scale * torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = scale * torch.sin(angle), scale * torch.cos(angle)
    theta[:, :, 2] = 2 * u[:, 2:]  # normalised coordinates span 2 per side
    keep = torch.rand(b, generator=gen) < 0.5
    theta[keep] = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    grid = torch.nn.functional.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    moved = torch.nn.functional.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="reflection",
                                            align_corners=False)
    return torch.where(keep.view(b, 1, 1, 1).to(x.device), x, moved)


def moved_by_pixels(x: torch.Tensor, gen: torch.Generator, most: int) -> torch.Tensor:
    """Each crop of ``x`` moved by its own whole-pixel shift of 1 to ``most`` pixels (per
    axis; never none), edges repeated: the same face, framed as another aligner would."""
    b, _, h, w = x.shape
    steps = torch.randint(-most, most + 1, (b, 2), generator=gen)
    still = (steps == 0).all(1)
    steps[still, 0] = torch.where(torch.rand(int(still.sum()), generator=gen) < 0.5, -1, 1)
    padded = torch.nn.functional.pad(x, (most, most, most, most), mode="replicate")
    return torch.stack([padded[i, :, most - dy: most - dy + h, most - dx: most - dx + w]
                        for i, (dy, dx) in enumerate(steps.tolist())])


def worse_copies(crops: np.ndarray, margin: float, rng: np.random.Generator,
                 mix: dict[str, float] | None = None, eyes_px: tuple[float, float] = (8.0, 28.0)) -> np.ndarray:
    """A worse copy of each ``(N, S, S, 3)`` uint8 aligned crop, made in crop space at a random
    severity: darker (gamma 1.8-4), fewer pixels on the face (``eyes_px`` between the eyes,
    then resampled back to S), blurrier (sigma 0.6-2.4 px at 128) or noisier (sigma 5-25). The
    kind is drawn with the relative weights in ``mix`` (default: equal).

    Why in crop space: these degradations commute with the aligning warp closely enough, and
    a copy per photo per batch would otherwise need re-detecting and re-aligning."""
    size = crops.shape[1]
    template = quality_template(size, margin)
    crop_eyes = float(np.linalg.norm(template[1] - template[0]))
    if mix:
        kinds = list(mix)
        p = np.array([mix[k] for k in kinds]) / sum(mix.values())
    out = np.empty_like(crops)
    for i, crop in enumerate(crops):
        # equal weights draw as the shipped phase-2 run did, so its order accuracies reproduce
        kind = kinds[rng.choice(len(kinds), p=p)] if mix else MONOTONE_KINDS[rng.integers(len(MONOTONE_KINDS))]
        if kind == "dark":
            out[i] = gamma(crop, rng.uniform(1.8, 4.0))
        elif kind == "low_resolution":
            small = max(4, round(size * min(0.9, rng.uniform(*eyes_px) / crop_eyes)))
            down = cv2.resize(crop, (small, small), interpolation=cv2.INTER_AREA)
            out[i] = cv2.resize(down, (size, size), interpolation=cv2.INTER_LINEAR)
        elif kind == "blur":
            out[i] = gaussian_blur(crop, rng.uniform(0.6, 2.4) * size / 128.0)
        else:
            noise = rng.normal(0.0, rng.uniform(5.0, 25.0), crop.shape)
            out[i] = np.clip(crop + noise, 0, 255).astype(np.uint8)
    return out
