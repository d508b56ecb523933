"""Fit one quality model with the recipe of arXiv 2509.10114 and a progressive schedule
(arXiv 2508.07590): each stage trains at a larger input size on a larger share of the
training data, starting from the previous stage's best weights.

Recipe defaults: Adam, lr 5e-4 for the head and 1e-4 for the backbone, weight decay 1e-4,
step decay (x0.5) every 5 epochs, batch 64, MSECorrLoss(alpha=1), 80/20 split by identity,
SRCC and PLCC on the validation side after every epoch, best checkpoint (by SRCC) kept.

Optional terms for fine-tuning: ``rank_weight`` (a labelled degraded copy must score below
the photo it was made from) and ``monotone_weight`` (so must a worse copy made on the fly,
see :func:`worse_copies`); with ``select="srcc+order"`` the kept checkpoint maximises SRCC
plus the validation share of photos that outscore their worse copy.

``ema`` > 0 keeps a moving average of the weights (decay per step) and validates, selects and
saves that average instead of the last step's weights; the last step's own best is kept beside
it as ``<arch>.raw.pt`` (the run without averaging follows the same steps), so one run says
whether averaging helps.

Run: ``python -m train.fit --csv runs/labels/labels.csv --arch mobilenet_v3_small --out runs/m``
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy import stats

from facegate.alignment import quality_template
from facegate.models import QualityEnsemble, QualityNet, build_member, load_backbone_weights, to_tensor
from facegate.spec import ScorerSpec

from .data import load_crops, read_csv, resize_all, split
from .degradations import gamma, gaussian_blur
from .losses import MSECorrLoss


@dataclass(frozen=True)
class Stage:
    size: int
    fraction: float
    epochs: int


def parse_stages(text: str) -> list[Stage]:
    """``"64:0.5:4,96:0.75:4,112:1:8"`` -> stages of (size, data fraction, epochs)."""
    stages = []
    for part in text.split(","):
        size, fraction, epochs = part.split(":")
        stages.append(Stage(int(size), float(fraction), int(epochs)))
    return stages


@dataclass
class FitConfig:
    csv: Path
    arch: str
    out: Path
    stages: list[Stage] = field(default_factory=lambda: [Stage(112, 1.0, 30)])
    images: str = "aligned"
    batch_size: int = 64
    lr_head: float = 5e-4
    lr_backbone: float = 1e-4
    weight_decay: float = 1e-4
    step_size: int = 5
    gamma: float = 0.5
    alpha: float = 1.0
    val_fraction: float = 0.2
    seed: int = 0
    split_seed: int = 0  # apart from ``seed``: a rerun with another seed keeps the same validation people
    threads: int | None = None
    pretrained_backbone: Path | None = None
    init: Path | None = None
    rank_weight: float = 0.0
    rank_margin: float = 0.01
    monotone_weight: float = 0.0
    monotone_copies_only: bool = False
    monotone_mix: str | None = None
    monotone_eyes: tuple[float, float] = (8.0, 28.0)
    jitter: float = 0.0
    consistency: float = 0.0
    #: a train.distill folder and the weight of its term (features stay near the recognizer's view)
    teacher: Path | None = None
    teacher_weight: float = 0.0
    #: decay per step of the weight average kept instead of the last step's weights (0: none)
    ema: float = 0.0
    select: str = "srcc"
    target: str = "score"
    margin: float = 0.2
    device: str = "cpu"
    stop_after_epochs: int | None = None


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


def _augment(x: torch.Tensor, gen: torch.Generator, jitter: float = 0.0) -> torch.Tensor:
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
        x = _similarity_jitter(x, gen, jitter)
    return x


#: How far the consistency view moves a 128 px crop at most (scaled with the stage's size):
#: the working resolution's landmarks differ from full resolution's by up to 1.35% of the
#: eye distance, and users' aligners by more.
CONSISTENCY_PIXELS = 3


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


def consistency_term(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between two scores of the same capture."""
    return (first - second).pow(2).mean()


def _similarity_jitter(x: torch.Tensor, gen: torch.Generator, jitter: float) -> torch.Tensor:
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


def group_batches(groups: list[str | None], batch_size: int, gen: torch.Generator) -> list[np.ndarray]:
    """Batches (of positions into ``groups``) that keep each group's captures together, in
    random group order, so a photo and its degraded copies share a batch."""
    by_group: dict[str, list[int]] = {}
    for pos, g in enumerate(groups):
        by_group.setdefault(g if g is not None else f"#{pos}", []).append(pos)
    keys = list(by_group)
    order = torch.randperm(len(keys), generator=gen).tolist()
    batches, current = [], []
    for k in order:
        current += by_group[keys[k]]
        if len(current) >= batch_size:
            batches.append(np.array(current))
            current = []
    if len(current) >= 2:
        batches.append(np.array(current))
    return batches


def rank_pairs(groups: list[str | None], reference: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (original, degraded copy of it) within one batch."""
    originals = {g: i for i, (g, r) in enumerate(zip(groups, reference)) if r and g is not None}
    pairs = [(originals[g], j) for j, (g, r) in enumerate(zip(groups, reference)) if not r and g in originals]
    if not pairs:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    a, b = zip(*pairs)
    return torch.tensor(a), torch.tensor(b)


#: Degradations made on the fly in crop space for the monotonicity term.
MONOTONE_KINDS = ("dark", "low_resolution", "blur", "noise")


def parse_mix(text: str) -> dict[str, float]:
    """``"dark:1,low_resolution:3"`` -> relative weights of the on-the-fly kinds (others 0)."""
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition(":")
        if kind not in MONOTONE_KINDS:
            raise ValueError(f"unknown degradation {kind!r} in {text!r}; choose from {', '.join(MONOTONE_KINDS)}")
        mix[kind] = float(weight or 1.0)
    if sum(mix.values()) <= 0:
        raise ValueError(f"{text!r}: the weights must add up to more than 0")
    return mix


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


def order_accuracy(net: QualityNet, crops: np.ndarray, spec: ScorerSpec, seed: int, **copies) -> float:
    """Share of crops that score above a worse copy of themselves (fixed seed, so epochs compare);
    ``copies`` go to :func:`worse_copies`."""
    worse = worse_copies(crops, spec.margin, np.random.default_rng(seed), **copies)
    return float(np.mean(predict(net, crops, spec) > predict(net, worse, spec)))


def ranking_hinge(better: torch.Tensor, worse: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean of relu(margin - (better - worse)): zero once each better capture leads by ``margin``."""
    return torch.relu(margin - (better - worse)).mean()


def monotone_term(photo: torch.Tensor, copy: torch.Tensor, margin: float, copies_only: bool = False) -> torch.Tensor:
    """The on-the-fly term: each worse copy below its photo by ``margin``. ``copies_only``
    takes the photo's prediction as given, so the term lowers the copy and never lifts the
    photo: it cannot reorder clean photos by how bright or sharp they are."""
    return ranking_hinge(photo.detach() if copies_only else photo, copy, margin)


class WeightAverage:
    """An exponential moving average of a network's weights and batch-norm statistics.

    One step's weights carry that step's batch; the average over the last few hundred steps
    does not, so validation (and the checkpoint it keeps) depends less on where an epoch
    happened to end. The decay ramps up over the first steps, min(decay, (1 + t) / (10 + t)) as
    TensorFlow's ExponentialMovingAverage does with ``num_updates``, so a fresh average is not
    stuck at its starting point."""

    def __init__(self, net: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema {decay}: the decay per step must lie between 0 and 1 (e.g. 0.998)")
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


def save_checkpoint(net: QualityNet, path: Path, spec: ScorerSpec, **meta) -> None:
    torch.save({"arch": net.arch, "input_size": spec.input_size, "state_dict": net.state_dict(), **meta}, path)


#: Settings a resumed run may change: they do not change the result.
NOT_FINGERPRINTED = ("threads", "stop_after_epochs", "device")


#: Settings that name files: compared as the files they resolve to (a work folder reached
#: through a link, or named relative to another folder, is the same run).
PATH_SETTINGS = ("csv", "init", "pretrained_backbone", "recognizer", "teacher")


def recorded_settings(cfg, ignore=()) -> dict:
    """A config dataclass as JSON holds it (paths as strings), less the ``ignore`` fields: what a
    run records so that a later run can tell whether it is the same one."""
    keep = {k: v for k, v in asdict(cfg).items() if k not in ignore}
    return json.loads(json.dumps(keep, default=str))


def fingerprint(cfg: FitConfig) -> dict:
    """What a resumed run must share with the run it resumes (threads and the stop may differ)."""
    return recorded_settings(cfg, NOT_FINGERPRINTED)


#: Every defaulted setting as a fingerprint holds it: a record made before a setting existed
#: holds none for it, and the run it records had the default.
DEFAULT_FINGERPRINT = {k: v for k, v in fingerprint(FitConfig(csv=None, arch=None, out=None)).items()
                       if k not in ("csv", "arch", "out")}


def comparable(settings: dict, defaults: dict | None = None) -> dict:
    """Settings as two runs compare them: where the run is written (``out``, the folder that
    holds the record) does not count, file settings count as the files they resolve to, and a
    setting added since the record was made counts as its default (``defaults``)."""
    settings = {**(defaults or {}), **settings}
    return {k: (str(Path(v).resolve()) if k in PATH_SETTINGS and v not in (None, "None") else v)
            for k, v in settings.items() if k != "out"}


def same_run(recorded: dict, cfg: FitConfig) -> bool:
    """Whether settings recorded by an earlier run (its fingerprint) are ``cfg``'s."""
    return comparable(recorded, DEFAULT_FINGERPRINT) == comparable(fingerprint(cfg))


def _resume_state(path: Path, cfg: FitConfig, log) -> dict | None:
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not same_run(state.get("fingerprint") or {}, cfg):
        raise ValueError(f"{path}: a run with other settings left this; remove it, or resume with the same "
                         f"settings (its settings: {json.dumps(state.get('fingerprint'))})")
    log(f"resuming after stage {state['stage']} epoch {state['epoch']} ({path})")
    return state


def forward_sharded(module: torch.nn.Module, net: QualityNet, x: torch.Tensor, d) -> torch.Tensor:
    """Predictions for the whole batch ``x``, in its order; under torchrun each rank computes
    its shard of rows (dropout masks drawn for the whole batch) and the shards are gathered."""
    from .distributed import ShardedDropout, gather

    if not d.active:
        return module(x)
    rows = np.arange(len(x))
    ShardedDropout.shard(net, rows[d.rank :: d.world], len(x))
    pred = gather(module(x[rows[d.rank :: d.world]]), d)
    order = np.concatenate([rows[r :: d.world] for r in range(d.world)])
    return pred[torch.from_numpy(np.argsort(order)).to(pred.device)]


def initial_member(cfg: FitConfig) -> QualityNet:
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


def fit(cfg: FitConfig, log=print) -> dict:
    """Train one member; returns the history and the best validation metrics.

    Every epoch leaves ``<arch>.resume.pt`` (weights, optimiser, schedule and random states):
    the same command after an interruption carries on from the last finished epoch, with the
    result of an uninterrupted run. Under ``torchrun`` every process trains a shard of each
    batch (:mod:`train.distributed`) and only rank 0 logs and writes files."""
    from .distributed import ShardedDropout, SyncBatchNorm2d, setup

    d = setup(cfg.device)
    if not d.main:
        log = _silent  # the same run, told once
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cfg.out.mkdir(parents=True, exist_ok=True)
    spec = ScorerSpec(input_size=max(s.size for s in cfg.stages), margin=cfg.margin)
    samples = read_csv(cfg.csv, target=cfg.target)
    crops, kept = load_crops(samples, spec, cfg.images)
    samples = [samples[i] for i in kept]
    train_idx, val_idx = split(samples, cfg.val_fraction, cfg.split_seed)
    scores = np.array([s.score for s in samples], dtype=np.float32)
    groups = [s.group for s in samples]
    reference = np.array([s.reference for s in samples])
    log(f"{cfg.arch}: {len(train_idx)} training and {len(val_idx)} validation samples on {d.device}")
    growth_order = np.random.default_rng(cfg.seed).permutation(train_idx)

    net = initial_member(cfg)
    net.to(d.device)
    averaged = WeightAverage(net, cfg.ema) if cfg.ema > 0 else None  # of the plain module, before any wrapping
    model = net
    if d.active:
        from torch.nn.parallel import DistributedDataParallel

        # net stays the plain module inside, with the same parameter and buffer names
        model = DistributedDataParallel(ShardedDropout.convert(SyncBatchNorm2d.convert(net)))
    loss_fn = MSECorrLoss(cfg.alpha)
    teacher = None
    if cfg.teacher_weight > 0:
        from .distill import TeacherTerm

        if cfg.teacher is None:
            raise ValueError("--teacher-weight needs --teacher DIR, a train.distill folder")
        if d.active or cfg.consistency > 0:
            raise ValueError("the teacher term is not combined with torchrun or --consistency yet")
        teacher = TeacherTerm.load(Path(cfg.teacher), cfg.arch, kept).to(d.device)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    val_refs = np.array([i for i in val_idx if reference[i]], dtype=int)
    copies = {"mix": parse_mix(cfg.monotone_mix) if cfg.monotone_mix else None,
              "eyes_px": tuple(cfg.monotone_eyes)}
    history, best = [], {"srcc": -math.inf}
    best_path = cfg.out / f"{cfg.arch}.pt"
    raw_path = cfg.out / f"{cfg.arch}.raw.pt"  # with ema: the last step's weights' own best
    resume_path = cfg.out / f"{cfg.arch}.resume.pt"
    state = _resume_state(resume_path, cfg, log)
    if state is not None:
        history, best = state["history"], state["best"]
    epochs_run = 0

    def on_device(t: torch.Tensor) -> torch.Tensor:
        return t.to(d.device, non_blocking=True)

    for stage_no, stage in enumerate(cfg.stages, 1):
        if state is not None and (stage_no < state["stage"] or
                                  (stage_no == state["stage"] and state["epoch"] >= stage.epochs)):
            continue  # finished before the interruption
        stage_spec = spec.with_(input_size=stage.size)
        used = np.sort(growth_order[: max(1, math.ceil(stage.fraction * len(growth_order)))])
        x_train = resize_all(crops[used], stage.size)
        y_train = torch.from_numpy(scores[used])
        x_val = resize_all(crops[val_idx], stage.size)
        x_val_refs = resize_all(crops[val_refs], stage.size) if len(val_refs) else None

        def validate(candidate: QualityNet) -> tuple[dict, float]:
            """Validation metrics, and the figure the kept checkpoint maximises."""
            metrics = correlations(predict(candidate, x_val, stage_spec), scores[val_idx])
            if x_val_refs is not None and (cfg.monotone_weight > 0 or cfg.select != "srcc"):
                metrics["order"] = order_accuracy(candidate, x_val_refs, stage_spec, cfg.seed + 1, **copies)
            return metrics, metrics["srcc"] + (metrics.get("order", 0.0) if cfg.select == "srcc+order" else 0.0)

        d.barrier()  # rank 0 has written the previous stage's best
        if stage_no > 1 and best_path.exists():
            net.load_state_dict(torch.load(best_path, map_location=d.device, weights_only=True)["state_dict"])
        if averaged is not None:
            averaged.restart(net)
        optimizer = torch.optim.Adam(
            [
                {"params": list(net.head_parameters()), "lr": cfg.lr_head},
                {"params": list(net.backbone_parameters()), "lr": cfg.lr_backbone},
            ],
            weight_decay=cfg.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.step_size, cfg.gamma)
        stage_best, raw_best, first_epoch = -math.inf, -math.inf, 1
        if state is not None and stage_no == state["stage"]:
            net.load_state_dict(state["net"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            stage_best, first_epoch = state["stage_best"], state["epoch"] + 1
            if averaged is not None:
                averaged.load_state_dict(state["ema"])
                raw_best = state["raw_best"]
        if state is not None and stage_no >= state["stage"]:
            gen.set_state(state["generator"])
            rng.bit_generator.state = json.loads(state["numpy_rng"])
            torch.set_rng_state(state["torch_rng"])
            state = None
        for epoch in range(first_epoch, stage.epochs + 1):
            if cfg.stop_after_epochs is not None and epochs_run >= cfg.stop_after_epochs:
                log(f"stopped after {epochs_run} epochs as asked; run the same command to carry on")
                return {"stopped": True, "history": history, "best": best}
            t0 = time.time()
            net.train()
            if cfg.rank_weight > 0:
                batches = group_batches([groups[i] for i in used], cfg.batch_size, gen)
            else:
                order = torch.randperm(len(used), generator=gen).numpy()
                batches = [order[k : k + cfg.batch_size] for k in range(0, len(order), cfg.batch_size)]
            losses = []
            for batch in batches:
                if len(batch) < 2:
                    continue
                x = _augment(to_tensor(stage_spec, x_train[batch]), gen, cfg.jitter)
                target = on_device(y_train[batch])
                if cfg.consistency > 0:
                    # the batch again, each crop moved by a pixel or few: both views learn the
                    # label and must agree (the score must not hang on exact framing)
                    both = forward_sharded(model, net, on_device(torch.cat([x, moved_by_pixels(
                        x, gen, CONSISTENCY_PIXELS * stage.size // 128 or 1)])), d).view(2, len(batch))
                    pred = both[0]
                    loss = (loss_fn(both[0], target) + loss_fn(both[1], target)) / 2
                    loss = loss + cfg.consistency * consistency_term(both[0], both[1])
                elif teacher is not None:
                    features = net.forward_features(on_device(x))
                    pred = net.forward_head(features)
                    loss = loss_fn(pred, target) + cfg.teacher_weight * teacher(features, used[batch])
                else:
                    pred = forward_sharded(model, net, on_device(x), d)
                    loss = loss_fn(pred, target)
                if cfg.rank_weight > 0:
                    a, b = rank_pairs([groups[used[i]] for i in batch], reference[used[batch]])
                    if len(a):
                        # a degraded copy must score below the photo it was made from
                        loss = loss + cfg.rank_weight * ranking_hinge(pred[a], pred[b], cfg.rank_margin)
                if cfg.monotone_weight > 0:
                    # and so must a worse copy made now (darker, smaller, blurrier, noisier);
                    # through the plain module: one forward through the wrapper per step
                    refs = batch[reference[used[batch]]]
                    if len(refs):
                        clean = to_tensor(stage_spec, x_train[refs])
                        worse = to_tensor(stage_spec, worse_copies(x_train[refs], spec.margin, rng, **copies))
                        both = on_device(_augment(torch.cat([clean, worse]), gen, cfg.jitter))
                        p = forward_sharded(net, net, both, d).view(2, len(refs))
                        loss = loss + cfg.monotone_weight * monotone_term(p[0], p[1], cfg.rank_margin,
                                                                          cfg.monotone_copies_only)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if averaged is not None:
                    averaged.update(net)
                losses.append(loss.item())
            scheduler.step()
            epochs_run += 1

            kept = net if averaged is None else averaged.net
            metrics, chosen = validate(kept)
            raw = {}
            if averaged is not None:
                raw_metrics, raw_chosen = validate(net)
                raw = {f"raw_{k}": v for k, v in raw_metrics.items()}
                if raw_chosen > raw_best:
                    raw_best = raw_chosen
                    if d.main:
                        save_checkpoint(net, raw_path, stage_spec, stage=stage_no, epoch=epoch, metrics=raw_metrics)
            record = {"stage": stage_no, "size": stage.size, "samples": len(used), "epoch": epoch,
                      "loss": float(np.mean(losses)) if losses else float("nan"),
                      "seconds": round(time.time() - t0, 1), **metrics, **raw}
            history.append(record)
            log(json.dumps(record))
            # Later stages run at the final size; keep the best of the final size only
            # once we reach it, but always keep a stage's best to resume the next stage from.
            if chosen > stage_best:
                stage_best = chosen
                if d.main:
                    save_checkpoint(kept, best_path, stage_spec, stage=stage_no, epoch=epoch, metrics=metrics)
                if stage_no == len(cfg.stages):
                    best = {**metrics, "stage": stage_no, "epoch": epoch}
            if d.main:  # written whole, then moved: a kill mid-write leaves the previous one
                partial = resume_path.with_suffix(".partial")
                torch.save({"fingerprint": fingerprint(cfg), "stage": stage_no, "epoch": epoch,
                            "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "generator": gen.get_state(),
                            "numpy_rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state(),
                            "stage_best": stage_best, "best": best, "history": history,
                            "ema": averaged.state_dict() if averaged is not None else None,
                            "raw_best": raw_best}, partial)
                partial.replace(resume_path)
    result = {"config": recorded_settings(cfg), "fingerprint": fingerprint(cfg), "history": history, "best": best,
              "val_identities": sorted({samples[i].identity or "" for i in val_idx})}
    if d.main:
        (cfg.out / f"{cfg.arch}.history.json").write_text(json.dumps(result, indent=1))
        resume_path.unlink(missing_ok=True)  # finished: the history says so
    d.barrier()
    return result


def _silent(*_args, **_kwargs) -> None:
    pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, required=True, help="CSV with path,score[,identity]")
    parser.add_argument("--arch", required=True, choices=["mobilenet_v3_small", "shufflenet_v2_x1_0"])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stages", type=parse_stages, default=parse_stages("112:1:30"),
                        help="size:fraction:epochs,... (default: one stage, 112 px, all data, 30 epochs)")
    parser.add_argument("--images", choices=["aligned", "photos"], default="aligned")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr-head", type=float, default=5e-4)
    parser.add_argument("--lr-backbone", type=float, default=1e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--step-size", type=int, default=5)
    parser.add_argument("--gamma", type=float, default=0.5)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0, help="initialisation, batch order and augmentation")
    parser.add_argument("--split-seed", type=int, default=0,
                        help="which people are held out for validation (keep it when comparing seeds)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pretrained-backbone", type=Path, default=None)
    parser.add_argument("--init", type=Path, default=None, help="start from this facegate checkpoint")
    parser.add_argument("--rank-weight", type=float, default=0.0,
                        help="weight of the pairwise term: degraded copies rank below their original (needs group columns)")
    parser.add_argument("--rank-margin", type=float, default=0.01)
    parser.add_argument("--monotone-weight", type=float, default=0.0,
                        help="weight of the term: a worse copy made on the fly scores below its photo")
    parser.add_argument("--monotone-mix", default=None,
                        help="relative weights of the on-the-fly kinds, e.g. dark:1,low_resolution:3,blur:1,noise:1")
    parser.add_argument("--monotone-eyes", type=float, nargs=2, default=(8.0, 28.0), metavar=("MIN", "MAX"),
                        help="range of px between the eyes for on-the-fly low-resolution copies")
    parser.add_argument("--monotone-copies-only", action="store_true",
                        help="the on-the-fly term moves only the worse copy's prediction, not its photo's")
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="re-sample half the crops through a random similarity this large (shift as a share of "
                             "the side, scale, radians), so the score does not hang on exact landmark placement")
    parser.add_argument("--consistency", type=float, default=0.0,
                        help=f"weight of the term: the same crop moved by 1-{CONSISTENCY_PIXELS} px (at 128 px) scores the same (each batch is "
                             "scored twice, so an epoch costs about twice as long)")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="a train.distill folder (its targets.npz and <arch>.resume.pt), for --teacher-weight")
    parser.add_argument("--teacher-weight", type=float, default=0.0,
                        help="weight of the term keeping the features near the recognizer's embedding of each crop")
    parser.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                        help="validate, select and save a moving average of the weights (decay per step, e.g. 0.998) "
                             "instead of the last step's; the last step's own best is kept as <arch>.raw.pt")
    parser.add_argument("--select", choices=["srcc", "srcc+order"], default="srcc",
                        help="checkpoint kept per stage: best validation SRCC, or SRCC + order accuracy")
    parser.add_argument("--target", default="score", help="CSV column trained on (default: score)")
    parser.add_argument("--margin", type=float, default=0.2,
                        help="crop framing of the spec (0: the ArcFace template; 0.2: shrunk by 20%% for context)")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                        help="where to train; under torchrun, cuda uses one GPU per process (NCCL)")
    parser.add_argument("--stop-after-epochs", type=int, default=None,
                        help="stop after this many epochs (the same command carries on later)")
    fit(FitConfig(**vars(parser.parse_args(argv))))


if __name__ == "__main__":
    main()
