"""The fit loop: one member, one :class:`train.recipe.Phase`, stage after stage.

Each stage (arXiv 2508.07590) trains at its size on its share of the training data, from
the previous stage's best checkpoint. A step is: augment the batch, one forward pass that
serves every loss term (:mod:`train.terms`), the sum of the terms, one Adam step, the weight
average (:mod:`train.averaging`). After every epoch: validation (SRCC, PLCC and, when the
phase orders copies, order accuracy), the kept checkpoint (best of the selection figure),
the resume state (:mod:`train.checkpoints`). Under ``torchrun`` each rank computes a shard of
every batch (:mod:`train.distributed`) and only rank 0 logs and writes files.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from facegate.models import QualityEnsemble, QualityNet, build_member, load_backbone_weights, to_tensor
from facegate.spec import ScorerSpec

from .augment import augment, worse_copies
from .averaging import WeightAverage
from .checkpoints import load_resume, save_checkpoint, save_resume
from .data import load_crops, read_csv, resize_all, split
from .distributed import forward_sharded, setup, wrap
from .terms import ConsistencyTerm, Forward, MonotoneTerm, PairTerm, StepData, TeacherTerm, build_terms

__all__ = ["Trainer", "correlations", "predict", "order_accuracy", "group_batches", "identity_batches",
           "initial_member"]


def correlations(pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
    if np.std(pred) == 0 or np.std(target) == 0:
        return {"srcc": 0.0, "plcc": 0.0}
    return {
        "srcc": float(stats.spearmanr(pred, target).statistic),
        "plcc": float(stats.pearsonr(pred, target).statistic),
    }


def predict(net: QualityNet, crops: np.ndarray, spec: ScorerSpec, views="none", batch_size: int = 256) -> np.ndarray:
    """``(N, S, S, 3)`` uint8 crops -> ``(N,)`` raw predictions averaged over ``views``."""
    ensemble = QualityEnsemble([net.eval()], views)  # the view averaging inference uses
    device = next(net.parameters()).device
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), batch_size):
            out.append(ensemble(to_tensor(spec, crops[start : start + batch_size]).to(device)).cpu().numpy())
    return np.concatenate(out)


def order_accuracy(net: QualityNet, crops: np.ndarray, spec: ScorerSpec, seed: int, **copies) -> float:
    """Share of crops that score above a worse copy of themselves (fixed seed, so epochs compare);
    ``copies`` go to :func:`train.augment.worse_copies`."""
    worse = worse_copies(crops, spec.margin, np.random.default_rng(seed), **copies)
    return float(np.mean(predict(net, crops, spec) > predict(net, worse, spec)))


def group_batches(groups: list, batch_size: int, gen: torch.Generator, per_group: int | None = None) -> list[np.ndarray]:
    """Batches (of positions into ``groups``) that keep each group's captures together, in
    random group order, so a photo and its degraded copies share a batch. With ``per_group``
    (identities as groups: :func:`identity_batches`) each group's captures, in random order,
    are cut into runs of that many, and the runs fill the batches instead."""
    by_group: dict = {}
    for pos, g in enumerate(groups):
        by_group.setdefault(g if g is not None else f"#{pos}", []).append(pos)
    runs = []
    for members in by_group.values():
        if per_group is None:
            runs.append(members)
        else:
            mine = np.array(members)[torch.randperm(len(members), generator=gen).numpy()].tolist()
            runs += [mine[k:k + per_group] for k in range(0, len(mine), per_group)]
    order = torch.randperm(len(runs), generator=gen).tolist()
    batches, current = [], []
    for k in order:
        current += runs[k]
        if len(current) >= batch_size:
            batches.append(np.array(current))
            current = []
    if len(current) >= 2:
        batches.append(np.array(current))
    return batches


def identity_batches(identities: list, batch_size: int, per_identity: int, gen: torch.Generator) -> list[np.ndarray]:
    """Batches of ``per_identity`` captures of each person (LightQNet: at least 4 images per
    identity in a batch), every capture once per epoch (:func:`group_batches` by person)."""
    return group_batches(identities, batch_size, gen, per_group=per_identity)


def initial_member(cfg) -> QualityNet:
    """The weights ``cfg``'s run starts from: the head drawn from ``cfg.seed`` (the first use of
    torch's generator in a run), on the pretrained backbone or ``cfg.init``. Runs that must share a
    start (the ingredients of :mod:`train.soup`) get it from here as ``init``."""
    torch.manual_seed(cfg.seed)
    net = build_member(cfg.arch)
    if cfg.pretrained_backbone:
        load_backbone_weights(net, str(cfg.pretrained_backbone))
    if cfg.init:
        net.load_state_dict(torch.load(cfg.init, map_location="cpu", weights_only=True)["state_dict"])
    return net


@dataclass
class Samples:
    """The run's labelled crops and its identity-disjoint split."""

    samples: list
    crops: np.ndarray
    kept: np.ndarray
    scores: np.ndarray
    groups: list
    reference: np.ndarray
    train_idx: list
    val_idx: list

    @classmethod
    def load(cls, cfg, spec: ScorerSpec) -> "Samples":
        samples = read_csv(cfg.csv, target=cfg.target)
        crops, kept = load_crops(samples, spec, cfg.images)
        samples = [samples[i] for i in kept]
        train_idx, val_idx = split(samples, cfg.val_fraction, cfg.split_seed)
        return cls(samples, crops, kept, np.array([s.score for s in samples], dtype=np.float32),
                   [s.group for s in samples], np.array([s.reference for s in samples]), train_idx, val_idx)


class Trainer:
    """Fits one member (:class:`train.fit.FitConfig`); :meth:`run` returns the history and
    the best validation metrics. The same config after an interruption carries on from the
    last finished epoch, with the result of an uninterrupted run."""

    def __init__(self, cfg, log=print):
        self.cfg, self.phase = cfg, cfg.phase
        self.d = setup(cfg.device)
        self.log = log if self.d.main else (lambda *_a, **_k: None)  # the same run, told once
        cfg.out.mkdir(parents=True, exist_ok=True)
        self.spec = ScorerSpec(input_size=self.phase.size, margin=cfg.margin)
        self.data = Samples.load(cfg, self.spec)
        self.log(f"{cfg.arch}: {len(self.data.train_idx)} training and {len(self.data.val_idx)} validation samples "
                 f"on {self.d.device}")
        self.growth_order = np.random.default_rng(cfg.seed).permutation(self.data.train_idx)
        self.net = initial_member(cfg).to(self.d.device)
        # of the plain module, before any wrapping
        self.averaged = WeightAverage(self.net, self.phase.ema) if self.phase.ema > 0 else None
        self.model = wrap(self.net, self.d)
        teacher = self._teacher()
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        terms = self.phase.terms
        monotone = None
        if terms.monotone > 0:
            monotone = MonotoneTerm(terms, cfg.margin, self.phase.jitter, self.rng, self.gen,
                                    lambda x: forward_sharded(self.net, self.net, x, self.d), self.d.device)
        pair = None
        if terms.pair > 0:
            if self.cfg.teacher is None:
                raise ValueError("the pair term needs the recognizer's embeddings of the crops: a train.distill "
                                 "folder (--teacher DIR)")
            if self.d.active:
                raise ValueError("the pair term is not combined with torchrun yet")
            pair = PairTerm.load(self.cfg.teacher, self.cfg.csv, self.data.kept,
                                 [s.identity for s in self.data.samples], terms.pair).to(self.d.device)
        self.terms = build_terms(terms, teacher=teacher, monotone=monotone, pair=pair)
        self.needs = {n for t in self.terms for n in t.needs}
        self.copies = {"mix": terms.mix, "eyes_px": tuple(terms.monotone_eyes)}
        self.val_refs = np.array([i for i in self.data.val_idx if self.data.reference[i]], dtype=int)
        self.best_path = cfg.out / f"{cfg.arch}.pt"
        self.raw_path = cfg.out / f"{cfg.arch}.raw.pt"  # with ema: the last step's weights' own best
        self.resume_path = cfg.out / f"{cfg.arch}.resume.pt"

    def _teacher(self) -> TeacherTerm | None:
        weight = self.phase.terms.teacher
        if weight <= 0:
            return None
        if self.cfg.teacher is None:
            raise ValueError("the teacher term needs a train.distill folder (--teacher DIR)")
        if self.d.active:
            raise ValueError("the teacher term is not combined with torchrun yet")
        return TeacherTerm.load(self.cfg.teacher, self.cfg.arch, self.data.kept, weight).to(self.d.device)

    # -- the run -----------------------------------------------------------------------
    def run(self) -> dict:
        state = load_resume(self.resume_path, self.cfg.fingerprint(), self.cfg.same_run, self.log)
        history, best = ([], {"srcc": -math.inf}) if state is None else (state["history"], state["best"])
        self.epochs_run = 0
        for stage_no, stage in enumerate(self.phase.stages, 1):
            if state is not None and (stage_no < state["stage"] or
                                      (stage_no == state["stage"] and state["epoch"] >= stage.epochs)):
                continue  # finished before the interruption
            state, best, stopped = self._run_stage(stage_no, stage, state, history, best)
            if stopped:
                self.log(f"stopped after {self.epochs_run} epochs as asked; run the same command to carry on")
                return {"stopped": True, "history": history, "best": best}
        result = {"config": self.cfg.recorded(), "fingerprint": self.cfg.fingerprint(), "history": history,
                  "best": best, "val_identities": sorted({self.data.samples[i].identity or "" for i in self.data.val_idx})}
        if self.d.main:
            (self.cfg.out / f"{self.cfg.arch}.history.json").write_text(json.dumps(result, indent=1))
            self.resume_path.unlink(missing_ok=True)  # finished: the history says so
        self.d.barrier()
        return result

    def _run_stage(self, stage_no, stage, state, history, best):
        """One stage from its start or from ``state``; returns (state left, best, stopped)."""
        data, d = self.data, self.d
        spec = self.spec.with_(input_size=stage.size)
        used = np.sort(self.growth_order[: max(1, math.ceil(stage.fraction * len(self.growth_order)))])
        crops, labels = resize_all(data.crops[used], stage.size), torch.from_numpy(data.scores[used])
        val = (resize_all(data.crops[data.val_idx], stage.size),
               resize_all(data.crops[self.val_refs], stage.size) if len(self.val_refs) else None)
        d.barrier()  # rank 0 has written the previous stage's best
        if stage_no > 1 and self.best_path.exists():
            self.net.load_state_dict(torch.load(self.best_path, map_location=d.device, weights_only=True)["state_dict"])
        if self.averaged is not None:
            self.averaged.restart(self.net)
        optimiser, scheduler = self._optimiser()
        stage_best, raw_best, first_epoch = -math.inf, -math.inf, 1
        if state is not None and stage_no == state["stage"]:
            self.net.load_state_dict(state["net"])
            optimiser.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            stage_best, first_epoch = state["stage_best"], state["epoch"] + 1
            if self.averaged is not None:
                self.averaged.load_state_dict(state["ema"])
                raw_best = state["raw_best"]
        if state is not None and stage_no >= state["stage"]:
            self.gen.set_state(state["generator"])
            self.rng.bit_generator.state = json.loads(state["numpy_rng"])
            torch.set_rng_state(state["torch_rng"])
            state = None
        for epoch in range(first_epoch, stage.epochs + 1):
            if self.cfg.stop_after_epochs is not None and self.epochs_run >= self.cfg.stop_after_epochs:
                return state, best, True
            t0 = time.time()
            losses = self._train_epoch(used, crops, labels, spec, optimiser)
            scheduler.step()
            self.epochs_run += 1
            kept = self.net if self.averaged is None else self.averaged.net
            metrics, chosen = self._validate(kept, val, spec)
            raw = {}
            if self.averaged is not None:
                raw_metrics, raw_chosen = self._validate(self.net, val, spec)
                raw = {f"raw_{k}": v for k, v in raw_metrics.items()}
                if raw_chosen > raw_best:
                    raw_best = raw_chosen
                    if d.main:
                        save_checkpoint(self.net, self.raw_path, stage.size, stage=stage_no, epoch=epoch,
                                        metrics=raw_metrics)
            record = {"stage": stage_no, "size": stage.size, "samples": len(used), "epoch": epoch,
                      "loss": float(np.mean(losses)) if losses else float("nan"),
                      "seconds": round(time.time() - t0, 1), **metrics, **raw}
            history.append(record)
            self.log(json.dumps(record))
            # Later stages run at the final size; keep the best of the final size only
            # once we reach it, but always keep a stage's best to resume the next stage from.
            if chosen > stage_best:
                stage_best = chosen
                if d.main:
                    save_checkpoint(kept, self.best_path, stage.size, stage=stage_no, epoch=epoch, metrics=metrics)
                if stage_no == len(self.phase.stages):
                    best = {**metrics, "stage": stage_no, "epoch": epoch}
            if d.main:
                save_resume(self.resume_path, {
                    "fingerprint": self.cfg.fingerprint(), "stage": stage_no, "epoch": epoch,
                    "net": self.net.state_dict(), "optimizer": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(), "generator": self.gen.get_state(),
                    "numpy_rng": json.dumps(self.rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
                    "stage_best": stage_best, "best": best, "history": history,
                    "ema": self.averaged.state_dict() if self.averaged is not None else None, "raw_best": raw_best})
        return state, best, False

    def _optimiser(self):
        o = self.phase.optimiser
        optimiser = torch.optim.Adam(
            [{"params": list(self.net.head_parameters()), "lr": o.lr_head},
             {"params": list(self.net.backbone_parameters()), "lr": o.lr_backbone}],
            weight_decay=o.weight_decay)
        return optimiser, torch.optim.lr_scheduler.StepLR(optimiser, o.step_size, o.gamma)

    def _validate(self, candidate: QualityNet, val, spec: ScorerSpec) -> tuple[dict, float]:
        """Validation metrics, and the figure the kept checkpoint maximises."""
        crops, refs = val
        metrics = correlations(predict(candidate, crops, spec), self.data.scores[self.data.val_idx])
        if refs is not None and self.phase.orders:
            metrics["order"] = order_accuracy(candidate, refs, spec, self.cfg.seed + 1, **self.copies)
        return metrics, metrics["srcc"] + (metrics.get("order", 0.0) if self.phase.select == "srcc+order" else 0.0)

    # -- one epoch, one step -----------------------------------------------------------
    def _train_epoch(self, used, crops, labels, spec, optimiser) -> list[float]:
        self.net.train()
        size = self.phase.optimiser.batch_size
        if "identities" in self.needs:
            batches = identity_batches([self.data.samples[i].identity for i in used], size,
                                       self.phase.terms.per_identity, self.gen)
        elif "groups" in self.needs:
            batches = group_batches([self.data.groups[i] for i in used], size, self.gen)
        else:
            order = torch.randperm(len(used), generator=self.gen).numpy()
            batches = [order[k : k + size] for k in range(0, len(order), size)]
        losses = []
        for batch in batches:
            if len(batch) < 2:
                continue
            step = StepData(augment(to_tensor(spec, crops[batch]), self.gen, self.phase.jitter),
                            labels[batch].to(self.d.device, non_blocking=True), used[batch], batch, crops, spec,
                            self.data.groups, self.data.reference)
            loss = self._loss(step)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if self.averaged is not None:
                self.averaged.update(self.net)
            losses.append(loss.item())
        return losses

    def _forward(self, step: StepData) -> Forward:
        """One forward pass that serves every term: with the moved view, the batch and its
        moved copy together; with the features, through backbone then head."""
        device = self.d.device
        if "moved" in self.needs:
            x = torch.cat([step.x, ConsistencyTerm.moved_view(step.x, self.gen, step.spec.input_size)])
            both = forward_sharded(self.model, self.net, x.to(device, non_blocking=True), self.d).view(2, len(step.x))
            return Forward(both[0], moved=both[1])
        if "features" in self.needs:
            features = self.net.forward_features(step.x.to(device, non_blocking=True))
            return Forward(self.net.forward_head(features), features=features)
        return Forward(forward_sharded(self.model, self.net, step.x.to(device, non_blocking=True), self.d))

    def _loss(self, step: StepData) -> torch.Tensor:
        out = self._forward(step)
        loss = None
        for term in self.terms:
            value = term(step, out)
            if value is not None:
                loss = value if loss is None else loss + value
        return loss
