"""Small helper networks of the capture stage (photo orientation, occlusion), trained here.

Each is MobileNetV3-Small's feature extractor from the ImageNet start (:mod:`train.imagenet`)
at a small input (64 px: about 5 M multiply-adds, under a millisecond on one core), pooled,
and one linear layer; trained with AdamW and a cosine schedule on CPU in minutes, checkpointed
every epoch (the same command carries on), and exported to ONNX so the runtime runs it with
onnxruntime, without torch. The runtime side reads the model and its ``.json`` (input size,
normalisation, outputs, decision settings, terms): :mod:`facegate.helpers`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from facegate.models import to_tensor
from facegate.spec import ScorerSpec

from .checkpoints import save_resume

__all__ = ["SmallNet", "SmallFit", "fit_small", "export", "HELPER_TERMS"]

#: What helpers trained on the shared photos from the ImageNet start inherit.
HELPER_TERMS = ("non-commercial research use only: trained on photos of CelebA (non-commercial research use only) "
                "and LFW (research use), from Google's ImageNet MobileNetV3-Small (tensorflow/models, Apache-2.0; as "
                "TFLite from weilly0912/ATU_Model_Zoo, MIT), trained on ImageNet-1k (ImageNet's terms: non-commercial "
                "research and education); not for commercial products or services")


class SmallNet(nn.Module):
    """MobileNetV3-Small features, average pooled, dropout, one linear layer."""

    def __init__(self, outputs: int, shared: Path | None = None, dropout: float = 0.2):
        super().__init__()
        import torchvision

        self.features = torchvision.models.mobilenet_v3_small(weights=None).features
        if shared is not None:
            from .imagenet import TFLITE_FILE, fold_input_scaling, from_tflite

            start = from_tflite(shared / "models" / TFLITE_FILE)
            fold_input_scaling(start, ScorerSpec().mean, ScorerSpec().std)
            self.features.load_state_dict(start.features.state_dict())
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(576, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(self.features(x).mean(dim=(2, 3))))


@dataclass
class SmallFit:
    """How a helper is trained (recorded in its checkpoint, so a resumed run is the same run)."""

    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    refit_batches: int = 16


def _normalised(batch: np.ndarray) -> torch.Tensor:
    return to_tensor(ScorerSpec(), batch)


def fit_small(net: SmallNet, make_batch: Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]],
              train_items: np.ndarray, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
              evaluate: Callable[[SmallNet], dict], cfg: SmallFit, out: Path, log=print) -> list[dict]:
    """Train ``net``: each step draws a batch of ``train_items`` and ``make_batch`` turns it
    into ``(uint8 images (B, S, S, 3), targets)`` (augmentation included); ``evaluate`` runs
    after each epoch. ``out/resume.pt`` is written every epoch and read back by a later call."""
    torch.manual_seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    steps = -(-len(train_items) // cfg.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps)
    resume, history, start = out / "resume.pt", [], 0
    if resume.exists():
        state = torch.load(resume, map_location="cpu", weights_only=False)
        if state["settings"] != asdict(cfg):
            raise ValueError(f"{resume}: left by a run with other settings ({state['settings']}); remove it")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        history, start = state["history"], state["epoch"] + 1
    elif cfg.refit_batches:  # the ImageNet start's batch norms hold identity statistics
        from .imagenet import refit_batch_norm

        order = rng.permutation(train_items)[: cfg.refit_batches * cfg.batch_size]
        batches = [_normalised(make_batch(order[i:i + cfg.batch_size], rng)[0])
                   for i in range(0, len(order), cfg.batch_size)]
        refit_batch_norm(net.features, batches)
    for epoch in range(start, cfg.epochs):
        t0, losses = time.time(), []
        net.train()
        order = rng.permutation(train_items)
        for i in range(0, len(order), cfg.batch_size):
            images, targets = make_batch(order[i:i + cfg.batch_size], rng)
            if len(images) < 2:
                continue
            loss = loss_fn(net(_normalised(images)), torch.as_tensor(targets))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        net.eval()
        record = {"epoch": epoch, "loss": float(np.mean(losses)), **evaluate(net), "seconds": round(time.time() - t0, 1)}
        history.append(record)
        log(json.dumps(record))
        save_resume(resume, {"settings": asdict(cfg), "net": net.state_dict(), "opt": opt.state_dict(),
                             "sched": sched.state_dict(), "rng": rng.bit_generator.state, "history": history,
                             "epoch": epoch})
    return history


def predict(net: SmallNet, images: np.ndarray, batch: int = 256) -> np.ndarray:
    net.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            out.append(net(_normalised(images[i:i + batch])).numpy())
    return np.concatenate(out) if out else np.zeros((0, net.out.out_features), np.float32)


def export(net: SmallNet, path: Path, size: int, info: dict) -> Path:
    """``path`` (ONNX, input ``images`` (N, 3, S, S) normalised as the spec's mean and std,
    output ``logits``) and ``path.with_suffix('.json')`` (``info`` plus input size and
    normalisation): what :mod:`facegate.helpers` loads."""
    net.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(net, torch.zeros(1, 3, size, size), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "n"}, "logits": {0: "n"}}, opset_version=17, dynamo=False)
    spec = ScorerSpec()
    meta = {"format": "facegate-helper", "input_size": size, "mean": list(spec.mean), "std": list(spec.std),
            "terms": HELPER_TERMS, **info}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
    return path
