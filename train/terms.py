"""The loss of a training step as a sum of terms, each its own object.

:class:`LabelTerm` (MSECorrLoss on the utility labels, arXiv 2509.10114) is always there; the
others join at the weight :class:`train.recipe.Terms` gives them (0: left out):

- :class:`ConsistencyTerm`: the batch scored again with every crop moved by a pixel or few;
  the two scores must agree (the score must not hang on exact framing);
- :class:`TeacherTerm`: the features stay near the label recognizer's embedding of the crop;
- :class:`RankTerm`: each degraded copy in the labels scores below the photo it was made from;
- :class:`MonotoneTerm`: so does a worse copy made in the batch (darker, smaller, blurrier,
  noisier), whatever the labels say;
- :class:`PairTerm`: two captures of one person score, multiplied, the chance that the
  recognizer matches them (LightQNet's IDQ loss).

A term reads what the step's forward pass gave (:class:`Forward`); a term that needs more of
that pass says so (``needs``), so the trainer runs one forward pass that serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from facegate.models import to_tensor
from facegate.spec import ScorerSpec

from .augment import CONSISTENCY_PIXELS, augment, moved_by_pixels, worse_copies
from .losses import MSECorrLoss
from .recipe import Terms

__all__ = ["Forward", "StepData", "LabelTerm", "ConsistencyTerm", "TeacherTerm", "RankTerm", "MonotoneTerm",
           "PairTerm", "build_terms", "ranking_hinge", "rank_pairs", "pair_match_loss", "same_person_pairs"]


@dataclass
class StepData:
    """One batch as the terms see it.

    Attributes:
        x: the batch's crops as augmented tensors (on the CPU).
        target: the labels (on the training device).
        rows: each crop's position among the run's samples (groups, references, teacher targets).
        positions: each crop's position in ``crops``.
        crops: the stage's uint8 training crops, ``spec``: the stage's spec (its input size).
        groups, reference: every sample's group (a photo and its copies) and whether it is the photo.
    """

    x: torch.Tensor
    target: torch.Tensor
    rows: np.ndarray
    positions: np.ndarray
    crops: np.ndarray
    spec: ScorerSpec
    groups: list
    reference: np.ndarray


@dataclass
class Forward:
    """What the step's forward pass gave: the prediction of every crop, of every crop moved
    (when a term needs the moved view) and the pooled features (when a term needs them)."""

    pred: torch.Tensor
    moved: torch.Tensor | None = None
    features: torch.Tensor | None = None


class LabelTerm:
    """MSECorrLoss on the labels; with the moved view, the mean over both views."""

    needs = ()

    def __init__(self, alpha: float):
        self.loss = MSECorrLoss(alpha)

    def __call__(self, step: StepData, out: Forward) -> torch.Tensor:
        if out.moved is not None:
            return (self.loss(out.pred, step.target) + self.loss(out.moved, step.target)) / 2
        return self.loss(out.pred, step.target)


def consistency_term(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between two scores of the same capture."""
    return (first - second).pow(2).mean()


class ConsistencyTerm:
    """The same capture framed by a pixel or few otherwise scores the same."""

    needs = ("moved",)

    def __init__(self, weight: float):
        self.weight = weight

    @staticmethod
    def moved_view(x: torch.Tensor, gen: torch.Generator, size: int) -> torch.Tensor:
        """The batch again, each crop moved by 1-3 px at 128 px (scaled with ``size``)."""
        return moved_by_pixels(x, gen, CONSISTENCY_PIXELS * size // 128 or 1)

    def __call__(self, step: StepData, out: Forward) -> torch.Tensor:
        return self.weight * consistency_term(out.pred, out.moved)


class TeacherTerm(nn.Module):
    """Keeps a distilled backbone seeing faces as the recognizer does while the quality head is
    fitted: the features, through the distillation's own linear map, stay near the teacher's
    embedding of each crop (1 - cosine). Over long schedules the distilled start's lead on
    natural photos was seen to wash out; at the shipped 5-epoch schedule this term was measured
    and did not help (docs/results.md), so the shipped recipe leaves it off."""

    needs = ("features",)

    def __init__(self, targets: np.ndarray, project: nn.Linear, weight: float = 1.0):
        super().__init__()
        self.weight = weight
        self.register_buffer("targets", torch.from_numpy(targets))
        self.project = project.requires_grad_(False)  # fixed: a resumed run rebuilds it exactly

    @classmethod
    def load(cls, folder: Path, arch: str, kept: np.ndarray, weight: float = 1.0) -> "TeacherTerm":
        """From a ``train.distill`` folder (``targets.npz`` and ``<arch>.resume.pt``), for the
        crops ``kept`` of the same labels."""
        from .distill import stored_targets

        cache, resume = folder / "targets.npz", folder / f"{arch}.resume.pt"
        for f in (cache, resume):
            if not f.exists():
                raise FileNotFoundError(f"{f}: not there; the teacher term needs a train.distill folder of {arch}")
        targets = stored_targets(folder, kept)
        if targets is None:
            raise ValueError(f"{cache}: its targets were made for other crops (another labels file or framing)")
        student = torch.load(resume, map_location="cpu", weights_only=True)["student"]
        w = student["project.weight"]
        project = nn.Linear(w.shape[1], w.shape[0])
        project.load_state_dict({"weight": w, "bias": student["project.bias"]})
        return cls(targets.astype(np.float32), project, weight)

    def distance(self, features: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        out = nn.functional.normalize(self.project(features), dim=1)
        return (1.0 - (out * self.targets[torch.from_numpy(rows)]).sum(1)).mean()

    def __call__(self, step: StepData, out: Forward) -> torch.Tensor:
        return self.weight * self.distance(out.features, step.rows)


def ranking_hinge(better: torch.Tensor, worse: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of relu(margin - (better - worse)): zero once each better capture leads by ``margin``."""
    return torch.relu(margin - (better - worse)).mean()


def rank_pairs(groups: list[str | None], reference: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (original, degraded copy of it) within one batch."""
    originals = {g: i for i, (g, r) in enumerate(zip(groups, reference)) if r and g is not None}
    pairs = [(originals[g], j) for j, (g, r) in enumerate(zip(groups, reference)) if not r and g in originals]
    if not pairs:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    a, b = zip(*pairs)
    return torch.tensor(a), torch.tensor(b)


class RankTerm:
    """Each labelled degraded copy below the photo it was made from (batches keep a photo and
    its copies together: :func:`train.trainer.group_batches`)."""

    needs = ("groups",)

    def __init__(self, weight: float, margin: float):
        self.weight, self.margin = weight, margin

    def __call__(self, step: StepData, out: Forward) -> torch.Tensor | None:
        a, b = rank_pairs([step.groups[i] for i in step.rows], step.reference[step.rows])
        if not len(a):
            return None
        return self.weight * ranking_hinge(out.pred[a], out.pred[b], self.margin)


def monotone_term(photo: torch.Tensor, copy: torch.Tensor, margin: float, copies_only: bool = False) -> torch.Tensor:
    """Each worse copy below its photo by ``margin``. ``copies_only`` takes the photo's
    prediction as given, so the term lowers the copy and never lifts the photo: it cannot
    reorder clean photos by how bright or sharp they are."""
    return ranking_hinge(photo.detach() if copies_only else photo, copy, margin)


class MonotoneTerm:
    """A worse copy of each photo in the batch, made now in crop space, scores below it. Its
    own forward pass goes through the plain module (one pass through a DDP wrapper per step)."""

    needs = ()

    def __init__(self, terms: Terms, framing_margin: float, jitter: float, rng: np.random.Generator,
                 gen: torch.Generator, forward: Callable[[torch.Tensor], torch.Tensor], device):
        self.weight, self.margin, self.copies_only = terms.monotone, terms.margin, terms.copies_only
        self.copies = {"mix": terms.mix, "eyes_px": tuple(terms.monotone_eyes)}
        self.framing_margin, self.jitter = framing_margin, jitter
        self.rng, self.gen, self.forward, self.device = rng, gen, forward, device

    def __call__(self, step: StepData, out: Forward) -> torch.Tensor | None:
        refs = step.positions[step.reference[step.rows]]
        if not len(refs):
            return None
        clean = to_tensor(step.spec, step.crops[refs])
        worse = to_tensor(step.spec, worse_copies(step.crops[refs], self.framing_margin, self.rng, **self.copies))
        both = augment(torch.cat([clean, worse]), self.gen, self.jitter).to(self.device, non_blocking=True)
        p = self.forward(both).view(2, len(refs))
        return self.weight * monotone_term(p[0], p[1], self.margin, self.copies_only)


def pair_match_loss(pred: torch.Tensor, match: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between ``pred[a] * pred[b]`` (scores as probabilities, clipped into
    (0, 1)) and each pair's soft match ``match``: LightQNet's IDQ loss (arXiv 2021, Table I)."""
    q = pred.clamp(1e-3, 1 - 1e-3)
    return nn.functional.binary_cross_entropy(q[a] * q[b], match)


def same_person_pairs(identities: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Every pair (i < j) of one batch's positions whose captures show the same person."""
    a, b = [], []
    for i in range(len(identities)):
        for j in range(i + 1, len(identities)):
            if identities[i] is not None and identities[i] == identities[j]:
                a.append(i)
                b.append(j)
    return torch.tensor(a, dtype=torch.long), torch.tensor(b, dtype=torch.long)


class PairTerm(nn.Module):
    """Two captures of one person: the product of their scores is the chance that the label
    recognizer matches them (LightQNet's IDQ loss), where the per-capture label only says how
    a capture fares against the person's good references. The soft match of a pair is the
    labels' own step, ``sigmoid((cos - T) / TAU)`` at the labels' FMR 1e-3 threshold, on the
    recognizer's embeddings the distillation stored for every crop. Batches hold
    ``per_identity`` captures of each person (:func:`train.trainer.identity_batches`)."""

    needs = ("identities",)

    def __init__(self, embeddings: np.ndarray, identities: list, threshold: float, tau: float, weight: float):
        super().__init__()
        self.weight, self.threshold, self.tau, self.identities = weight, threshold, tau, identities
        unit = nn.functional.normalize(torch.from_numpy(np.asarray(embeddings, np.float32)), dim=1)
        self.register_buffer("embeddings", unit)

    @classmethod
    def load(cls, folder: Path, labels_csv: Path, kept: np.ndarray, identities: list, weight: float) -> "PairTerm":
        import json

        from .distill import stored_targets
        from .labels import TAU

        embeddings = stored_targets(folder, kept)
        if embeddings is None:
            raise ValueError(f"{folder / 'targets.npz'}: no embeddings of these crops (the pair term needs the "
                             "train.distill folder made from the same labels, --teacher DIR)")
        step = json.loads((Path(labels_csv).parent / "threshold.json").read_text())
        return cls(embeddings, identities, step["cosine"], step.get("tau", TAU), weight)

    def __call__(self, step: StepData, out: Forward) -> torch.Tensor | None:
        a, b = same_person_pairs([self.identities[r] for r in step.rows])
        if not len(a):
            return None
        e = self.embeddings[torch.from_numpy(step.rows)]
        match = torch.sigmoid(((e[a] * e[b]).sum(1) - self.threshold) / self.tau).to(out.pred.device)
        return self.weight * pair_match_loss(out.pred, match, a.to(out.pred.device), b.to(out.pred.device))


def build_terms(terms: Terms, *, teacher: TeacherTerm | None, monotone: MonotoneTerm | None,
                pair: "PairTerm | None" = None) -> list:
    """The step's terms in the order they are added (the order fixes the float sums, so a
    resumed or repeated run gives the same weights)."""
    out = [LabelTerm(terms.alpha)]
    if terms.consistency > 0:
        out.append(ConsistencyTerm(terms.consistency))
    if teacher is not None:
        out.append(teacher)
    if terms.rank > 0:
        out.append(RankTerm(terms.rank, terms.margin))
    if monotone is not None:
        out.append(monotone)
    if pair is not None:
        out.append(pair)
    if sum(1 for t in out if "moved" in t.needs or "features" in t.needs) > 1:
        raise ValueError("the teacher term is not combined with the consistency term yet (each needs its own "
                         "forward pass)")
    return out
