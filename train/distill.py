"""Start a member's backbone from a face recognizer's view of faces (feature distillation).

No ImageNet weights can be had here, and the members trained from scratch on the labels'
few thousand natural photos order natural captures worse than the FROQ-style observer, which
reads the recognizer's own features. This step trains each member's feature extractor (with
a linear projection) to reproduce the recognizer's embedding of every training crop, so the
quality fit (``train.fit --pretrained-backbone``) starts from features that see pose,
expression and occlusion the way a recognizer does. Only the training side of the labels'
identity split is used: the validation people stay unseen.

Target: the MobileFaceNet embedding of the crop and of its mirror, summed and normalised
(nearly the same for a crop and its mirror image: cosine above 0.95 on the test photos; so the
mirror augmentation keeps its target).
Loss: 1 - cosine. The crops are the labels' aligned crops (the spec's template), which the
recognizer re-aligns onto its own template from the template's known points.

Run: ``python -m train.distill --csv runs/release/labels/labels.csv --recognizer
../shared/models/mobilefacenet_casia.ckpt --out runs/release/distilled``; every epoch leaves
``<arch>.resume.pt``, and the same command carries on after an interruption. Writes
``<arch>.backbone.pt`` (torchvision key names, as ``--pretrained-backbone`` takes them).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from facegate.alignment import quality_template
from facegate.models import QualityNet, backbone_state_dict, build_member, load_backbone_weights, to_tensor
from facegate.recognition import MobileFaceNetRecognizer
from facegate.spec import ScorerSpec

from .data import load_crops, read_csv, split
from .augment import augment
from .checkpoints import comparable, recorded_settings
from .recipe import SHIPPED


#: What may differ between a run and the run it resumes or repeats.
NOT_RECORDED = ("threads",)


@dataclass
class DistillConfig:
    csv: Path
    recognizer: Path
    arch: str
    out: Path
    size: int = SHIPPED.input_size
    #: framing of the labels' crops (the shipped spec's: the ArcFace template)
    margin: float = SHIPPED.spec.margin
    epochs: int = SHIPPED.distillation.epochs
    batch_size: int = SHIPPED.distillation.batch_size
    lr: float = SHIPPED.distillation.lr
    weight_decay: float = SHIPPED.distillation.weight_decay
    val_fraction: float = SHIPPED.val_fraction
    seed: int = SHIPPED.seed
    #: a backbone file to start from (train.imagenet's); None: random initialisation
    start: Path | None = None
    threads: int | None = None


def teacher_targets(crops: np.ndarray, spec: ScorerSpec, recognizer: MobileFaceNetRecognizer) -> np.ndarray:
    """``(N, S, S, 3)`` aligned crops -> ``(N, D)`` unit vectors: the recognizer's embedding of
    each crop plus that of its mirror, normalised (mirror-invariant)."""
    points = quality_template(crops.shape[1], spec.margin)
    aligned = np.stack([recognizer.align(c, points) for c in crops])
    pair = recognizer.embed_aligned(aligned)  # image and mirror, concatenated
    half = pair.shape[1] // 2
    summed = pair[:, :half] + pair[:, half:]
    return (summed / np.linalg.norm(summed, axis=1, keepdims=True)).astype(np.float32)


class Student(nn.Module):
    """A member's feature extractor, pooled, and a linear map to the teacher's space."""

    def __init__(self, net: QualityNet, dim: int):
        super().__init__()
        self.net = net
        self.project = nn.Linear(net.num_features, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.project(self.net.forward_features(x)), dim=1)


def _cosine_on(student: Student, crops: np.ndarray, targets: np.ndarray, spec: ScorerSpec) -> float:
    student.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(crops), 256):
            out.append(student(to_tensor(spec, crops[start : start + 256])).numpy())
    student.train()
    return float(np.mean(np.sum(np.concatenate(out) * targets, 1)))


def stored_targets(folder: Path, kept: np.ndarray) -> np.ndarray | None:
    """``folder/targets.npz``'s targets when they were made for exactly the crops ``kept``."""
    cache = folder / "targets.npz"
    cached = np.load(cache) if cache.exists() else None
    if cached is not None and np.array_equal(cached["kept"], kept):
        return cached["targets"]
    return None


def cached_targets(cfg: DistillConfig, spec: ScorerSpec, crops: np.ndarray, kept: np.ndarray, log=print) -> np.ndarray:
    """The teacher's targets for these crops, from ``out/targets.npz`` when it holds exactly
    these crops (they take minutes: members distilled beside each other share them)."""
    stored = stored_targets(cfg.out, kept)
    if stored is not None:
        return stored
    cache, t0 = cfg.out / "targets.npz", time.time()
    targets = teacher_targets(crops, spec, MobileFaceNetRecognizer(str(cfg.recognizer)))
    cfg.out.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, targets=targets, kept=kept)
    partial.replace(cache)  # whole or absent: a member started beside this one may read it
    log(f"teacher targets for {len(kept)} crops in {time.time() - t0:.0f} s")
    return targets


def prepare_targets(cfg: DistillConfig, log=print) -> None:
    """Fill the target cache once, before members are distilled in parallel processes."""
    spec = ScorerSpec(input_size=cfg.size, margin=cfg.margin)
    crops, kept = load_crops(read_csv(cfg.csv), spec)
    cached_targets(cfg, spec, crops, kept, log)


def finished(cfg: DistillConfig) -> bool:
    """Whether ``cfg``'s backbone was distilled to the end with these settings."""
    record = cfg.out / f"{cfg.arch}.distill.json"
    if not (record.exists() and (cfg.out / f"{cfg.arch}.backbone.pt").exists()):
        return False
    recorded = json.loads(record.read_text())
    same = comparable(recorded["settings"]) == comparable(recorded_settings(cfg, NOT_RECORDED))
    return same and len(recorded["history"]) == cfg.epochs


def distill(cfg: DistillConfig, log=print) -> dict:
    """Train one member's backbone on the teacher's targets; returns the history (mean
    validation cosine per epoch). Resumes from ``<arch>.resume.pt`` when settings match."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    cfg.out.mkdir(parents=True, exist_ok=True)
    spec = ScorerSpec(input_size=cfg.size, margin=cfg.margin)
    samples = read_csv(cfg.csv)
    train_idx, val_idx = split(samples, cfg.val_fraction, cfg.seed)
    crops, kept = load_crops(samples, spec)  # at cfg.size already
    targets = cached_targets(cfg, spec, crops, kept, log)
    position = {int(k): p for p, k in enumerate(kept)}
    tr = np.array([position[i] for i in train_idx if i in position])
    va = np.array([position[i] for i in val_idx if i in position])
    net = build_member(cfg.arch)
    if cfg.start is not None:
        load_backbone_weights(net, str(cfg.start))
    student = Student(net, targets.shape[1])
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs,
                                                steps_per_epoch=-(-len(tr) // cfg.batch_size))
    gen = torch.Generator().manual_seed(cfg.seed)
    history, start_epoch = [], 0
    resume = cfg.out / f"{cfg.arch}.resume.pt"
    settings = recorded_settings(cfg, NOT_RECORDED)
    if resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=True)
        if comparable(state["settings"]) != comparable(settings):
            raise ValueError(f"{resume}: a run with other settings left this; remove it or use the same settings")
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        history, start_epoch = json.loads(state["history"]), state["epoch"] + 1
        log(f"{cfg.arch}: resuming after epoch {state['epoch']}")
    val_crops, val_targets = crops[va], targets[va]
    for epoch in range(start_epoch, cfg.epochs):
        t0, losses = time.time(), []
        student.train()
        order = tr[torch.randperm(len(tr), generator=gen).numpy()]
        for start in range(0, len(order), cfg.batch_size):
            batch = order[start : start + cfg.batch_size]
            if len(batch) < 2:
                continue
            x = augment(to_tensor(spec, crops[batch]), gen)
            loss = (1.0 - (student(x) * torch.from_numpy(targets[batch])).sum(1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        record = {"epoch": epoch, "loss": float(np.mean(losses)),
                  "val_cosine": _cosine_on(student, val_crops, val_targets, spec),
                  "seconds": round(time.time() - t0, 1)}
        history.append(record)
        log(f"{cfg.arch} distill epoch {epoch}: loss {record['loss']:.4f}, validation cosine "
            f"{record['val_cosine']:.4f} ({record['seconds']:.0f} s)")
        torch.save({"settings": settings, "student": student.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "gen": gen.get_state(), "history": json.dumps(history),
                    "epoch": epoch}, resume)
    torch.save({"arch": cfg.arch, "state_dict": backbone_state_dict(student.net), "distilled_from": str(cfg.recognizer),
                "history": json.dumps(history)}, cfg.out / f"{cfg.arch}.backbone.pt")
    (cfg.out / f"{cfg.arch}.distill.json").write_text(json.dumps({"settings": settings, "history": history}, indent=1))
    return {"history": history}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--recognizer", type=Path, required=True, help="MobileFaceNet checkpoint (the teacher)")
    parser.add_argument("--arch", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=DistillConfig.size, help="crop size (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=DistillConfig.epochs, help="(default: %(default)s)")
    parser.add_argument("--lr", type=float, default=DistillConfig.lr, help="peak learning rate (default: %(default)s)")
    parser.add_argument("--start", type=Path, default=None, metavar="FILE",
                        help="start from this backbone file (e.g. train.imagenet's) instead of random initialisation")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    distill(DistillConfig(csv=args.csv, recognizer=args.recognizer, arch=args.arch, out=args.out, size=args.size,
                          epochs=args.epochs, lr=args.lr, start=args.start, threads=args.threads))


if __name__ == "__main__":
    main()
