"""Weight averaging: a moving average of one run's weights (``Phase.ema``) and the average of
several runs from one start (``Phase.soup``, :mod:`train.soup`)."""

from __future__ import annotations

import copy

import torch

__all__ = ["WeightAverage", "average_states"]


class WeightAverage:
    """An exponential moving average of a network's weights and batch-norm statistics.

    One step's weights carry that step's batch; the average over the last few hundred steps
    does not, so validation (and the checkpoint it keeps) depends less on where an epoch
    happened to end. The decay ramps up over the first steps, min(decay, (1 + t) / (10 + t)) as
    TensorFlow's ExponentialMovingAverage does with ``num_updates``, so a fresh average is not
    stuck at its starting point."""

    def __init__(self, net: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema {decay}: the decay per step must lie between 0 and 1 (e.g. 0.998)")
        self.decay, self.steps = decay, 0
        self.net = copy.deepcopy(net).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def restart(self, net: torch.nn.Module) -> None:
        """Average from ``net``'s weights afresh (a new stage starts from its best)."""
        self.net.load_state_dict(net.state_dict())
        self.steps = 0

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        current = net.state_dict()
        for name, kept in self.net.state_dict().items():
            if kept.is_floating_point():
                kept.lerp_(current[name], 1.0 - decay)
            else:  # batch counters
                kept.copy_(current[name])

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.steps = int(state["steps"])


def average_states(states: list[dict]) -> dict:
    """The mean of each floating-point tensor; counters are taken from the first."""
    first = states[0]
    for other in states[1:]:
        if other.keys() != first.keys() or any(other[k].shape != first[k].shape for k in first):
            raise ValueError("the members differ in architecture; only runs of one architecture can be averaged")
    return {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v.clone()
            for k, v in first.items()}
