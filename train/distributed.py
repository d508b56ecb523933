"""Training on several processes (``torchrun``): one process per group of cores, each
computing a shard of every batch, with the results of one process up to float noise.

    torchrun --nproc-per-node 2 -m train.fit --csv labels.csv --arch mobilenet_v3_small --out runs/m
    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HEAD:29500 -m train.fit ...
    torchrun --nproc-per-node 4 -m train.fit ... --device cuda     # one GPU per process, NCCL

Why it matches one process: every rank sees the same batches in the same order (same
seed) and the same augmentation (applied to the whole batch, then sharded); batch norm
uses the statistics of the whole batch (:class:`SyncBatchNorm2d`); dropout masks are drawn
for the whole batch (:class:`ShardedDropout`); the loss is computed on
the predictions of the whole batch (:func:`gather`), because MSECorrLoss's correlation
term is a statistic of the batch; and DistributedDataParallel averages the gradients.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Distributed", "ShardedDropout", "SyncBatchNorm2d", "forward_sharded", "gather", "setup", "wrap"]


class Distributed:
    """This process's place: rank, world size, device."""

    def __init__(self, rank: int = 0, world: int = 1, device: str = "cpu"):
        self.rank, self.world, self.device = rank, world, device

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def setup(device: str = "cpu") -> Distributed:
    """Join the process group torchrun describes in the environment; a plain
    ``python -m train.fit`` is a world of one. ``device``: ``"cpu"`` (gloo), ``"cuda"``
    (one GPU per process, ``LOCAL_RANK``'s, NCCL) or ``"auto"`` (cuda when there is one)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: torch sees no GPU here")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    if world <= 1:
        return Distributed(device=device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Distributed(int(os.environ["RANK"]), world, device)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """Batch norm over the whole batch of every rank, on any backend (PyTorch's own
    SyncBatchNorm needs a GPU). Training uses the global mean and (biased) variance,
    summed with autograd-aware all-reduces; running statistics use the unbiased variance,
    as ``nn.BatchNorm2d`` does; evaluation is plain batch norm."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not (dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype, device=x.device)
        sums = torch.cat([x.sum(dim=(0, 2, 3)), (x * x).sum(dim=(0, 2, 3)), count])
        sums = all_reduce(sums)
        c = x.shape[1]
        n = sums[-1]
        mean = sums[:c] / n
        var = sums[c : 2 * c] / n - mean * mean
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - momentum).add_(momentum * mean.detach())
            self.running_var.mul_(1 - momentum).add_(momentum * var.detach() * n / max(float(n) - 1, 1.0))
        shape = (1, c, 1, 1)
        out = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return out * self.weight.view(shape) + self.bias.view(shape) if self.affine else out

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """``module`` with every BatchNorm2d replaced in place (same parameters and
        buffers, so checkpoints load either way)."""
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d) and not isinstance(child, cls):
                sync = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
                sync.load_state_dict(child.state_dict())
                setattr(module, name, sync)
            else:
                cls.convert(child)
        return module


class ShardedDropout(nn.Dropout):
    """Dropout whose mask is drawn for the whole batch, as one process would draw it (same
    generator, same shape, same call), and then cut to this rank's rows: so the mask a
    sample gets does not depend on how the batch was split."""

    rows: torch.Tensor | None = None
    batch: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.rows is None:
            return super().forward(x)
        noise = torch.empty((self.batch, *x.shape[1:]), dtype=x.dtype, device=x.device).bernoulli_(1 - self.p)
        noise.div_(1 - self.p)
        return x * noise[self.rows]

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        for name, child in module.named_children():
            if type(child) is nn.Dropout:
                setattr(module, name, cls(child.p, child.inplace))
            else:
                cls.convert(child)
        return module

    @classmethod
    def shard(cls, module: nn.Module, rows, batch: int) -> None:
        """Tell every sharded dropout of ``module`` which rows of a batch of ``batch`` come next."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        for m in module.modules():
            if isinstance(m, cls):
                m.rows, m.batch = rows, batch


def gather(local: torch.Tensor, dist_info: Distributed) -> torch.Tensor:
    """Every rank's ``local`` rows concatenated in rank order, with gradients flowing back
    to each rank's own rows; shards may differ in length by one."""
    if not dist_info.active:
        return local
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros(1, dtype=torch.long, device=local.device) for _ in range(dist_info.world)]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=local.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.cat([local, local.new_zeros((longest - local.shape[0], *local.shape[1:]))])
    parts = all_gather(padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])


def forward_sharded(module: nn.Module, net: nn.Module, x: torch.Tensor, d: Distributed) -> torch.Tensor:
    """Predictions for the whole batch ``x``, in its order; under torchrun each rank computes
    its shard of rows (dropout masks drawn for the whole batch) and the shards are gathered."""
    import numpy as np

    if not d.active:
        return module(x)
    rows = np.arange(len(x))
    ShardedDropout.shard(net, rows[d.rank :: d.world], len(x))
    pred = gather(module(x[rows[d.rank :: d.world]]), d)
    order = np.concatenate([rows[r :: d.world] for r in range(d.world)])
    return pred[torch.from_numpy(np.argsort(order)).to(pred.device)]


def wrap(net: nn.Module, d: Distributed) -> nn.Module:
    """``net`` as the training step calls it: itself in a world of one, else inside
    DistributedDataParallel with whole-batch batch norm and dropout (net stays the plain
    module inside, with the same parameter and buffer names)."""
    if not d.active:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(ShardedDropout.convert(SyncBatchNorm2d.convert(net)))
