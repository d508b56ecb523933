"""One member from several trained from the same start: the average of their weights (a
uniform "model soup", Wortsman et al., ICML 2022).

Why: two trainings of the same recipe that differ only in seed order held-out LFW's natural
pairs differently by about 0.1 (docs/results.md), more than any recipe change measured. Runs
that start from the same weights (the distilled backbone and the same head) and are fine-tuned
briefly tend to stay in one basin, where the average of their weights is itself a good model:
it keeps what the runs share and averages out what each run's batches put there, at the
cost of one member at inference.

The batch-norm statistics of averaged weights are not the average of the runs' statistics,
so they are measured again on training crops (as SWA's ``update_bn`` does). Every ingredient
and the soup are scored on the labels' validation captures, so a soup of runs that did not
share a start (whose average is a broken network) shows at once.

Run: ``python -m train.soup OUT runs/a/members runs/b/members ... --csv LABELS.csv`` (each
folder holds ``<arch>.pt`` from ``train.fit``; the soup is written as ``OUT/<arch>.pt``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from facegate.models import QualityNet, load_member, to_tensor
from facegate.spec import ScorerSpec

from .data import load_crops, read_csv, split
from .averaging import average_states
from .recipe import SHIPPED
from .trainer import correlations, predict

#: Training crops the batch-norm statistics of a soup are measured on (the model card repeats it).
BN_CROPS = 4096


@torch.no_grad()
def measure_batch_norm(net: QualityNet, crops: np.ndarray, spec: ScorerSpec, batch_size: int = 64) -> None:
    """Replace every batch-norm layer's running statistics by their plain average over ``crops``."""
    layers = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    net.train()
    for start in range(0, len(crops), batch_size):
        net(to_tensor(spec, crops[start : start + batch_size]))
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    net.eval()


def make_soup(ingredients: list[Path], arch: str, out: Path, samples, crops: np.ndarray,
              train_idx, val_idx, spec: ScorerSpec, bn_crops: int = BN_CROPS, seed: int = 0) -> dict:
    """Average ``arch``'s checkpoints from ``ingredients`` into ``out/<arch>.pt``; returns the
    validation SRCC and PLCC of every ingredient and of the soup."""
    nets = [load_member(folder / f"{arch}.pt", arch) for folder in ingredients]
    scores = np.array([samples[i].score for i in val_idx], dtype=np.float32)
    report = {"ingredients": {str(f): correlations(predict(n, crops[val_idx], spec), scores)
                              for f, n in zip(ingredients, nets)}}
    soup = nets[0]
    soup.load_state_dict(average_states([n.state_dict() for n in nets]))
    chosen = np.random.default_rng(seed).permutation(train_idx)[:bn_crops]
    measure_batch_norm(soup, crops[np.sort(chosen)], spec)
    report["soup"] = correlations(predict(soup, crops[val_idx], spec), scores)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"arch": arch, "input_size": spec.input_size, "state_dict": soup.state_dict(),
                "soup": [str(f) for f in ingredients], "metrics": report["soup"]}, out / f"{arch}.pt")
    return report


def soup_members(ingredients: list[Path], out: Path, csv: Path, members=SHIPPED.members, bn_crops: int = BN_CROPS,
                 split_seed: int = SHIPPED.split_seed, val_fraction: float = SHIPPED.val_fraction,
                 framing: ScorerSpec = SHIPPED.spec) -> dict:
    """Every member in ``members`` averaged over ``ingredients`` into ``out`` (with ``soup.json``,
    the validation figures of each ingredient and of the soup); returns that report. The crops
    are framed as ``framing`` frames them, at the ingredients' input size."""
    first = torch.load(ingredients[0] / f"{members[0]}.pt", map_location="cpu", weights_only=True)
    spec = framing.with_(input_size=int(first["input_size"]))
    samples = read_csv(csv)
    crops, kept = load_crops(samples, spec)
    samples = [samples[i] for i in kept]
    train_idx, val_idx = split(samples, val_fraction, split_seed)
    reports = {arch: make_soup(ingredients, arch, out, samples, crops, train_idx, val_idx, spec, bn_crops)
               for arch in members}
    (out / "soup.json").write_text(json.dumps(reports, indent=1) + "\n")
    return reports


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("ingredients", type=Path, nargs="+", help="train.fit output folders, one start, other seeds")
    parser.add_argument("--csv", type=Path, required=True, help="the label CSV the members were trained on")
    parser.add_argument("--members", nargs="+", default=list(SHIPPED.members))
    parser.add_argument("--bn-crops", type=int, default=BN_CROPS, help="training crops the batch-norm statistics are measured on")
    parser.add_argument("--split-seed", type=int, default=SHIPPED.split_seed, help="the runs' --split-seed (which people validate)")
    parser.add_argument("--val-fraction", type=float, default=SHIPPED.val_fraction, help="the runs' --val-fraction")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if len(args.ingredients) < 2:
        parser.error("a soup needs at least two trained runs")
    if any(f.resolve() == args.out.resolve() for f in args.ingredients):
        parser.error(f"{args.out} is one of the runs: the soup would overwrite its checkpoints; write it elsewhere")
    missing = [f"{f}/{a}.pt" for f in args.ingredients for a in args.members if not (f / f"{a}.pt").is_file()]
    if missing:
        parser.error(f"no checkpoint: {', '.join(missing)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    reports = soup_members(args.ingredients, args.out, args.csv, args.members, args.bn_crops, args.split_seed,
                           args.val_fraction)
    print(json.dumps(reports, indent=1))


if __name__ == "__main__":
    main()
