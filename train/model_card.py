"""Write ``facegate/weights/MODEL_CARD.md`` from ``metrics.json`` and ``spec.json``, so the
card's numbers are always the measured ones and its recipe is the one that ran: the training
section is rendered from the recorded :class:`train.recipe.Recipe`, never restated.

    python -m train.model_card --weights facegate/weights
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facegate.spec import ScorerSpec

from .recipe import IMAGENET_TERMS, MONOTONE_KINDS, Phase, Recipe, format_stages




def render(spec: ScorerSpec, m: dict) -> str:
    """The card: what the weights are, what trained them (the recorded recipe), what they
    measure, and on what terms they may be used."""
    lines = _header(spec, m) + _inputs(spec, m) + _training(Recipe.from_dict(m["recipe"]), m) + _results(spec, m)
    return "\n".join(lines + _terms(spec, m)) + "\n"


def _header(spec: ScorerSpec, m: dict) -> list[str]:
    lines = [
        f"# Model card: `{spec.name}`",
        "",
        "Face-capture quality for gating captures before face recognition: an ensemble of",
        f"{' and '.join(f'`{a}`' for a in spec.members)} (torchvision architectures, trained by this project"
        + (" from backbones distilled from the label recognizer" if m.get("distilled") else
           " from ImageNet weights" if m.get("imagenet_start") else
           " from the given backbones" if m.get("pretrained_backbones") else " from random initialisation")
        + ") with MLP heads, after arXiv 2509.10114.",
        "",
        "## Output",
        f"A score on 0-100, scale `{spec.score_scale}`: " + (
            "about the chance, in percent, that a genuine comparison of the capture with a good reference photo "
            "succeeds at FMR 1e-3 with the recognizer that made the labels (the reliability table below and, on "
            "held-out people, in docs/evaluation.md). The networks' raw output is mapped to it by the monotone "
            "knots in `spec.json` (`score_calibration`, fitted on the validation people)."
            if spec.score_calibration else
            "100 x the predicted recognition utility (defined below), clipped to 0-100.") +
        " Higher is better. Input: the face aligned by a 5-point",
        f"similarity transform onto a {spec.input_size}x{spec.input_size} template with margin {spec.margin}"
        + (" (the ArcFace 112 x 112 template scaled to the input: "
           f"{abs(spec.template[1][0] - spec.template[0][0]):.1f} px between the eyes; a crop a recognition pipeline "
           "holds is the input once resized)" if spec.margin == 0 else "") + ",",
        "RGB, ImageNet mean/std normalisation (`ScorerSpec.crop` and `facegate.models.to_tensor`).",
        "Detector settings that go with these weights (`spec.json`): "
        + "; ".join(f"{name}: " + ", ".join(f"`{k}={v}`" for k, v in spec.detector_settings(name).items())
                    for name in sorted(spec.detectors)) + ".",
        *[f"- {note}" for note in m.get("notes_after_release", [])],
        "",
        "| member | parameters | multiply-accumulates per face |",
        "|---|---|---|",
    ]
    for arch in spec.members:
        lines.append(f"| {arch} | {m['parameters'][arch] / 1e6:.3f} M | {m['macs'][arch] / 1e6:.1f} M at {spec.input_size} px |")
    return lines


def _results(spec: ScorerSpec, m: dict) -> list[str]:
    """The invocations, each member's training, and what the weights measure."""
    t = m["threshold"]
    lines = []
    commands = m.get("commands", [m["command"]])
    if len(commands) > 1:
        lines += ["", f"The shipped weights were made by these {len(commands)} invocations, in order, each later one "
                  "reusing what the earlier ones wrote:", ""]
        lines += [f"{n}. `{c}`" for n, c in enumerate(commands, 1)]
        lines += ["", "Their settings are the recipe above (metrics.json's `recipe`); `python -m train.release --shared "
                  "../shared` runs it in one command."]
    lines += [
        "",
        "| member | validation SRCC of the kept checkpoint | its stage, epoch (in its phase) | epochs | training time |",
        "|---|---|---|---|---|",
    ]
    for arch in spec.members:
        tr = m["training"][arch]
        lines.append(f"| {arch} | {tr['best']['srcc']:.4f} | {tr['best']['stage']}, {tr['best']['epoch']} | "
                     f"{tr['epochs']} | {tr['seconds'] / 60:.1f} min |")
    lines += [
        "",
        "## Metrics (identity-disjoint validation split, against the labels)",
        "",
        "| model | test-time views | SRCC | PLCC |",
        "|---|---|---|---|",
    ]
    for row in m["ablation"]:
        lines.append(f"| {row['model']} | {row['views']} | {row['srcc']:.4f} | {row['plcc']:.4f} |")
    lines += [
        "",
        "## Default threshold",
        f"`{spec.default_threshold:g}`, chosen by {spec.threshold_rule}. At it, {t['accept_usable']:.1%} of",
        f"usable and {t['accept_unusable']:.1%} of unusable validation captures are accepted",
        f"({t['unusable_share']:.1%} of validation captures are unusable). `facegate calibrate` sets your own.",
    ]
    if "sensitivity" in m:
        s = m["sensitivity"]
        lines += [
            "",
            f"## Sensitivity on held-out people ({s['photos']} photos of LFW folds 1-5 people)",
            "Each photo and its degraded copy go through the whole gate (detect, align, score).",
            "",
            f"| degradation | score dropped | no face found after | share dropped | median score before -> after | "
            f"rejected by the gate (threshold {s['threshold']:g}) |",
            "|---|---|---|---|---|---|",
        ]
        for name, d in s["degradations"].items():
            after = "-" if d["median_after"] is None else f"{d['median_after']:.1f}"
            lines.append(f"| {name} | {d['score_dropped']} | {d['no_face_after']} | {d['share_dropped']:.0%} | "
                         f"{d['median_before']:.1f} -> {after} | {d.get('rejected_after', '-')} |")
        lines.append("")
        lines.append("Measured by `python -m train.evaluate sensitivity --shared ../shared --photos 100`.")
    if "sensitivity_validation" in m:
        v = m["sensitivity_validation"]["degradations"]
        lines += ["", "Training choices (the resolution stage's settings) were made on the same measure over 100 photos",
                  "of the validation people of the training split (`--people validation`): "
                  + ", ".join(f"{name} {d['share_dropped']:.0%}" for name, d in v.items()) + "."]
    if "reliability_validation" in m:
        lines += ["", "## Reliability of the scale (validation people, the captures the scale was fitted on)", "",
                  "| score bin | captures | comparisons | mean score | observed success % |", "|---|---|---|---|---|"]
        for row in m["reliability_validation"]:
            if row["captures"]:
                lines.append(f"| {row['bin']} | {row['captures']} | {row['comparisons']} | {row['predicted']:.1f} | "
                             f"{row['observed']:.1f} |")
        lines += ["", "In-sample by construction; docs/evaluation.md has the same table on held-out people "
                  "(`python -m train.edc`)."]
    return lines


def _terms(spec: ScorerSpec, m: dict) -> list[str]:
    return [
        "",
        "## Terms and limits",
        *([f"- **Terms of these weights: {spec.terms}.** facegate's code is MIT-licensed (`LICENSE`); the weights "
           "inherit the terms of what trained them, which are narrower. `facegate info` prints them."]
          if spec.terms else ["- The terms of these weights are not stated in their spec: they are those of the "
                              "photos, recognizer and starting weights that trained them."]),
        *(["- LFW has no formal licence and is for research use; these weights inherit that: research use.",
           "- CelebA is for non-commercial research use only; weights trained on it inherit that: "
           "non-commercial research use only.",
           "- The MobileFaceNet checkpoint (no licence stated) made the labels and is not shipped.",
           "- Quality here means usefulness to *that* recognizer on LFW- and CelebA-like photos (news, "
           "red-carpet and street photos of mostly adult public figures)."] if "people" not in m else
          [f"- Trained on the people of `{m['people']}`, labelled by the recognizer named in the command below; "
           "quality here means usefulness to *that* recognizer on photos like those."]),
        "  Other recognizers, cameras and populations can differ: calibrate the threshold on your own captures.",
        *_start_lines(m),
        "",
        f"Machine: {m.get('machine', 'see metrics.json')}.",
    ]


def _start_lines(m: dict) -> list[str]:
    """Where the backbones started, and the terms an ImageNet start brings."""
    lines = []
    for arch, source in (m.get("imagenet_start") or {}).items():
        lines.append(f"- `{arch}` started from ImageNet weights (`train.imagenet`: {source}); {IMAGENET_TERMS}.")
    if m.get("distilled"):
        lines.append(f"- Backbones distilled from the label recognizer (phase 0), then trained on {m['captures']:,} crops.")
    elif m.get("pretrained_backbones"):
        lines.append(f"- Backbones started from `--pretrained-backbones` files (`train.distill` or the user's own), "
                     f"then trained on {m['captures']:,} crops.")
    else:
        lines.append(f"- Trained from scratch on {m['captures']:,} crops.")
    return lines


def _inputs(spec: ScorerSpec, m: dict) -> list[str]:
    """Views, data and labels of weights on the fg-utility-v2 scale."""
    t = m["threshold"]
    return [
        "",
        f"Test-time views: `none` (identity), `flip` and `full` (both: {', '.join(spec.views)}). No vertical flip:",
        "an upside-down face is not a view of the same capture to a recognizer, so training never shows one",
        "as a good face. All views of a batch go through a member in one forward pass.",
        "",
        "## Data",
        "Two sources, identity-disjoint from every evaluation set: LFW deep-funneled without the people of",
        "pair folds 1-5 (3,663 people, 7,860 photos), and the CelebA subset without its evaluation identities",
        "(181 identities, 3,785 in-the-wild photos: red carpets, street shots, sunglasses, hats, profile views).",
        "Every photo of an identity with a good reference besides it (below) gives the photo as it is plus",
        f"{m['recipe']['labels']['variants']} degraded copies: one or two of defocus, motion and Gaussian blur, sensor noise, JPEG",
        "(quality 40-3), under- and over-exposure, low resolution, partial occlusion at random severities; or",
        "(training only) the photo turned 90, 180 or 270 degrees, or re-encoded at JPEG quality 1-5. Every",
        "capture goes through the capture stage as inference does (MTCNN with refined landmarks, look-again,",
        "alignment); a copy in which no face is found is no sample (the gate rejects it anyway).",
        f"{m['captures']} captures in all; {m['validation_captures']} of them (20% of the identities) form the",
        "identity-disjoint validation split that chooses checkpoints and fits the scale.",
        "",
        "## Labels: chance of a successful genuine comparison",
        "Computed with the MobileFaceNet in `../shared/models` (CASIA-WebFace, 256-d image+mirror embedding,",
        f"cosine similarity). T = {t['cosine']:.4f}, its threshold at FMR {t['fmr']:g} over every impostor pair of",
        "clean training photos. A clean photo is a good reference when it matches (cosine >= T) at least half of",
        f"its identity's other photos ({t['good_references']} are). For a capture c of identity i:",
        "",
        f"    label(c) = mean over good references r of i, other than c's own photo, of sigmoid((cos(c, r) - T) / {t['tau']:g})",
        "",
        "a soft version of the share of genuine comparisons that succeed: against good references, so a",
        "capture is not blamed for its partner's flaws; soft, so that LFW's two or three photos a person still",
        "order near misses. Why this target and not the recognizer's raw similarity: it is what the score scale",
        "promises, and it depends on the recognizer only through match or no match at one operating point, not",
        "on how its similarities are spread, which other recognizers do not share.",
    ]


def _training(recipe: Recipe, m: dict) -> list[str]:
    """The training section, from the recipe that ran."""
    lines = ["", "## Training",
             f"Command: `{m['command']}` (labels, then every member in parallel processes, phase after phase, then "
             "the scale; an interrupted run carries on from its last epoch when the same command runs again). "
             "metrics.json records the recipe that ran (`recipe`; the shipped weights': `train.recipe.SHIPPED`), "
             "and this section is rendered from it.",
             "Augmentation in every phase: horizontal flips and shifts of up to 4% of the side (nothing that changes "
             "quality). Validation: identity-disjoint, "
             f"{recipe.val_fraction:.0%} of the identities (split seed {recipe.split_seed}); seed {recipe.seed}."]
    lines += _distilled_lines(m.get("distilled") or {})
    for number, phase in enumerate(recipe.phases, 1):
        lines += [""] + _phase_lines(phase, number, m)
    lines += ["", "How this recipe was chosen (label variants tried, a ranking phase on the labels' own copies left",
              "out), measured on the validation people only: docs/results.md."]
    return lines


def _phase_lines(phase: Phase, number: int, m: dict) -> list[str]:
    """One phase in words: its start, stages, optimiser, loss terms, averaging and selection."""
    o, terms = phase.optimiser, phase.terms
    if number > 1:
        start = "from the previous phase's kept weights"
    elif m.get("pretrained_backbones"):
        start = "from the backbones " + ", ".join(f"`{f}`" for f in m["pretrained_backbones"].values())
    else:
        start = "from random initialisation"
    stages = ("progressive stages" if len(phase.stages) > 1 else "one stage") + \
        f" (size:data share:epochs) `{format_stages(phase.stages)}`"
    lines = [f"Phase {number} `{phase.name}`, {start}: {stages}; Adam, head lr {o.lr_head:g}, backbone lr "
             f"{o.lr_backbone:g}, weight decay {o.weight_decay:g}, step decay x{o.gamma:g} every {o.step_size} epochs, "
             f"batch {o.batch_size}. Loss: MSECorrLoss (alpha {terms.alpha:g}) on the labels"]
    if terms.consistency:
        lines.append(_consistency_line(terms.consistency, "this phase"))
    if terms.teacher:
        lines.append(f"The pooled features, through the distillation's own (fixed) linear map, are kept near the "
                     f"recognizer's embedding of each crop: 1 - cosine enters the loss at weight {terms.teacher:g}.")
    if terms.pair:
        lines.append(f"Batches hold {terms.per_identity} captures of each person; for every two captures of one "
                     "person the product of their scores predicts whether the label recognizer matches them "
                     "(LightQNet's IDQ loss: cross-entropy against sigmoid((cos - T) / tau) at the labels' threshold, "
                     f"on the distillation's stored embeddings) at weight {terms.pair:g}.")
    if terms.rank:
        lines.append(f"Each degraded copy in the labels must score below the photo it was made from: "
                     f"mean(relu({terms.margin:g} - (pred(photo) - pred(copy)))) at weight {terms.rank:g} (batches "
                     "keep a photo and its copies together).")
    if terms.monotone:
        lo, hi = terms.monotone_eyes
        mix = ",".join(f"{k}:{w:g}" for k, w in terms.monotone_mix) or ",".join(f"{k}:1" for k in MONOTONE_KINDS)
        lines.append(
            "A copy made from a photo by darkening or downscaling never carries more information than the photo, "
            "which the utility labels barely say (the recognizer is fairly robust to mild loss): each clean photo in "
            f"a batch gets a worse copy of its aligned crop made on the fly, drawn as `{mix}` (kind:relative weight; "
            f"darker: gamma 1.8-4; fewer pixels: {lo:g}-{hi:g} px between the eyes, resampled back; blurrier: sigma "
            f"0.6-2.4 px; noisier: sigma 5-25), and mean(relu({terms.margin:g} - (pred(photo) - pred(copy)))) enters "
            f"the loss at weight {terms.monotone:g}"
            + (" (the photo's prediction taken as given: the term lowers copies and never lifts photos)."
               if terms.copies_only else "."))
    if phase.jitter:
        j = phase.jitter
        lines.append(f"Half the crops are re-sampled through a random similarity (shift up to {j:.0%} of the side, "
                     f"scale 1 +- {j:g}, rotation +- {j:g} rad).")
    if phase.ema:
        lines.append(f"The checkpoint validated and kept is a moving average of the weights (decay {phase.ema:g} per "
                     "step, ramped up over the first steps), not the last step's.")
    if phase.soup > 1:
        lines.append(f"The phase is trained {phase.soup} times from one start (seeds 0-{phase.soup - 1} for batch "
                     "order and augmentation) and the runs' weights averaged, batch-norm statistics measured again "
                     "on 4,096 training crops (a uniform model soup, `train.soup`).")
    lines.append("Kept per stage: the epoch with the highest validation SRCC"
                 + (" plus validation order accuracy (share of validation photos that outscore a worse copy of "
                    "themselves, fixed seed)." if phase.select == "srcc+order" else "."))
    lines[0] += "."
    return [" ".join(lines)]


def _consistency_line(weight: float, where: str) -> str:
    from .augment import CONSISTENCY_PIXELS  # torch only when the card has this line

    return (f"In {where} every batch is scored twice, the second time with each crop moved by "
            f"1-{CONSISTENCY_PIXELS} px (at 128 px); both views "
            f"learn the label and their mean squared difference enters the loss at weight {weight:g} "
            "(`terms.consistency`): a score that does not hang on the exact framing.")


def _distilled_lines(distilled: dict) -> list[str]:
    """Phase 0 (train.distill), when the backbones were distilled from a recognizer."""
    if not distilled:
        return []
    lines = ["", "Phase 0 (`train.distill`): each backbone, with a linear map, first trained to reproduce the",
             "teacher's embedding of every training crop (crop and mirror summed, normalised; loss 1 - cosine;",
             "AdamW with a one-cycle schedule; training side of the labels' identity split only):"]
    for arch, r in distilled.items():
        start = "from the ImageNet start" if r.get("start") else "from random initialisation"
        lines.append(f"- {arch}, {start}: teacher `{r['teacher']}`, {r['epochs']} epochs at {r['size']} px, peak lr {r['lr']:g}, "
                     f"{r['seconds'] / 60:.0f} min, validation cosine to the teacher {r['val_cosine']:.2f}.")
    return lines + [""]


def write(weights: Path) -> Path:
    spec = ScorerSpec.load(weights / "spec.json")
    metrics = json.loads((weights / "metrics.json").read_text())
    path = weights / "MODEL_CARD.md"
    path.write_text(render(spec, metrics))
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, default=Path("facegate/weights"))
    print(write(parser.parse_args(argv).weights))


if __name__ == "__main__":
    main()
