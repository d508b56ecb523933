"""Regenerate the labels and train the weights facegate ships, in one command.

    python -m train.release --shared ../shared

1. labels: ``train.labels`` on the LFW training people (folds 1-5 people held out);
2. each member trained by ``train.fit`` with the progressive schedule below;
3. the default threshold chosen on the validation split (see :func:`choose_threshold`);
4. the ablation table measured, and ``facegate/weights`` written: one ``<arch>.pt`` per
   member, ``spec.json``, ``metrics.json``.

The model card (``facegate/weights/MODEL_CARD.md``) reads its numbers from metrics.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from facegate.images import load_rgb
from facegate.recognition import MobileFaceNetRecognizer
from facegate.spec import ScorerSpec

from facegate.models import count_macs, load_member

from . import labels as label_step
from . import model_card
from .data import load_crops, read_csv, split
from .evaluate import ablation, sensitivity, validation_people
from .fit import FitConfig, fit, parse_stages, predict

#: Progressive schedule of the shipped weights: size:data fraction:epochs per stage.
SHIPPED_STAGES = "64:0.4:5,96:0.7:5,128:1:7"
#: Fine-tuning stage with the ranking term, after the progressive schedule.
RANK_STAGE = "128:1:3"
#: Last fine-tuning stage: the on-the-fly worse copies lean towards mild resolution loss,
#: which the earlier stages separated least (a face downscaled to 24 px between the eyes,
#: against the crop's own 32, is only slightly softer).
RESOLUTION_STAGE = "128:1:3"
RESOLUTION_MIX = "dark:2,low_resolution:4,blur:1,noise:1"
RESOLUTION_EYES = (18.0, 30.0)
MEMBERS = ("mobilenet_v3_small", "shufflenet_v2_x1_0")


def fmr_threshold(label_dir: Path, shared: Path, fmr: float = 1e-3) -> float:
    """Cosine threshold of the recognizer at the given false-match rate, measured on every
    pair of clean training photos of different people."""
    found = json.loads((label_dir / "detections.json").read_text())
    paths = sorted(p for p, lm in found.items() if lm is not None)
    recognizer = MobileFaceNetRecognizer(str(shared / "models" / "mobilefacenet_casia.ckpt"))
    crops = np.stack([recognizer.align(load_rgb(p), np.array(found[p])) for p in paths])
    emb = recognizer.embed_aligned(crops)
    ident = np.array([Path(p).parent.name for p in paths])
    sims = emb @ emb.T
    different = ident[:, None] != ident[None, :]
    upper = np.triu(np.ones_like(different), 1).astype(bool)
    impostor = sims[different & upper]
    return float(np.quantile(impostor, 1.0 - fmr))


def choose_threshold(scores: np.ndarray, genuine: np.ndarray, cos_threshold: float) -> dict:
    """The score threshold that best separates captures the recognizer would match at
    FMR 1e-3 (mean genuine cosine at or above ``cos_threshold``) from those it would miss:
    the point of maximum Youden's J (true-accept rate minus false-accept rate)."""
    usable = genuine >= cos_threshold
    best = {"j": -1.0}
    for t in np.unique(np.round(scores, 1)):
        accept = scores >= t
        tar = accept[usable].mean() if usable.any() else 0.0
        far = accept[~usable].mean() if (~usable).any() else 0.0
        if tar - far > best["j"]:
            best = {"j": float(tar - far), "threshold": float(t), "accept_usable": float(tar),
                    "accept_unusable": float(far), "unusable_share": float(1 - usable.mean())}
    return best


def summarise(history_file: Path) -> dict:
    fitted = json.loads(history_file.read_text())
    return {"best": fitted["best"], "epochs": len(fitted["history"]),
            "seconds": round(sum(h["seconds"] for h in fitted["history"]), 1)}


def add_phase(record: dict, phase: dict) -> dict:
    """A member's training record after one more phase: its epochs and time added, its best kept."""
    return {"best": phase["best"], "epochs": record["epochs"] + phase["epochs"],
            "seconds": round(record["seconds"] + phase["seconds"], 1)}


def fine_tune(args, csv_path: Path, out: Path, stage: str, init_dir: Path, lr: float, **terms) -> dict:
    """Fine-tune every member from ``init_dir`` with the ranking terms (kept checkpoint: SRCC +
    order accuracy); returns each member's record of this phase."""
    run_fits(args, [FitConfig(csv=csv_path, arch=a, out=out, stages=parse_stages(stage), lr_head=lr,
                              lr_backbone=lr, init=init_dir / f"{a}.pt", rank_weight=args.rank_weight,
                              select="srcc+order", **terms) for a in MEMBERS])
    return {a: summarise(out / f"{a}.history.json") for a in MEMBERS}


def run_fits(args, configs: list[FitConfig]) -> None:
    """Fit members, in parallel processes when --jobs > 1 (each with its share of the cores);
    with --skip-training, members whose history already exists are not refitted."""
    todo = [c for c in configs if not (args.skip_training and (c.out / f"{c.arch}.history.json").exists())]
    if not todo:
        return
    jobs = max(1, min(args.jobs, len(todo)))
    for cfg in todo:
        cfg.threads = max(1, (os.cpu_count() or 1) // jobs)
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(fit, todo))
    else:
        for cfg in todo:
            fit(cfg)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=Path("runs/release"))
    parser.add_argument("--out", type=Path, default=Path("facegate/weights"))
    parser.add_argument("--stages", default=SHIPPED_STAGES)
    parser.add_argument("--lr-backbone", type=float, default=5e-4,
                        help="backbone learning rate (default 5e-4: trained from scratch, not fine-tuned)")
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rank-stage", default=RANK_STAGE,
                        help="fine-tuning stage with the ranking term (size:fraction:epochs; empty to skip)")
    parser.add_argument("--rank-weight", type=float, default=1.0)
    parser.add_argument("--rank-margin", type=float, default=0.02)
    parser.add_argument("--monotone-weight", type=float, default=1.0,
                        help="weight of the on-the-fly term: a worse copy scores below its photo")
    parser.add_argument("--resolution-stage", default=RESOLUTION_STAGE,
                        help="last fine-tuning stage, worse copies weighted to mild resolution loss (empty to skip)")
    parser.add_argument("--resolution-mix", default=RESOLUTION_MIX)
    parser.add_argument("--resolution-eyes", type=float, nargs=2, default=RESOLUTION_EYES, metavar=("MIN", "MAX"))
    parser.add_argument("--resolution-weight", type=float, default=4.0,
                        help="weight of the on-the-fly term in the resolution stage")
    parser.add_argument("--resolution-margin", type=float, default=0.05,
                        help="margin of both ranking terms in the resolution stage")
    parser.add_argument("--from-weights", type=Path, default=None,
                        help="skip phases 1-2: start the resolution stage from these members (e.g. facegate/weights) "
                             "and carry over their metrics.json training record")
    parser.add_argument("--jobs", type=int, default=2, help="members trained at once (default 2)")
    parser.add_argument("--skip-training", action="store_true", help="reuse trained members in --work")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    label_dir = args.work / "labels"
    csv_path = label_dir / "labels.csv"
    if not csv_path.exists():
        label_step.build(args.shared, label_dir, variants=args.variants, seed=0, limit_people=None)
    if args.from_weights:
        # phases 1-2 were run before (by this command); their record travels with the weights
        prior = json.loads((args.from_weights / "metrics.json").read_text())
        fits = {a: prior["training"][a] for a in MEMBERS}
        done = {k: prior.get(k) for k in ("stages", "rank_stage", "rank_weight", "rank_margin",
                                           "monotone_weight", "lr_backbone")}
        commands = prior.get("commands", [prior["command"]])
        member_dir = args.from_weights
    else:
        # Phase 1: the paper's recipe with the progressive schedule, from scratch.
        base_dir = args.work / "members"
        run_fits(args, [FitConfig(csv=csv_path, arch=a, out=base_dir, stages=parse_stages(args.stages),
                                  lr_backbone=args.lr_backbone) for a in MEMBERS])
        fits = {a: summarise(base_dir / f"{a}.history.json") for a in MEMBERS}
        member_dir = base_dir
        done = {"stages": args.stages, "rank_stage": args.rank_stage, "rank_weight": args.rank_weight,
                "rank_margin": args.rank_margin, "monotone_weight": args.monotone_weight,
                "lr_backbone": args.lr_backbone}
        commands = []
        # Phase 2: fine-tune at full size with the ranking term (each degraded copy below its
        # original photo), since utility labels alone barely separate mild degradations.
        if args.rank_stage:
            member_dir = args.work / "members_rank"
            phase = fine_tune(args, csv_path, member_dir, args.rank_stage, base_dir, 1e-4,
                              rank_margin=args.rank_margin, monotone_weight=args.monotone_weight)
            fits = {a: add_phase(fits[a], phase[a]) for a in MEMBERS}
    # Phase 3: the same terms, the on-the-fly copies leaning to mild resolution loss.
    if args.resolution_stage:
        res_dir = args.work / "members_resolution"
        phase = fine_tune(args, csv_path, res_dir, args.resolution_stage, member_dir, 5e-5,
                          rank_margin=args.resolution_margin, monotone_weight=args.resolution_weight,
                          monotone_mix=args.resolution_mix, monotone_eyes=tuple(args.resolution_eyes))
        fits = {a: add_phase(fits[a], phase[a]) for a in MEMBERS}
        member_dir = res_dir
    commands.append(" ".join(["python -m train.release", *(argv if argv is not None else sys.argv[1:])]))

    spec = ScorerSpec(name="facegate-ensemble.lfw-utility-v1", members=MEMBERS,
                      input_size=max(s.size for s in parse_stages(done["stages"])))
    samples = read_csv(csv_path)
    _, val_idx = split(samples, 0.2, 0)
    val = [samples[i] for i in val_idx]
    crops, kept = load_crops(val, spec)
    import csv as csv_module

    genuine_by_path = {}
    with csv_path.open() as fh:
        for row in csv_module.DictReader(fh):
            genuine_by_path[row["path"]] = float(row["genuine"])
    genuine = np.array([genuine_by_path[val[i].path.relative_to(label_dir).as_posix()] for i in kept])
    nets = {a: load_member(member_dir / f"{a}.pt", a) for a in MEMBERS}
    ens = spec.to_score(np.mean([predict(nets[a], crops, spec, "full") for a in MEMBERS], 0))
    cos_t = fmr_threshold(label_dir, args.shared)
    choice = choose_threshold(ens, genuine, cos_t)
    spec = spec.with_(
        default_threshold=choice["threshold"],
        threshold_rule=(
            "maximum Youden J on the validation captures (identity-disjoint), separating captures whose "
            f"mean genuine cosine reaches the recognizer's FMR=1e-3 threshold ({cos_t:.4f}) from those that do not"
        ),
    )
    args.out.mkdir(parents=True, exist_ok=True)
    for arch in MEMBERS:
        ckpt = torch.load(member_dir / f"{arch}.pt", map_location="cpu", weights_only=True)
        torch.save({"arch": arch, "input_size": spec.input_size, "state_dict": ckpt["state_dict"],
                    "stage": ckpt.get("stage"), "epoch": ckpt.get("epoch")}, args.out / f"{arch}.pt")
    spec.save(args.out / "spec.json")
    # what the default (onnx) backend runs; records each member's sha256 in spec.json
    from facegate.export import export_member_graphs

    export_member_graphs(args.out, update_spec=True)
    spec = ScorerSpec.load(args.out / "spec.json")
    table = ablation(csv_path, args.out)
    n_params = {a: sum(p.numel() for p in nets[a].parameters()) for a in MEMBERS}
    macs = {a: count_macs(nets[a], spec.input_size) for a in MEMBERS}
    metrics = {
        "ablation": table,
        "threshold": {**choice, "fmr_1e-3_cosine": cos_t},
        "training": fits,
        "parameters": n_params,
        "macs": macs,
        "variants": args.variants,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "captures": len(samples),
        "validation_captures": len(val),
        **done,
        "resolution_stage": args.resolution_stage,
        "resolution_mix": args.resolution_mix,
        "resolution_eyes": list(args.resolution_eyes),
        "resolution_weight": args.resolution_weight,
        "resolution_margin": args.resolution_margin,
        "command": "python -m train.release --shared ../shared",
        "commands": commands,
        "seconds_total": round(time.time() - t0, 1),
    }
    metrics["sensitivity"] = sensitivity(args.shared, 100, weights=args.out)
    # the same on validation people: training choices are made on this one, not on folds 1-5
    metrics["sensitivity_validation"] = sensitivity(args.shared, 100, weights=args.out,
                                                    people=validation_people(csv_path))
    metrics["seconds_total"] = round(time.time() - t0, 1)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(metrics, indent=1))
    print(f"model card: {model_card.write(args.out)}")


if __name__ == "__main__":
    main()
