"""Regenerate the labels and train the weights facegate ships, in one command.

    python -m train.release --shared ../shared

It runs a recipe (:data:`train.recipe.SHIPPED` unless ``--recipe FILE``, changed by
``--set NAME=VALUE``; ``--help`` lists every setting with its value):

1. labels: ``train.labels`` on the LFW training people and the CelebA training identities
   (LFW folds 1-5 people and CelebA evaluation identities held out), or on ``--people``;
2. phase 0: each member's backbone distilled from the label recognizer (``train.distill``),
   unless ``--pretrained-backbones DIR`` gives them;
3. the recipe's phases in order, every member in parallel processes (``train.fit``), each
   phase from the last one's kept weights; interrupted, the same command carries on where it
   stopped (``--train-only`` stops after training);
4. the score scale and the default threshold fitted on the validation people;
5. ``--out`` written: one ``<arch>.pt`` and ``<arch>.onnx`` per member, ``spec.json``,
   ``metrics.json`` (the recipe, the measurements) and the model card rendered from them.
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
from dataclasses import dataclass, replace
from pathlib import Path

from . import model_card
from .recipe import SHIPPED, Phase, Recipe, setting_help

#: Where each step writes inside ``--work``.
LABELS, IMAGENET, DISTILLED, PHASES = "labels", "imagenet", "distilled", "phases"


@dataclass
class Release:
    """One run of a recipe: where it reads and writes, and the machine it may use."""

    recipe: Recipe
    shared: Path
    work: Path
    out: Path
    people: Path | None = None
    recognizer: Path | None = None
    terms: str | None = None
    pretrained_backbones: Path | None = None
    jobs: int = 2
    skip_training: bool = False

    @property
    def csv(self) -> Path:
        return self.work / LABELS / "labels.csv"

    @property
    def teacher_checkpoint(self) -> Path:
        return self.recognizer or self.shared / "models" / "mobilefacenet_casia.ckpt"

    # -- steps -------------------------------------------------------------------------
    def make_labels(self) -> Path:
        """Step 1, skipped when the labels exist (accessory and greyscale copies added when asked for)."""
        from . import labels

        options = {"people_dir": self.people, "checkpoint": self.recognizer, "spec": self.recipe.weights_spec()}
        if not self.csv.exists():
            labels.build(self.shared, self.csv.parent, variants=self.recipe.labels.variants, seed=0, **options)
        seeds = {"accessory": 7, "greyscale": 11}
        for kind, copies in self.recipe.labels.added_copies.items():
            if kind not in labels.degradations(self.csv):
                labels.build(self.shared, self.csv.parent, variants=copies, seed=seeds[kind], only=kind, **options)
        return self.csv

    def backbones(self) -> dict[str, Path | None]:
        """Step 2: each member's starting backbone (None: from scratch)."""
        if self.pretrained_backbones is not None:
            return {a: backbone_file(self.pretrained_backbones, a) for a in self.recipe.members}
        starts = self.imagenet_starts()
        if self.recipe.distillation.epochs > 0:
            folder = self.distill(starts)
            return {a: backbone_file(folder, a) for a in self.recipe.members}
        return {a: starts.get(a) for a in self.recipe.members}

    def imagenet_starts(self) -> dict[str, Path]:
        """The members that start from ImageNet weights (``distillation.imagenet``): the
        TFLite model's MobileNetV3-Small, batch norms refitted on the labels' training crops
        (``train.imagenet``), made once into ``--work``."""
        if not self.recipe.distillation.imagenet or "mobilenet_v3_small" not in self.recipe.members:
            return {}
        path = self.work / IMAGENET / "mobilenet_v3_small.backbone.pt"
        if not path.exists():
            from .imagenet import write_start

            write_start(self.shared, self.csv, self.recipe.weights_spec(), path, self.recipe.val_fraction,
                        self.recipe.split_seed)
        return {"mobilenet_v3_small": path}

    def distill(self, starts: dict[str, Path]) -> Path:
        """Phase 0, in parallel processes after the teacher's targets are made once; a member
        distilled to the end with these settings is not redone."""
        from .distill import DistillConfig, distill, finished as distilled, prepare_targets

        d, out = self.recipe.distillation, self.work / DISTILLED
        configs = [DistillConfig(csv=self.csv, recognizer=self.teacher_checkpoint, arch=a, out=out,
                                 size=self.recipe.input_size, margin=self.recipe.spec.margin, epochs=d.epochs,
                                 batch_size=d.batch_size, lr=d.lr, weight_decay=d.weight_decay,
                                 val_fraction=self.recipe.val_fraction, seed=self.recipe.seed, start=starts.get(a))
                   for a in self.recipe.members]
        todo = [c for c in configs if not distilled(c)]
        if todo:
            prepare_targets(todo[0])
            in_parallel(distill, todo, self.jobs)
        return out

    def teacher_folder(self) -> Path:
        folder = self.pretrained_backbones or self.work / DISTILLED
        if not (folder / "targets.npz").exists():
            raise SystemExit("the teacher term needs distilled backbones (phase 0, or --pretrained-backbones DIR "
                             "from train.distill)")
        return folder

    def fit_configs(self, phase: Phase, start: dict[str, dict]) -> list:
        """Every member's :class:`train.fit.FitConfig` for ``phase`` from ``start`` (per member:
        ``pretrained_backbone`` or ``init``)."""
        from .fit import FitConfig

        r = self.recipe
        teacher = self.teacher_folder() if phase.terms.teacher > 0 or phase.terms.pair > 0 else None
        return [FitConfig(csv=self.csv, arch=a, out=self.work / PHASES / phase.name, phase=phase,
                          margin=r.spec.margin, val_fraction=r.val_fraction, seed=r.seed, split_seed=r.split_seed,
                          teacher=teacher, **start[a]) for a in r.members]

    def run_phase(self, phase: Phase, start: dict[str, dict]) -> tuple[Path, dict]:
        """One phase of every member; returns its folder and each member's record."""
        configs = self.fit_configs(phase, start)
        if phase.soup > 1:
            return configs[0].out, soup_phase(self, configs)
        run_fits(self, configs)
        return configs[0].out, {c.arch: summarise(c.out / f"{c.arch}.history.json") for c in configs}

    def train(self, from_weights: Path | None = None) -> tuple[Path, dict, dict]:
        """Steps 2-3: the members' folder, each member's record (per phase and in all), and
        the record of how the backbones started."""
        phases = list(self.recipe.phases)
        if from_weights is not None:  # the earlier phases were run before; their record travels with the weights
            prior = json.loads((from_weights / "metrics.json").read_text())
            records = {a: prior["training"][a] for a in self.recipe.members}
            start = {a: {"init": from_weights / f"{a}.pt"} for a in self.recipe.members}
            started = {k: prior.get(k) for k in ("pretrained_backbones", "distilled", "imagenet_start")}
            phases, folder = phases[-1:], from_weights
        else:
            backbones = self.backbones()
            start = {a: {"pretrained_backbone": f} for a, f in backbones.items()}
            records = {a: {"epochs": 0, "seconds": 0.0, "phases": {}} for a in self.recipe.members}
            started = {"pretrained_backbones": {a: str(f) for a, f in backbones.items() if f is not None},
                       "distilled": distill_record(next((f.parent for f in backbones.values() if f), None),
                                                   self.recipe.members),
                       "imagenet_start": imagenet_record({} if self.pretrained_backbones else self.imagenet_starts())}
        for phase in phases:
            folder, done = self.run_phase(phase, start)
            records = {a: add_phase(records[a], phase.name, done[a]) for a in self.recipe.members}
            start = {a: {"init": folder / f"{a}.pt"} for a in self.recipe.members}
        return folder, records, started

    def package(self, member_dir: Path, records: dict, started: dict, commands: list[str], t0: float) -> dict:
        """Steps 4-5: scale, weights, measurements, metrics.json, the model card."""
        import torch

        from facegate.models import count_macs, load_member

        from .evaluate import ablation, labelled_photos, sensitivity, validation_people
        from .weights import calibrate_scale, calibrated, write_weights

        r = self.recipe
        spec = r.weights_spec(self.terms)
        scale = calibrate_scale(self.csv, member_dir, spec, r.val_fraction, r.split_seed)
        spec = write_weights(member_dir, self.out, calibrated(spec, scale))
        nets = {a: load_member(member_dir / f"{a}.pt", a) for a in r.members}
        metrics = {
            "recipe": r.to_dict(),
            "ablation": ablation(self.csv, self.out),
            "threshold": {**scale["threshold"], **json.loads((self.csv.parent / "threshold.json").read_text())},
            "reliability_validation": scale["reliability"],
            "training": records,
            "parameters": {a: sum(p.numel() for p in n.parameters()) for a, n in nets.items()},
            "macs": {a: count_macs(n, spec.input_size) for a, n in nets.items()},
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, "
                       f"torch {torch.__version__}",
            "captures": len(_read(self.csv)),
            "validation_captures": scale["validation_captures"],
            **started,
            # what makes these weights again: the shipped recipe on the shared data in one command, else this run's
            "command": "python -m train.release --shared ../shared" if self.people is None and r == SHIPPED
                       else commands[-1],
            "commands": commands,
        }
        if self.people is None:
            metrics["sensitivity"] = sensitivity(self.shared, 100, weights=self.out)
        else:  # the user's own people: measured on the validation side of their split only
            metrics["people"] = str(self.people)
        # the same on validation people: training choices are made on this one, not on folds 1-5
        own = {} if self.people is None else {"photos_of": labelled_photos(self.csv)}
        metrics["sensitivity_validation"] = sensitivity(
            self.shared, 100, weights=self.out, people=validation_people(self.csv), **own)
        metrics["seconds_total"] = round(time.time() - t0, 1)
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
        return metrics


def _read(csv_path: Path) -> list:
    from .data import read_csv

    return read_csv(csv_path)


# -- records ----------------------------------------------------------------------------------
def summarise(history_file: Path) -> dict:
    fitted = json.loads(history_file.read_text())
    return {"best": fitted["best"], "epochs": len(fitted["history"]),
            "seconds": round(sum(h["seconds"] for h in fitted["history"]), 1)}


def add_phase(record: dict, name: str, phase: dict) -> dict:
    """A member's training record after one more phase: its epochs and time added, its best kept."""
    return {"best": phase["best"], "epochs": record["epochs"] + phase["epochs"],
            "seconds": round(record["seconds"] + phase["seconds"], 1),
            "phases": {**record.get("phases", {}), name: phase}}


def distill_record(folder: Path | None, members) -> dict:
    """What train.distill recorded for each member's backbone in ``folder`` (settings, epochs,
    seconds, last validation cosine), for the model card; empty for other backbones."""
    record = {}
    for arch in members:
        path = folder / f"{arch}.distill.json" if folder else None
        if path and path.exists():
            done = json.loads(path.read_text())
            history = done["history"]
            record[arch] = {"teacher": done["settings"]["recognizer"], "start": done["settings"].get("start"),
                            "epochs": len(history),
                            "size": done["settings"]["size"], "lr": done["settings"]["lr"],
                            "seconds": round(sum(h["seconds"] for h in history), 1),
                            "val_cosine": history[-1]["val_cosine"] if history else None}
    return record


def imagenet_record(starts: dict[str, Path]) -> dict:
    """Each ImageNet-started member's source, as train.imagenet recorded it in the file."""
    import torch

    return {a: torch.load(p, map_location="cpu", weights_only=True)["source"] for a, p in starts.items()}


def backbone_file(folder: Path | None, arch: str) -> Path | None:
    """``folder/<arch>.backbone.pt``, or None without a folder; a folder without it is an error
    before any training starts, not a member silently trained from scratch."""
    if folder is None:
        return None
    path = folder / f"{arch}.backbone.pt"
    if not path.is_file():
        raise SystemExit(f"{path}: no backbone for {arch} (make one with python -m train.distill --arch {arch})")
    return path


# -- running fits ------------------------------------------------------------------------------
def finished(cfg) -> bool:
    """Whether ``cfg``'s member has been trained to the end with these settings (its history
    records them); an unfinished one carries on from its last epoch when fitted again."""
    path = cfg.out / f"{cfg.arch}.history.json"
    if not path.exists():
        return False
    return cfg.same_run(json.loads(path.read_text()).get("fingerprint") or {})


def run_fits(release: Release, configs: list) -> None:
    """Fit members, in parallel processes when ``jobs`` > 1 (each with its share of the cores).
    Members already trained with the same settings are not refitted (so the command resumes
    where it was interrupted); with ``skip_training``, no member whose history exists is."""
    todo = [c for c in configs if not finished(c)
            and not (release.skip_training and (c.out / f"{c.arch}.history.json").exists())]
    if todo:
        from .fit import fit

        in_parallel(fit, todo, release.jobs)


def in_parallel(run, configs: list, jobs: int) -> None:
    """``run`` on each config, in up to ``jobs`` spawned processes that share the cores out
    (each config's ``threads``); in this process when one job is left."""
    from facegate.runtime import available_cores

    jobs = max(1, min(jobs, len(configs)))
    for cfg in configs:
        cfg.threads = max(1, available_cores() // jobs)
    if jobs > 1:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            list(pool.map(run, configs))
    else:
        for cfg in configs:
            run(cfg)


def soup_phase(release: Release, configs: list) -> dict:
    """A phase as a soup: every member trained ``phase.soup`` times from one start (the heads
    ``configs`` would draw, on their starts; seeds 0..K-1 for batch order and augmentation),
    the runs' weights averaged into the phase's folder (:mod:`train.soup`); returns each
    member's record."""
    import torch

    from .soup import soup_members
    from .trainer import initial_member

    out, k = configs[0].out, configs[0].phase.soup
    folder = out.parent / f"{out.name}.soup"
    (folder / "start").mkdir(parents=True, exist_ok=True)
    runs = []
    for cfg in configs:
        start = folder / "start" / f"{cfg.arch}.pt"
        if not start.exists():
            torch.save({"arch": cfg.arch, "state_dict": initial_member(cfg).state_dict()}, start)
        runs += [replace(cfg, seed=s, init=start, pretrained_backbone=None, out=folder / f"seed{s}") for s in range(k)]
    run_fits(release, runs)
    report = soup_members([folder / f"seed{s}" for s in range(k)], out, configs[0].csv, [c.arch for c in configs],
                          split_seed=configs[0].split_seed, val_fraction=configs[0].val_fraction,
                          framing=release.recipe.spec)
    records = {}
    for cfg in configs:
        seeds = [summarise(folder / f"seed{s}" / f"{cfg.arch}.history.json") for s in range(k)]
        records[cfg.arch] = {"best": {**report[cfg.arch]["soup"], "stage": "soup", "epoch": k},
                             "epochs": sum(r["epochs"] for r in seeds), "seconds": round(sum(r["seconds"] for r in seeds), 1)}
    return records


# -- the command ------------------------------------------------------------------------------
def parse(argv=None) -> tuple[argparse.Namespace, Recipe]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="settings of the recipe (--set NAME=VALUE), with the shipped recipe's "
                                            "values:\n" + setting_help(Recipe, SHIPPED))
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=Path("runs/release"))
    parser.add_argument("--out", type=Path, default=Path("facegate/weights"))
    parser.add_argument("--recipe", type=Path, default=None, metavar="FILE",
                        help="a recipe as JSON (a metrics.json's \"recipe\", or Recipe.to_dict()); default: the shipped one")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="change one setting of the recipe, e.g. resolution.terms.monotone=0.7 (repeatable)")
    parser.add_argument("--without-phase", action="append", default=[], metavar="NAME", help="leave a phase out")
    parser.add_argument("--pretrained-backbones", type=Path, default=None, metavar="DIR",
                        help="the first phase starts each member's backbone from DIR/<arch>.backbone.pt (made by "
                             "train.distill, or torchvision ImageNet weights saved under that name) instead of phase 0")
    parser.add_argument("--recognizer", type=Path, default=None,
                        help="labels' recognizer and phase 0's teacher (default: SHARED/models/mobilefacenet_casia.ckpt)")
    parser.add_argument("--people", type=Path, default=None, metavar="DIR",
                        help="train on your own photos: one sub-folder per person (two or more photos each), "
                             "labelled by --recognizer, instead of LFW's and CelebA's training people; needs --terms")
    parser.add_argument("--terms", default=None,
                        help="the terms of use of weights trained on --people, as your photos and recognizer allow "
                             "(written into spec.json and the model card; facegate info prints them)")
    parser.add_argument("--from-weights", type=Path, default=None,
                        help="run only the last phase, from these members (e.g. facegate/weights), carrying over "
                             "their metrics.json training record")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2, help="members trained at once (default 2)")
    parser.add_argument("--skip-training", action="store_true", help="reuse trained members in --work")
    parser.add_argument("--train-only", action="store_true",
                        help="stop once the members are trained (the same command without it finishes the release)")
    args = parser.parse_args(argv)
    if args.people is not None and not (args.recognizer and args.terms):
        parser.error("--people needs --recognizer (a MobileFaceNet checkpoint you may use) and --terms (what the "
                     "photos and recognizer allow the weights to be used for)")
    if args.terms is not None and args.people is None:
        parser.error("--terms is for weights trained on --people; the shipped data's terms are train.recipe.TERMS")
    try:
        recipe = Recipe.load(args.recipe) if args.recipe else SHIPPED
        recipe = recipe.with_settings(args.set)
        for name in args.without_phase:
            recipe = recipe.without_phase(name)
    except (ValueError, KeyError, OSError) as exc:
        parser.error(str(exc.args[0]) if exc.args else str(exc))
    return args, recipe


def _check_imagenet_start(args, recipe) -> None:
    """Before hours of labels: the ImageNet start the recipe asks for can be read."""
    if (not recipe.distillation.imagenet or "mobilenet_v3_small" not in recipe.members or args.pretrained_backbones
            or args.from_weights):
        return
    from .imagenet import TFLITE_FILE

    path = args.shared / "models" / TFLITE_FILE
    if not path.is_file():
        raise SystemExit(f"train.release: the recipe starts MobileNetV3-Small from ImageNet weights, and {path} is not "
                         "there: give --shared (the folder whose models/ holds it), or --set distillation.imagenet=false "
                         "to start from random initialisation")
    try:
        import tflite  # noqa: F401
    except ImportError:
        raise SystemExit("train.release: reading the ImageNet start needs the tflite package: "
                         "pip install 'facegate[train]'") from None


def main(argv=None):
    args, recipe = parse(argv)
    _check_imagenet_start(args, recipe)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t0 = time.time()
    release = Release(recipe, args.shared, args.work, args.out, args.people, args.recognizer, args.terms,
                      args.pretrained_backbones, args.jobs, args.skip_training)
    release.make_labels()
    member_dir, records, started = release.train(args.from_weights)
    commands = [] if args.from_weights is None else \
        json.loads((args.from_weights / "metrics.json").read_text()).get("commands", [])
    commands.append(" ".join(["python -m train.release", *(argv if argv is not None else sys.argv[1:])]))
    if args.train_only:
        print(f"members trained: {member_dir}")
        return
    metrics = release.package(member_dir, records, started, commands, t0)
    print(json.dumps(metrics, indent=1))
    print(f"model card: {model_card.write(args.out)}")


if __name__ == "__main__":
    main()
