"""Regenerate the labels and train the weights facegate ships, in one command.

    python -m train.release --shared ../shared

1. labels: ``train.labels`` on the LFW training people and the CelebA training identities
   (LFW folds 1-5 people and CelebA evaluation identities held out);
2. each member's backbone distilled from the label recognizer's embedding (``train.distill``,
   phase 0), then trained by ``train.fit`` on the labels with the schedule below, then the
   last fine-tuning stage; interrupted, the same command carries on where it stopped
   (``--train-only`` stops after training);
3. the score scale fg-utility-v2 and the default threshold fitted on the validation people
   (:func:`calibrate_scale`);
4. the ablation table measured, and ``facegate/weights`` written: one ``<arch>.pt`` and
   ``<arch>.onnx`` per member, ``spec.json``, ``metrics.json``.

The model card (``facegate/weights/MODEL_CARD.md``) reads its numbers from metrics.json.
"""

from __future__ import annotations

import argparse
import csv
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

from facegate.spec import ScorerSpec

from facegate.models import count_macs, load_member

from . import labels as label_step
from . import model_card
from .data import load_crops, read_csv, split
from .evaluate import ablation, labelled_photos, sensitivity, validation_people
from .fit import CONSISTENCY_PIXELS, NOT_FINGERPRINTED, FitConfig, fit, initial_member, parse_stages, predict, same_run
from .scale import isotonic_knots, reliability_table

#: Schedule of the shipped weights (size:data fraction:epochs per stage): one short stage from
#: the distilled backbones. The progressive schedule of the paper ("64:0.4:5,96:0.7:5,128:1:7",
#: the first fg-utility-v2 weights, from scratch) washes the distilled features out: from a
#: distilled start it ordered natural photos no better than from scratch (docs/results.md). A
#: short progressive schedule ("64:0.4:1,96:0.7:1,128:1:4") is as good and was not shipped: one
#: large photo's decision then differs at the working resolution (docs/results.md, runs/v3p).
SHIPPED_STAGES = "128:1:5"
#: Weight of the consistency term (train.fit --consistency) in phase 1 and in the last stage.
CONSISTENCY = 0.0
RESOLUTION_CONSISTENCY = 0.0
#: Fine-tuning stage with the ranking term (each degraded copy in the labels below its photo),
#: after phase 1. Off for the v2 weights: on the validation people it took the
#: share of the gap closed on degraded captures from 0.83 to 0.65 (``train.edc --validation``),
#: since it orders copies against their photo whatever the labels say.
RANK_STAGE = ""
#: Last fine-tuning stage: only the on-the-fly term (a worse copy made in the batch scores
#: below its photo), its copies leaning towards mild resolution loss and darkness, which the
#: utility labels separate least (the recognizer itself is fairly robust to them).
RESOLUTION_STAGE = "128:1:3"
RESOLUTION_MIX = "dark:2,low_resolution:4,blur:1,noise:1"
RESOLUTION_EYES = (18.0, 30.0)
#: Similarity jitter of the last stage's crops (train.fit --jitter); none in the shipped weights.
RESOLUTION_JITTER = 0.0
#: Whether that term lowers the copy only (the photo's prediction taken as given): off in the
#: shipped weights.
RESOLUTION_COPIES_ONLY = False
#: Epochs of feature distillation from the label recognizer (train.distill) before phase 1;
#: 0: phase 1 starts from scratch.
DISTILL_EPOCHS = 6
#: Weight of the teacher term (train.fit --teacher-weight) in phase 1 and the last stage.
TEACHER_WEIGHT = 0.0
#: Decay per step of the weight average kept in phase 1 and the last stage (train.fit --ema); 0: none.
EMA = 0.0
#: Phase 1 trained this many times from one start and averaged (train.soup); 1: one run.
SOUP = 1
MEMBERS = ("mobilenet_v3_small", "shufflenet_v2_x1_0")
#: Crop, views and scale of the weights this command makes (ArcFace framing at 128 px).
TRAINING_SPEC = label_step.training_spec()


def choose_threshold(scores: np.ndarray, usable: np.ndarray) -> dict:
    """The score threshold that best separates usable captures (a genuine comparison with a
    good reference succeeds at FMR 1e-3 at least half the time) from the others: the point
    of maximum Youden's J (true-accept rate minus false-accept rate)."""
    best = {"j": -1.0}
    for t in np.unique(np.round(scores, 1)):
        accept = scores >= t
        tar = accept[usable].mean() if usable.any() else 0.0
        far = accept[~usable].mean() if (~usable).any() else 0.0
        if tar - far > best["j"]:
            best = {"j": float(tar - far), "threshold": float(t), "accept_usable": float(tar),
                    "accept_unusable": float(far), "unusable_share": float(1 - usable.mean())}
    return best


def calibrate_scale(csv_path: Path, member_dir: Path, spec: ScorerSpec, val_fraction: float = 0.2,
                    seed: int = 0) -> dict:
    """The v2 scale on the validation people of the training split (never trained on): the
    knots of the isotonic map from the ensemble's raw output (the spec's views) to the observed
    share of genuine comparisons with good references that succeed at FMR 1e-3, each capture
    weighted by its number of references; the default threshold; the reliability table (on
    the same captures, so in-sample: docs/evaluation.md has it on held-out people)."""
    samples = read_csv(csv_path)
    rows = {}
    with csv_path.open() as fh:
        for row in csv.DictReader(fh):
            rows[row["path"]] = row
    val = [samples[i] for i in split(samples, val_fraction, seed)[1]]
    crops, kept = load_crops(val, spec)
    label_dir = csv_path.parent
    recorded = [rows[val[i].path.relative_to(label_dir).as_posix()] for i in kept]
    observed = np.array([float(r["match_hard"]) for r in recorded])
    weight = np.array([float(r["references"]) for r in recorded])
    raw = np.mean([predict(load_member(member_dir / f"{a}.pt", a), crops, spec, spec.views) for a in spec.members], 0)
    knots = isotonic_knots(raw, observed, weight, min_weight=max(50.0, weight.sum() / 40))
    scores = spec.with_(score_calibration=knots).to_score(raw)
    return {"knots": knots, "threshold": choose_threshold(scores, observed >= 0.5),
            "reliability": reliability_table(scores, observed, weight), "validation_captures": len(recorded)}


def summarise(history_file: Path) -> dict:
    fitted = json.loads(history_file.read_text())
    return {"best": fitted["best"], "epochs": len(fitted["history"]),
            "seconds": round(sum(h["seconds"] for h in fitted["history"]), 1)}


def add_phase(record: dict, phase: dict) -> dict:
    """A member's training record after one more phase: its epochs and time added, its best kept."""
    return {"best": phase["best"], "epochs": record["epochs"] + phase["epochs"],
            "seconds": round(record["seconds"] + phase["seconds"], 1)}


def soup_phase(args, configs: list[FitConfig], out: Path) -> dict:
    """Phase 1 as a soup: every member trained ``args.soup`` times from one start (the heads
    ``configs`` would draw, on their backbones; seeds 0..K-1 for batch order and augmentation),
    the runs' weights averaged into ``out`` (:mod:`train.soup`); returns each member's record."""
    from dataclasses import replace

    from .soup import soup_members

    folder = args.work / "soup"
    (folder / "start").mkdir(parents=True, exist_ok=True)
    runs = []
    for cfg in configs:
        start = folder / "start" / f"{cfg.arch}.pt"
        if not start.exists():
            torch.save({"arch": cfg.arch, "state_dict": initial_member(cfg).state_dict()}, start)
        runs += [replace(cfg, seed=k, init=start, pretrained_backbone=None, out=folder / f"seed{k}")
                 for k in range(args.soup)]
    run_fits(args, runs)
    report = soup_members([folder / f"seed{k}" for k in range(args.soup)], out, configs[0].csv,
                          [c.arch for c in configs], split_seed=configs[0].split_seed,
                          val_fraction=configs[0].val_fraction)
    records = {}
    for cfg in configs:
        seeds = [summarise(folder / f"seed{k}" / f"{cfg.arch}.history.json") for k in range(args.soup)]
        records[cfg.arch] = {"best": {**report[cfg.arch]["soup"], "stage": "soup", "epoch": args.soup},
                             "epochs": sum(r["epochs"] for r in seeds),
                             "seconds": round(sum(r["seconds"] for r in seeds), 1)}
    return records


def fine_tune(args, csv_path: Path, out: Path, stage: str, init_dir: Path, lr: float, **terms) -> dict:
    """Fine-tune every member from ``init_dir`` with the ranking terms (kept checkpoint: SRCC +
    order accuracy); returns each member's record of this phase."""
    run_fits(args, [FitConfig(csv=csv_path, arch=a, out=out, stages=parse_stages(stage), lr_head=lr,
                              lr_backbone=lr, init=init_dir / f"{a}.pt",
                              select="srcc+order", margin=TRAINING_SPEC.margin, **terms) for a in MEMBERS])
    return {a: summarise(out / f"{a}.history.json") for a in MEMBERS}


def write_weights(member_dir: Path, out: Path, spec: ScorerSpec) -> ScorerSpec:
    """A weights folder the gate loads: ``spec.members``' checkpoints from ``member_dir``, the
    spec, and each member's ONNX graph (what the default backend runs; their sha256 go into the
    spec, which is returned as written)."""
    from facegate.export import export_member_graphs

    out.mkdir(parents=True, exist_ok=True)
    for arch in spec.members:
        ckpt = torch.load(member_dir / f"{arch}.pt", map_location="cpu", weights_only=True)
        torch.save({"arch": arch, "input_size": spec.input_size, "state_dict": ckpt["state_dict"],
                    "stage": ckpt.get("stage"), "epoch": ckpt.get("epoch")}, out / f"{arch}.pt")
    spec.save(out / "spec.json")
    export_member_graphs(out, update_spec=True)
    return ScorerSpec.load(out / "spec.json")


def backbone_file(folder: Path | None, arch: str) -> Path | None:
    """``folder/<arch>.backbone.pt``, or None without a folder; a folder without it is an error
    before any training starts, not a member silently trained from scratch."""
    if folder is None:
        return None
    path = folder / f"{arch}.backbone.pt"
    if not path.is_file():
        raise SystemExit(f"{path}: no backbone for {arch} (make one with python -m train.distill --arch {arch})")
    return path


def teacher_term(args) -> dict:
    """train.fit's teacher settings: the distilled backbones' folder (targets and projections)."""
    if not args.teacher_weight:
        return {}
    if args.pretrained_backbones is None:
        raise SystemExit("--teacher-weight needs distilled backbones (phase 0, or --pretrained-backbones DIR from "
                         "train.distill)")
    return {"teacher": args.pretrained_backbones, "teacher_weight": args.teacher_weight}


def distill_record(folder: Path | None) -> dict:
    """What train.distill recorded for each member's backbone in ``folder`` (settings, epochs,
    seconds, last validation cosine), for the model card; empty for other backbones."""
    record = {}
    for arch in MEMBERS:
        path = folder / f"{arch}.distill.json" if folder else None
        if path and path.exists():
            done = json.loads(path.read_text())
            history = done["history"]
            record[arch] = {"teacher": done["settings"]["recognizer"], "epochs": len(history),
                            "size": done["settings"]["size"], "lr": done["settings"]["lr"],
                            "seconds": round(sum(h["seconds"] for h in history), 1),
                            "val_cosine": history[-1]["val_cosine"] if history else None}
    return record


def finished(cfg: FitConfig) -> bool:
    """Whether ``cfg``'s member has been trained to the end with these settings (its history
    records them); an unfinished one carries on from its last epoch when fitted again."""
    path = cfg.out / f"{cfg.arch}.history.json"
    if not path.exists():
        return False
    done = json.loads(path.read_text())
    # histories written before they carried a fingerprint: the same from their config
    recorded = done.get("fingerprint") or {k: v for k, v in done["config"].items() if k not in NOT_FINGERPRINTED}
    return same_run(recorded, cfg)


def run_fits(args, configs: list[FitConfig]) -> None:
    """Fit members, in parallel processes when --jobs > 1 (each with its share of the cores).
    Members already trained with the same settings are not refitted (so the command resumes
    where it was interrupted); with --skip-training, no member whose history exists is."""
    todo = [c for c in configs if not finished(c)
            and not (args.skip_training and (c.out / f"{c.arch}.history.json").exists())]
    if not todo:
        return
    in_parallel(fit, todo, args.jobs)


def in_parallel(run, configs: list, jobs: int) -> None:
    """``run`` on each config, in up to ``jobs`` spawned processes that share the cores out
    (each config's ``threads``); in this process when one job is left."""
    jobs = max(1, min(jobs, len(configs)))
    for cfg in configs:
        cfg.threads = max(1, (os.cpu_count() or 1) // jobs)
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(run, configs))
    else:
        for cfg in configs:
            run(cfg)


def run_distills(args, csv_path: Path, out: Path) -> Path:
    """Phase 0: each member's backbone distilled from the label recognizer (``train.distill``),
    in parallel processes after the teacher's targets are made once; a member distilled to the
    end with these settings is not redone. Returns the folder of ``<arch>.backbone.pt``."""
    from .distill import DistillConfig, distill, finished as distilled, prepare_targets

    size = max(s.size for s in parse_stages(args.stages))
    todo = [c for c in (DistillConfig(csv=csv_path, recognizer=args.recognizer, arch=a, out=out, size=size,
                                      margin=TRAINING_SPEC.margin, epochs=args.distill_epochs) for a in MEMBERS)
            if not distilled(c)]
    if todo:
        prepare_targets(todo[0])
        in_parallel(distill, todo, args.jobs)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=Path("runs/release"))
    parser.add_argument("--out", type=Path, default=Path("facegate/weights"))
    parser.add_argument("--stages", default=SHIPPED_STAGES)
    parser.add_argument("--jitter", type=float, default=0.0,
                        help="similarity jitter of phase 1's crops (train.fit --jitter; 0 in the shipped recipe)")
    parser.add_argument("--consistency", type=float, default=CONSISTENCY,
                        help=f"phase 1's consistency term: a crop moved by 1-{CONSISTENCY_PIXELS} px scores the same "
                             "(train.fit --consistency)")
    parser.add_argument("--lr-backbone", type=float, default=5e-4,
                        help="backbone learning rate (default 5e-4, the head's: the backbones are trained on, "
                             "whether distilled or from scratch, not just fine-tuned)")
    parser.add_argument("--pretrained-backbones", type=Path, default=None, metavar="DIR",
                        help="phase 1 starts each member's backbone from DIR/<arch>.backbone.pt (made by train.distill, "
                             "or torchvision ImageNet weights saved under that name) instead of phase 0")
    parser.add_argument("--distill-epochs", type=int, default=DISTILL_EPOCHS,
                        help="phase 0: epochs of distilling each backbone from --recognizer's embedding "
                             "(train.distill) before phase 1; 0: from scratch; ignored with --pretrained-backbones")
    parser.add_argument("--recognizer", type=Path, default=None,
                        help="teacher of phase 0 (default: SHARED/models/mobilefacenet_casia.ckpt, the label recognizer)")
    parser.add_argument("--people", type=Path, default=None, metavar="DIR",
                        help="train on your own photos: one sub-folder per person (two or more photos each), "
                             "labelled by --recognizer, instead of LFW's and CelebA's training people; needs --terms")
    parser.add_argument("--terms", default=None,
                        help="the terms of use of weights trained on --people, as your photos and recognizer allow "
                             "(written into spec.json and the model card; facegate info prints them)")
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--accessory-copies", type=int, default=0,
                        help="copies per photo wearing sunglasses, a cap, hair or a hand, labelled after the others")
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
    parser.add_argument("--resolution-weight", type=float, default=0.5,
                        help="weight of the on-the-fly term in the resolution stage")
    parser.add_argument("--resolution-rank-weight", type=float, default=0.0,
                        help="weight of the labels' ranking term in the resolution stage")
    parser.add_argument("--resolution-margin", type=float, default=0.01,
                        help="margin of both ranking terms in the resolution stage")
    parser.add_argument("--resolution-jitter", type=float, default=RESOLUTION_JITTER,
                        help="similarity jitter of the resolution stage's crops (see train.fit --jitter)")
    parser.add_argument("--teacher-weight", type=float, default=TEACHER_WEIGHT,
                        help="in phase 1 and the last stage, keep the distilled features near the recognizer's embedding "
                             "of each crop at this weight (train.fit --teacher-weight; needs distilled backbones)")
    parser.add_argument("--ema", type=float, default=EMA, metavar="DECAY",
                        help="in phase 1 and the last stage keep a moving average of the weights (train.fit --ema); "
                             "each member's last-step weights are kept beside it as <arch>.raw.pt")
    parser.add_argument("--resolution-consistency", type=float, default=RESOLUTION_CONSISTENCY,
                        help="the consistency term in the resolution stage (train.fit --consistency)")
    parser.add_argument("--resolution-copies-only", action=argparse.BooleanOptionalAction,
                        default=RESOLUTION_COPIES_ONLY,
                        help="the on-the-fly term lowers the copy only, never lifts its photo (train.fit --monotone-copies-only)")
    parser.add_argument("--soup", type=int, default=SOUP, metavar="K",
                        help="train phase 1 K times from one start (seeds 0..K-1) and average the weights "
                             "(train.soup): one member's cost at inference, less of one seed's luck; 1: one run")
    parser.add_argument("--from-weights", type=Path, default=None,
                        help="skip phases 1-2: start the resolution stage from these members (e.g. facegate/weights) "
                             "and carry over their metrics.json training record")
    parser.add_argument("--jobs", type=int, default=2, help="members trained at once (default 2)")
    parser.add_argument("--skip-training", action="store_true", help="reuse trained members in --work")
    parser.add_argument("--train-only", action="store_true",
                        help="stop once the members are trained (the same command without it finishes the release)")
    args = parser.parse_args(argv)
    if args.soup < 1:
        parser.error(f"--soup {args.soup}: the number of runs averaged is at least 1")
    if args.people is not None and not (args.recognizer and args.terms):
        parser.error("--people needs --recognizer (a MobileFaceNet checkpoint you may use) and --terms (what the "
                     "photos and recognizer allow the weights to be used for)")
    if args.terms is not None and args.people is None:
        parser.error("--terms is for weights trained on --people; the shipped data's terms are train.labels.TERMS")
    label_options = {"people_dir": args.people, "checkpoint": args.recognizer}
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    label_dir = args.work / "labels"
    csv_path = label_dir / "labels.csv"
    if not csv_path.exists():
        label_step.build(args.shared, label_dir, variants=args.variants, seed=0, spec=TRAINING_SPEC, **label_options)
    if args.accessory_copies and "accessory" not in label_step.degradations(csv_path):
        label_step.build(args.shared, label_dir, variants=args.accessory_copies, seed=7, spec=TRAINING_SPEC,
                         only="accessory", **label_options)
    if args.from_weights:
        # phases 1-2 were run before (by this command); their record travels with the weights
        prior = json.loads((args.from_weights / "metrics.json").read_text())
        fits = {a: prior["training"][a] for a in MEMBERS}
        done = {k: prior.get(k) for k in ("stages", "rank_stage", "rank_weight", "rank_margin",
                                           "monotone_weight", "lr_backbone", "jitter", "consistency", "teacher_weight", "ema",
                                           "soup", "pretrained_backbones", "distilled")}
        commands = prior.get("commands", [prior["command"]])
        member_dir = args.from_weights
    else:
        # Phase 1: the paper's recipe (members, heads, MSECorrLoss) from the phase-0 backbones
        # (or from scratch with --distill-epochs 0).
        base_dir = args.work / "members"
        if args.pretrained_backbones is None and args.distill_epochs > 0:
            args.recognizer = args.recognizer or args.shared / "models" / "mobilefacenet_casia.ckpt"
            args.pretrained_backbones = run_distills(args, csv_path, args.work / "distilled")
        backbones = {a: backbone_file(args.pretrained_backbones, a) for a in MEMBERS}
        configs = [FitConfig(csv=csv_path, arch=a, out=base_dir, stages=parse_stages(args.stages),
                             lr_backbone=args.lr_backbone, margin=TRAINING_SPEC.margin, jitter=args.jitter,
                             consistency=args.consistency, pretrained_backbone=backbones[a],
                             ema=args.ema, **teacher_term(args))
                   for a in MEMBERS]
        if args.soup > 1:
            fits = soup_phase(args, configs, base_dir)
        else:
            run_fits(args, configs)
            fits = {a: summarise(base_dir / f"{a}.history.json") for a in MEMBERS}
        member_dir = base_dir
        done = {"stages": args.stages, "rank_stage": args.rank_stage, "rank_weight": args.rank_weight,
                "rank_margin": args.rank_margin, "monotone_weight": args.monotone_weight,
                "lr_backbone": args.lr_backbone, "jitter": args.jitter, "consistency": args.consistency,
                "teacher_weight": args.teacher_weight, "ema": args.ema, "soup": args.soup,
                "pretrained_backbones": {a: str(f) for a, f in backbones.items() if f is not None},
                "distilled": distill_record(args.pretrained_backbones)}
        commands = []
        # Phase 2: fine-tune at full size with the ranking term (each degraded copy below its
        # original photo), since utility labels alone barely separate mild degradations.
        if args.rank_stage:
            member_dir = args.work / "members_rank"
            phase = fine_tune(args, csv_path, member_dir, args.rank_stage, base_dir, 1e-4, rank_weight=args.rank_weight,
                              rank_margin=args.rank_margin, monotone_weight=args.monotone_weight)
            fits = {a: add_phase(fits[a], phase[a]) for a in MEMBERS}
    # Phase 3: the on-the-fly copies, leaning to mild resolution loss.
    if args.resolution_stage:
        res_dir = args.work / "members_resolution"
        phase = fine_tune(args, csv_path, res_dir, args.resolution_stage, member_dir, 5e-5,
                          rank_weight=args.resolution_rank_weight,
                          rank_margin=args.resolution_margin, monotone_weight=args.resolution_weight,
                          monotone_mix=args.resolution_mix, monotone_eyes=tuple(args.resolution_eyes),
                          jitter=args.resolution_jitter, monotone_copies_only=args.resolution_copies_only,
                          consistency=args.resolution_consistency, ema=args.ema, **teacher_term(args))
        fits = {a: add_phase(fits[a], phase[a]) for a in MEMBERS}
        member_dir = res_dir
    commands.append(" ".join(["python -m train.release", *(argv if argv is not None else sys.argv[1:])]))
    if args.train_only:
        print(f"members trained: {member_dir}")
        return

    spec = TRAINING_SPEC.with_(name=f"facegate-ensemble.{TRAINING_SPEC.score_scale}", members=MEMBERS,
                               terms=args.terms or TRAINING_SPEC.terms,
                               input_size=max(s.size for s in parse_stages(done["stages"])))
    scale = calibrate_scale(csv_path, member_dir, spec)
    spec = spec.with_(
        score_calibration=scale["knots"],
        default_threshold=scale["threshold"]["threshold"],
        threshold_rule=(
            "maximum Youden J on the validation captures (identity-disjoint), separating captures whose genuine "
            "comparisons with good references succeed at FMR 1e-3 at least half the time from the others"
        ),
    )
    nets = {a: load_member(member_dir / f"{a}.pt", a) for a in MEMBERS}
    spec = write_weights(member_dir, args.out, spec)
    table = ablation(csv_path, args.out)
    n_params = {a: sum(p.numel() for p in nets[a].parameters()) for a in MEMBERS}
    macs = {a: count_macs(nets[a], spec.input_size) for a in MEMBERS}
    metrics = {
        "ablation": table,
        "threshold": {**scale["threshold"], **json.loads((label_dir / "threshold.json").read_text())},
        "reliability_validation": scale["reliability"],
        "training": fits,
        "parameters": n_params,
        "macs": macs,
        "variants": args.variants,
        "accessory_copies": args.accessory_copies,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "captures": len(read_csv(csv_path)),
        "validation_captures": scale["validation_captures"],
        **done,
        "resolution_stage": args.resolution_stage,
        "resolution_mix": args.resolution_mix,
        "resolution_eyes": list(args.resolution_eyes),
        "resolution_weight": args.resolution_weight,
        "resolution_rank_weight": args.resolution_rank_weight,
        "resolution_margin": args.resolution_margin,
        "resolution_jitter": args.resolution_jitter,
        "resolution_copies_only": args.resolution_copies_only,
        "resolution_consistency": args.resolution_consistency,
        "command": "python -m train.release --shared ../shared",
        "commands": commands,
        "seconds_total": round(time.time() - t0, 1),
    }
    if args.people is None:
        metrics["sensitivity"] = sensitivity(args.shared, 100, weights=args.out)
    else:  # the user's own people: measured on the validation side of their split only
        metrics["people"] = str(args.people)
    # the same on validation people: training choices are made on this one, not on folds 1-5
    metrics["sensitivity_validation"] = sensitivity(args.shared, 100, weights=args.out,
                                                    people=validation_people(csv_path),
                                                    photos_of=None if args.people is None else labelled_photos(csv_path))
    metrics["seconds_total"] = round(time.time() - t0, 1)
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    print(json.dumps(metrics, indent=1))
    print(f"model card: {model_card.write(args.out)}")


if __name__ == "__main__":
    main()
