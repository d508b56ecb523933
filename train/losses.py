"""MSECorrLoss (arXiv 2509.10114): mean squared error plus a Pearson-correlation term."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def pearson(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Batch Pearson correlation of two ``(B,)`` tensors.

    The variance product sits under ``sqrt(. + eps)`` rather than dividing norms, so a
    constant batch (or a batch of one) gives 0 with finite gradients instead of NaN.
    """
    p = pred - pred.mean()
    t = target - target.mean()
    return (p * t).sum() / torch.sqrt((p * p).sum() * (t * t).sum() + eps)


class MSECorrLoss(nn.Module):
    """``MSE(pred, target) + alpha * (1 - pearson(pred, target))``.

    Args:
        alpha: weight of the correlation term; 0 gives plain MSE.

    Shapes: ``pred`` and ``target`` are ``(B,)``; returns a scalar.
    """

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.alpha = alpha

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred, target = pred.reshape(-1).float(), target.reshape(-1).float()
        return F.mse_loss(pred, target) + self.alpha * (1.0 - pearson(pred, target))
