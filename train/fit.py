"""Fit one quality model for one phase of a recipe (arXiv 2509.10114's members and loss, the
progressive stages of arXiv 2508.07590): ``python -m train.release`` runs this for every
member and phase; alone it runs one.

    python -m train.fit --csv runs/release/labels/labels.csv --arch mobilenet_v3_small --out runs/m \
        --pretrained-backbone runs/release/distilled/mobilenet_v3_small.backbone.pt

The phase is the shipped recipe's first (``--phase members``, the default) or another of its
phases (``--phase resolution``), changed by ``--set NAME=VALUE`` (``--help`` lists every
setting with its value). Crops are framed as the shipped spec frames them (``--margin``,
default the spec's 0). Every epoch leaves ``<arch>.resume.pt``: the same command after an
interruption carries on from the last finished epoch, with the result of an uninterrupted run.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from facegate.models import list_members
from facegate.spec import ScorerSpec

from .checkpoints import comparable, recorded_settings
from .recipe import SHIPPED, Phase, setting_help

__all__ = ["FitConfig", "fit", "NOT_FINGERPRINTED", "same_run"]

#: Settings a resumed run may change: they do not change the result.
NOT_FINGERPRINTED = ("threads", "stop_after_epochs", "device")


@dataclass
class FitConfig:
    """One member's run: what it learns from and starts from, the phase (how), and the machine.

    Attributes:
        csv: the labels (``train.labels``); ``images``: their aligned crops or the photos.
        arch: the member architecture; ``out``: where the run writes.
        phase: stages, optimiser, loss terms and averaging (:class:`train.recipe.Phase`).
        margin: the crops' framing; the shipped spec's unless said otherwise.
        pretrained_backbone, init, teacher: the start (a backbone file, a facegate checkpoint)
            and the distillation folder the teacher term reads.
    """

    csv: Path
    arch: str
    out: Path
    phase: Phase = SHIPPED.phases[0]
    margin: float = ScorerSpec().margin
    images: str = "aligned"
    target: str = "score"
    val_fraction: float = SHIPPED.val_fraction
    seed: int = SHIPPED.seed
    split_seed: int = SHIPPED.split_seed  # apart from ``seed``: another seed keeps the same validation people
    pretrained_backbone: Path | None = None
    init: Path | None = None
    teacher: Path | None = None
    threads: int | None = field(default=None, compare=False)
    device: str = "cpu"
    stop_after_epochs: int | None = None

    def recorded(self) -> dict:
        return recorded_settings(self)

    def fingerprint(self) -> dict:
        """What a resumed run must share with the run it resumes (threads and the stop may differ)."""
        return recorded_settings(self, NOT_FINGERPRINTED)

    def same_run(self, recorded: dict) -> bool:
        """Whether settings recorded by an earlier run (its fingerprint) are this config's."""
        return same_run(recorded, self)


def same_run(recorded: dict, cfg: FitConfig) -> bool:
    """Whether settings recorded by an earlier run (its fingerprint) are ``cfg``'s; a setting
    added since the record was made counts as its default."""
    defaults = {k: v for k, v in FitConfig(csv=None, arch=None, out=None).fingerprint().items()
                if k not in ("csv", "arch", "out")}
    return comparable(recorded, defaults) == comparable(cfg.fingerprint())


def fit(cfg: FitConfig, log=print) -> dict:
    """Train one member (:class:`train.trainer.Trainer`); returns the history and the best
    validation metrics. ``cfg.threads`` sizes torch's pool: a process trains one member."""
    import torch

    from .trainer import Trainer

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return Trainer(cfg, log).run()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="settings of the phase (--set NAME=VALUE), with the shipped "
                                            f"'{SHIPPED.phases[0].name}' phase's values:\n"
                                            + setting_help(Phase, SHIPPED.phases[0]))
    parser.add_argument("--csv", type=Path, required=True, help="CSV with path,score[,identity]")
    parser.add_argument("--arch", required=True, choices=list_members())
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--phase", default=SHIPPED.phases[0].name, choices=[p.name for p in SHIPPED.phases],
                        help="the shipped recipe's phase to start from (default: %(default)s)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="change one setting of the phase (repeatable; see the list below)")
    parser.add_argument("--images", choices=["aligned", "photos"], default="aligned")
    parser.add_argument("--target", default="score", help="CSV column trained on (default: score)")
    parser.add_argument("--margin", type=float, default=FitConfig.margin,
                        help="crop framing (default: the shipped spec's, %(default)s: the ArcFace template)")
    parser.add_argument("--seed", type=int, default=FitConfig.seed, help="initialisation, batch order and augmentation")
    parser.add_argument("--split-seed", type=int, default=FitConfig.split_seed,
                        help="which people are held out for validation (keep it when comparing seeds)")
    parser.add_argument("--pretrained-backbone", type=Path, default=None)
    parser.add_argument("--init", type=Path, default=None, help="start from this facegate checkpoint")
    parser.add_argument("--teacher", type=Path, default=None,
                        help="a train.distill folder (its targets.npz and <arch>.resume.pt), for terms.teacher")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu",
                        help="where to train; under torchrun, cuda uses one GPU per process (NCCL)")
    parser.add_argument("--stop-after-epochs", type=int, default=None,
                        help="stop after this many epochs (the same command carries on later)")
    args = parser.parse_args(argv)
    phase = SHIPPED.phase(args.phase)
    try:
        for item in args.set:
            name, _, value = item.partition("=")
            phase = phase.with_setting(name.strip(), value.strip())
    except ValueError as exc:
        parser.error(str(exc))
    options = {k: v for k, v in vars(args).items() if k not in ("phase", "set")}
    fit(FitConfig(phase=phase, **options))


if __name__ == "__main__":
    main()
