"""The training recipe as one typed, frozen value: what makes a set of weights.

A :class:`Recipe` names the members, the spec template the weights are trained for (framing,
views, scale, terms), how the labels are made, the distillation that starts the backbones,
and the phases that train the members one after the other, each with its stages, optimiser,
loss terms and weight averaging. ``python -m train.release`` runs a recipe phase by phase;
``metrics.json`` records it (:meth:`Recipe.to_dict`) and the model card is rendered from that
record (``train.model_card``), so neither restates a number. :data:`SHIPPED` is the recipe
of the weights in ``facegate/weights``.

Reading or changing the recipe needs no torch::

    >>> from train.recipe import SHIPPED
    >>> SHIPPED.phase("resolution").terms.monotone
    0.5
    >>> SHIPPED.with_setting("resolution.terms.monotone", "0.7").phase("resolution").terms.monotone
    0.7
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from facegate.spec import ScorerSpec

__all__ = ["Stage", "Optimiser", "Terms", "Phase", "LabelSettings", "Distillation", "Recipe", "SHIPPED",
           "parse_stages", "format_stages", "setting_help", "TERMS", "IMAGENET_TERMS"]

#: The terms the labelled photos and the labels' recognizer pass on to weights trained on them
#: (the data's READMEs in ../shared say each); the spec and the model card carry this text.
TERMS = ("non-commercial research use only: trained on CelebA (non-commercial research use only) and LFW "
         "(research use), with labels made by a MobileFaceNet checkpoint that states no licence; not for "
         "commercial products or services, an enrollment desk or access control among them")


@dataclass(frozen=True)
class Stage:
    """One progressive stage (arXiv 2508.07590): ``epochs`` at ``size`` px on the first
    ``fraction`` of the training data (a fixed random order, so each stage's data holds the last's)."""

    size: int
    fraction: float
    epochs: int

    def __str__(self) -> str:
        return f"{self.size}:{self.fraction:g}:{self.epochs}"


def parse_stages(text: str) -> tuple[Stage, ...]:
    """``"64:0.5:4,96:0.75:4,112:1:8"`` -> stages of (size, data fraction, epochs)."""
    stages = []
    for part in text.split(","):
        try:
            size, fraction, epochs = part.split(":")
            stages.append(Stage(int(size), float(fraction), int(epochs)))
        except ValueError:
            raise ValueError(f"{text!r}: stages are size:fraction:epochs, separated by commas "
                             "(e.g. 64:0.5:4,128:1:8)") from None
    return tuple(stages)


def format_stages(stages: tuple[Stage, ...]) -> str:
    return ",".join(str(s) for s in stages)


def _help(text: str, **extra) -> dict:
    return {"metadata": {"help": text}, **extra}


@dataclass(frozen=True)
class Optimiser:
    """Adam with step decay (arXiv 2509.10114's recipe), learning rates per part of the network."""

    batch_size: int = field(default=64, **_help("crops per step"))
    lr_head: float = field(default=5e-4, **_help("learning rate of the MLP head"))
    lr_backbone: float = field(default=1e-4, **_help("learning rate of the backbone"))
    weight_decay: float = field(default=1e-4, **_help("Adam's weight decay"))
    step_size: int = field(default=5, **_help("epochs between learning-rate steps"))
    gamma: float = field(default=0.5, **_help("factor of each learning-rate step"))


#: Degradations made on the fly in crop space for the monotone term.
MONOTONE_KINDS = ("dark", "low_resolution", "blur", "noise")


@dataclass(frozen=True)
class Terms:
    """The loss: MSECorrLoss on the labels, plus each extra term at its weight (0: off)."""

    alpha: float = field(default=1.0, **_help("weight of MSECorrLoss's correlation term (0: plain MSE)"))
    consistency: float = field(default=0.0, **_help(
        "each batch scored again with every crop moved by 1-3 px (at 128 px): both views learn the label and "
        "their squared difference enters at this weight (an epoch costs about twice as long)"))
    teacher: float = field(default=0.0, **_help(
        "features kept near the recognizer's embedding of each crop (needs distilled backbones)"))
    rank: float = field(default=0.0, **_help("each degraded copy in the labels scores below its photo"))
    monotone: float = field(default=0.0, **_help("a worse copy made on the fly scores below its photo"))
    margin: float = field(default=0.01, **_help("margin of both ranking terms (rank and monotone)"))
    monotone_mix: tuple[tuple[str, float], ...] = field(default=(), **_help(
        "relative weights of the on-the-fly kinds, e.g. dark:1,low_resolution:3 (empty: equal)"))
    monotone_eyes: tuple[float, float] = field(default=(8.0, 28.0), **_help(
        "range of px between the eyes of on-the-fly low-resolution copies"))
    copies_only: bool = field(default=False, **_help(
        "the monotone term lowers the copy only, never lifts its photo"))
    pair: float = field(default=0.0, **_help(
        "LightQNet's IDQ loss: for two captures of one person in a batch, the product of their scores "
        "predicts whether the label recognizer matches them (cross-entropy on a soft match); batches then "
        "hold per_identity captures of each person (needs the distillation's embeddings, --teacher DIR)"))
    per_identity: int = field(default=4, **_help("captures of each person in a batch when the pair term is on"))

    def __post_init__(self):
        if self.per_identity < 2:
            raise ValueError(f"terms.per_identity is {self.per_identity}: a pair needs at least 2 captures a person")
        for name in ("alpha", "consistency", "teacher", "rank", "monotone", "margin", "pair"):
            if getattr(self, name) < 0:
                raise ValueError(f"terms.{name} is {getattr(self, name)}: a weight or margin is >= 0")
        unknown = [k for k, _ in self.monotone_mix if k not in MONOTONE_KINDS]
        if unknown:
            raise ValueError(f"unknown on-the-fly degradation(s) {unknown}; choose from {', '.join(MONOTONE_KINDS)}")
        if self.monotone_mix and sum(w for _, w in self.monotone_mix) <= 0:
            raise ValueError("terms.monotone_mix: the weights must add up to more than 0")

    @property
    def mix(self) -> dict[str, float] | None:
        """:attr:`monotone_mix` as a dict; None for equal weights (they draw as the shipped
        phase-2 run did, so its order accuracies reproduce)."""
        return dict(self.monotone_mix) or None


@dataclass(frozen=True)
class Phase:
    """One training phase of every member: from the previous phase's kept weights (the first
    phase: from the distilled or given backbones), its stages in order, each stage from the
    last one's best checkpoint."""

    name: str = field(default="fit", **_help("the phase's name (its work folder: members_<name>)"))
    stages: tuple[Stage, ...] = field(default=(Stage(112, 1.0, 30),), **_help("size:fraction:epochs,..."))
    optimiser: Optimiser = Optimiser()
    terms: Terms = Terms()
    jitter: float = field(default=0.0, **_help(
        "re-sample half the crops through a random similarity this large (shift as a share of the side, scale, "
        "radians), so the score does not hang on exact landmark placement"))
    ema: float = field(default=0.0, **_help(
        "validate, select and keep a moving average of the weights (decay per step, e.g. 0.998; 0: none)"))
    soup: int = field(default=1, **_help("train the phase this many times from one start (seeds 0..K-1) and "
                                         "average the weights (train.soup); 1: one run"))
    select: str = field(default="srcc", **_help(
        "checkpoint kept per stage: best validation srcc, or srcc+order (SRCC plus order accuracy)"))

    def __post_init__(self):
        if self.select not in ("srcc", "srcc+order"):
            raise ValueError(f"{self.name}.select {self.select!r}: choose srcc or srcc+order")
        if self.soup < 1:
            raise ValueError(f"{self.name}.soup {self.soup}: the number of runs averaged is at least 1")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"{self.name}.ema {self.ema}: the decay per step lies in [0, 1) (e.g. 0.998)")
        if not self.stages:
            raise ValueError(f"phase {self.name!r} has no stages")

    @property
    def size(self) -> int:
        return max(s.size for s in self.stages)

    def with_setting(self, dotted: str, text: str) -> "Phase":
        """A copy with one setting changed from text, e.g. ``stages=128:1:5``,
        ``optimiser.lr_head=1e-4``, ``terms.monotone=0.5``."""
        return _set(self, dotted, text)

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    @property
    def orders(self) -> bool:
        """Whether validation measures order accuracy (a term or the selection needs it)."""
        return self.terms.monotone > 0 or self.select != "srcc"


@dataclass(frozen=True)
class LabelSettings:
    """How ``train.labels`` makes the captures (see that module for the label itself)."""

    variants: int = field(default=2, **_help("degraded copies per photo"))
    accessory_copies: int = field(default=0, **_help(
        "copies per photo wearing sunglasses, a cap, hair or a hand, labelled after the others"))
    greyscale_copies: int = field(default=0, **_help(
        "copies per photo as a grey or near-infrared camera gives them, labelled after the others"))

    @property
    def added_copies(self) -> dict[str, int]:
        """The kinds labelled apart after the others (``train.labels --only``), and how many per photo."""
        return {kind: n for kind, n in (("accessory", self.accessory_copies), ("greyscale", self.greyscale_copies)) if n}


@dataclass(frozen=True)
class Distillation:
    """Phase 0 (``train.distill``): each backbone trained to reproduce the label recognizer's
    embedding of every training crop, at the recipe's input size."""

    epochs: int = field(default=6, **_help("epochs of distillation; 0: the first phase starts from scratch"))
    lr: float = field(default=1e-3, **_help("peak learning rate (AdamW, one-cycle)"))
    batch_size: int = field(default=64, **_help("crops per step"))
    weight_decay: float = field(default=1e-4, **_help("AdamW's weight decay"))
    imagenet: bool = field(default=False, **_help(
        "MobileNetV3-Small starts from ImageNet weights (SHARED/models' TFLite file, train.imagenet) instead of "
        "random initialisation: its distillation, or with 0 epochs its first phase; the other members have none"))


#: What weights started from the ImageNet model inherit (../shared/models/README.md).
IMAGENET_TERMS = ("the MobileNetV3-Small member starts from Google's ImageNet model (tensorflow/models, Apache-2.0; "
                  "as TFLite from weilly0912/ATU_Model_Zoo, MIT), trained on ImageNet-1k (ImageNet's terms: "
                  "non-commercial research and education)")


@dataclass(frozen=True)
class Recipe:
    """Everything that decides a set of weights, less the data and the machine.

    Attributes:
        spec: the template of the spec the weights are written with (framing, views, scale,
            detector settings, terms, members); calibration fills in the rest.
        labels, distillation, phases: the steps, in order.
        val_fraction, split_seed: the identity-disjoint validation split every step shares.
        seed: initialisation, batch order and augmentation.
    """

    spec: ScorerSpec = ScorerSpec(name="facegate-ensemble.untrained", terms=TERMS)
    labels: LabelSettings = LabelSettings()
    distillation: Distillation = Distillation()
    phases: tuple[Phase, ...] = (Phase(),)
    val_fraction: float = field(default=0.2, **_help("share of identities held out for validation"))
    split_seed: int = field(default=0, **_help("which identities are held out"))
    seed: int = field(default=0, **_help("initialisation, batch order and augmentation"))

    def __post_init__(self):
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ValueError(f"phase names must differ: {names}")
        if not self.phases:
            raise ValueError("a recipe has at least one phase")

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(self.spec.members)

    @property
    def input_size(self) -> int:
        """The weights' input size: the largest stage of any phase."""
        return max(p.size for p in self.phases)

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(f"no phase {name!r}; the recipe has {', '.join(p.name for p in self.phases)}")

    def weights_spec(self, terms: str | None = None) -> ScorerSpec:
        """The spec the trained weights are written with, before calibration."""
        terms = terms or self.spec.terms
        if self.distillation.imagenet:
            terms = f"{terms}; {IMAGENET_TERMS}"
        return self.spec.with_(name=f"facegate-ensemble.{self.spec.score_scale}", input_size=self.input_size,
                               terms=terms)

    # -- records -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON values (``metrics.json`` keeps this; :meth:`from_dict` reads it back)."""
        return json.loads(json.dumps(_to_json(self)))

    @classmethod
    def from_dict(cls, data: dict) -> "Recipe":
        return _from_json(cls, data)

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        return cls.from_dict(json.loads(Path(path).read_text()))

    # -- changes -------------------------------------------------------------------------
    def with_setting(self, dotted: str, text: str) -> "Recipe":
        """A copy with one setting changed from text, e.g. ``members.stages=128:1:5``,
        ``resolution.terms.monotone=0.7``, ``distillation.epochs=0``, ``labels.variants=3``,
        ``seed=1``; phases are named by their :attr:`Phase.name`."""
        head, _, rest = dotted.partition(".")
        if any(p.name == head for p in self.phases) and rest:
            phases = tuple(_set(p, rest, text) if p.name == head else p for p in self.phases)
            return replace(self, phases=phases)
        if head == "spec":
            raise ValueError("spec settings are the weights' framing and scale: change them in the recipe's code, "
                             "where the choice can be explained")
        return _set(self, dotted, text)

    def without_phase(self, name: str) -> "Recipe":
        self.phase(name)
        return replace(self, phases=tuple(p for p in self.phases if p.name != name))

    def with_settings(self, settings: list[str]) -> "Recipe":
        """:meth:`with_setting` for each ``NAME=VALUE`` of a command's ``--set`` options."""
        recipe = self
        for item in settings:
            name, _, value = item.partition("=")
            recipe = recipe.with_setting(name.strip(), value.strip())
        return recipe


# -- the shipped recipe -----------------------------------------------------------------------
#: The recipe of the weights in facegate/weights (fg-utility-v2). Phase ``members``: one
#: short stage from the distilled backbones (the paper's progressive schedule from scratch,
#: "64:0.4:5,96:0.7:5,128:1:7", made the first v2 weights; from a distilled start it washes
#: the distilled features out: docs/results.md). No ranking phase on the labels' own copies:
#: on the validation people it took the share of the gap closed on degraded captures from
#: 0.83 to 0.65. Phase ``resolution``: the on-the-fly term, its copies leaning towards mild
#: resolution loss and darkness, which the utility labels separate least.
SHIPPED = Recipe(
    labels=LabelSettings(greyscale_copies=1),
    distillation=Distillation(imagenet=True),
    phases=(
        Phase(name="members", stages=parse_stages("128:1:5"), optimiser=Optimiser(lr_backbone=5e-4)),
        Phase(name="resolution", stages=parse_stages("128:1:3"), optimiser=Optimiser(lr_head=5e-5, lr_backbone=5e-5),
              terms=Terms(monotone=0.5, margin=0.01, monotone_eyes=(18.0, 30.0),
                          monotone_mix=(("dark", 2.0), ("low_resolution", 4.0), ("blur", 1.0), ("noise", 1.0))),
              select="srcc+order"),
    ),
)


# -- JSON and text conversion of the frozen values ---------------------------------------------
def _to_json(value: Any) -> Any:
    if isinstance(value, ScorerSpec):
        from dataclasses import asdict

        return asdict(value)
    if isinstance(value, Stage):
        return str(value)
    if is_dataclass(value):
        return {f.name: _to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, tuple):
        if value and all(isinstance(v, Stage) for v in value):
            return format_stages(value)
        return [_to_json(v) for v in value]
    return value


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _from_json(cls, data: dict):
    if cls is ScorerSpec:
        data = dict(data)
        for key in ("members", "mean", "std", "score_range", "views"):
            if key in data:
                data[key] = tuple(data[key])
        data["template"] = tuple(tuple(p) for p in data.get("template", ()))
        data["score_calibration"] = tuple(tuple(p) for p in data.get("score_calibration", ()))
        return ScorerSpec(**data)
    hints = _hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no setting(s) {sorted(unknown)}")
    return cls(**{k: _typed(hints[k], v) for k, v in data.items()})


def _typed(hint, value):
    """A JSON value as the field's type (nested dataclasses, tuples, stages)."""
    if isinstance(hint, type) and is_dataclass(hint):
        return _from_json(hint, value)
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if args and args[0] is Stage:
            return parse_stages(value) if isinstance(value, str) else tuple(Stage(*s) for s in value)
        if len(args) == 2 and args[1] is Ellipsis:
            inner = args[0]
            if typing.get_origin(inner) is tuple:
                return tuple(tuple(v) for v in value)
            if isinstance(inner, type) and is_dataclass(inner):
                return tuple(_from_json(inner, v) for v in value)
            return tuple(value)
        return tuple(value)
    return value


def _parse(hint, text: str, name: str):
    """A ``--set`` text as the field's type."""
    origin = typing.get_origin(hint)
    if origin is tuple and typing.get_args(hint)[:1] == (Stage,):
        return parse_stages(text)  # its own message names the form
    try:
        if hint is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if hint in (int, float, str):
            return hint(text)
        if origin is tuple:
            args = typing.get_args(hint)
            if args and args[0] is Stage:
                return parse_stages(text)
            if args and typing.get_origin(args[0]) is tuple:  # name:weight pairs
                pairs = [p.partition(":") for p in text.split(",") if p]
                return tuple((k, float(w or 1.0)) for k, _, w in pairs)
            return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{name}={text!r}: not a valid {getattr(hint, '__name__', hint)}") from None
    raise ValueError(f"{name}: cannot be set from the command line")


def _set(value, dotted: str, text: str):
    head, _, rest = dotted.partition(".")
    known = {f.name: f for f in fields(value)}
    if head not in known:
        raise ValueError(f"no setting {dotted!r} in {type(value).__name__} (it has {', '.join(known)})")
    current = getattr(value, head)
    hint = _hints(type(value))[head]
    if rest:
        if not is_dataclass(current) or isinstance(current, ScorerSpec):
            raise ValueError(f"{head} has no settings inside it ({dotted!r})")
        return replace(value, **{head: _set(current, rest, text)})
    if is_dataclass(current):
        raise ValueError(f"{head} is a group of settings; name one of them ({head}.<name>)")
    return replace(value, **{head: _parse(hint, text, dotted)})


def setting_help(cls, value, prefix: str = "") -> str:
    """Every ``--set`` name of ``cls`` (a Recipe or a Phase) with its help text and its value in
    ``value``: the help of the commands that take ``--set``, derived from the recipe itself."""
    lines = []
    for name, text in _names(cls, prefix):
        current = value
        for part in name[len(prefix):].split("."):
            current = getattr(current, part)
        lines.append(f"  {name} = {_to_json(current)}: {text}")
    if cls is Recipe:
        for phase in value.phases:
            lines.append(f"  {phase.name}.<setting>: the phase {phase.name!r} (settings as below)")
        lines += [f"  {n}: {h}" for n, h in _names(Phase, "PHASE.") if n != "PHASE.name"]
    return "\n".join(lines)


def _names(cls, prefix: str) -> list[tuple[str, str]]:
    out = []
    hints = _hints(cls)
    for f in fields(cls):
        hint = hints[f.name]
        if f.name in ("phases", "spec"):
            continue
        if isinstance(hint, type) and is_dataclass(hint):
            out += _names(hint, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", f.metadata.get("help", "")))
    return out
