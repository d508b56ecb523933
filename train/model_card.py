"""Write ``facegate/weights/MODEL_CARD.md`` from ``metrics.json`` and ``spec.json``, so the
card's numbers are always the measured ones.

    python -m train.model_card --weights facegate/weights
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facegate.spec import ScorerSpec




def render(spec: ScorerSpec, m: dict) -> str:
    t = m["threshold"]
    lines = [
        f"# Model card: `{spec.name}`",
        "",
        "Face-capture quality for gating captures before face recognition: an ensemble of",
        "MobileNetV3-Small and ShuffleNetV2 x1.0 (torchvision architectures, trained from random",
        "initialisation by this project) with MLP heads, after arXiv 2509.10114.",
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
    lines += _inputs_v2(spec, m) if spec.score_calibration else _inputs_v1(m)
    if m.get("rank_stage"):
        lines += [
            "",
            f"Then a fine-tuning stage `{m['rank_stage']}` (lr 1e-4 for head and backbone) adds a ranking term,",
            f"weight {m['rank_weight']:g}: mean(relu({m['rank_margin']:g} - (pred(original) - pred(degraded copy)))) over the",
            "pairs in a batch (batches keep a photo and its copies together). The utility labels alone barely",
            "separate mild degradations (the recognizer itself is fairly robust to them), yet a copy made",
            "from a photo by blurring, darkening or downscaling never carries more information than the photo.",
        ]
        if m.get("monotone_weight"):
            lines += [
                f"A second term, weight {m['monotone_weight']:g} and the same margin, applies that to copies made on the fly:",
                "each clean photo in a batch gets a worse copy of its aligned crop (darker: gamma 1.8-4; fewer",
                "pixels: 8-28 px between the eyes, resampled back; blurrier: sigma 0.6-2.4 px; or noisier: sigma",
                "5-25), which must score below it. The checkpoint kept is the epoch with the highest validation",
                "SRCC plus validation order accuracy (share of validation photos that outscore a worse copy",
                "of themselves, fixed seed); the order accuracy of each epoch is in metrics.json.",
            ]
    if m.get("resolution_stage"):
        lo, hi = m["resolution_eyes"]
        rank = m.get("resolution_rank_weight", m.get("rank_weight", 0.0) if m.get("rank_stage") else 0.0)
        lines += [
            "",
            f"Last, a stage `{m['resolution_stage']}` (lr 5e-5 for head and backbone) adds a term that applies what",
            "the utility labels barely say (the recognizer itself is fairly robust to mild loss): a copy made",
            "from a photo by darkening or downscaling never carries more information than the photo. Each clean",
            "photo in a batch gets a worse copy of its aligned crop made on the fly, drawn as",
            f"`{m['resolution_mix']}` (kind:relative weight; darker: gamma 1.8-4; fewer pixels: {lo:g}-{hi:g} px between",
            "the eyes, resampled back; blurrier: sigma 0.6-2.4 px; noisier: sigma 5-25), and",
            f"mean(relu({m['resolution_margin']:g} - (pred(photo) - pred(copy)))) enters the loss at weight",
            f"{m['resolution_weight']:g}" + (f", with the labels' own copies ranked the same way at weight {rank:g}." if rank
                                             else " (the labels' own copies are not ranked: see `RANK_STAGE` in train/release.py)."),
        ]
        if m.get("resolution_copies_only"):
            lines += ["The photo's prediction in that term is taken as given (no gradient): the term lowers copies",
                      "and never lifts photos, so it cannot reorder clean photos by brightness or sharpness."]
        if m.get("resolution_jitter"):
            j = m["resolution_jitter"]
            lines += [f"Half the crops of that stage are re-sampled through a random similarity (shift up to {j:.0%} of",
                      f"the side, scale 1 +- {j:g}, rotation +- {j:g} rad) so that the score does not hang on exactly",
                      "where the landmarks fell (`train.fit --jitter`)."]
        if m.get("resolution_consistency"):
            lines += [_consistency_line(m["resolution_consistency"], "that stage")]
        lines += [
            "The checkpoint kept is the epoch with the highest validation SRCC plus validation order accuracy",
            "(share of validation photos that outscore a worse copy of themselves, fixed seed).",
        ]
    commands = m.get("commands", [m["command"]])
    if len(commands) > 1:
        lines += ["", f"The shipped weights were made by these {len(commands)} invocations, in order, each later one "
                  "reusing what the earlier ones wrote:", ""]
        lines += [f"{n}. `{c}`" for n, c in enumerate(commands, 1)]
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
    v2 = bool(spec.score_calibration)
    lines += [
        "",
        "## Terms and limits",
        *([f"- **Terms of these weights: {spec.terms}.** facegate's code is MIT-licensed (`LICENSE`); the weights "
           "inherit the terms of what trained them, which are narrower. `facegate info` prints them."]
          if spec.terms else ["- The terms of these weights are not stated in their spec: they are those of the "
                              "photos, recognizer and starting weights that trained them."]),
        *(["- LFW has no formal licence and is for research use; these weights inherit that: research use.",
           *(["- CelebA is for non-commercial research use only; weights trained on it inherit that: "
              "non-commercial research use only."] if v2 else []),
           "- The MobileFaceNet checkpoint (no licence stated) made the labels and is not shipped.",
           "- Quality here means usefulness to *that* recognizer on " + ("LFW- and CelebA-like photos (news, "
           "red-carpet and street photos of mostly adult public figures)." if v2 else "LFW-like photos (news photos "
           "of mostly"),
           *([] if v2 else ["  adult public figures, 250x250, JPEG)."])] if "people" not in m else
          [f"- Trained on the people of `{m['people']}`, labelled by the recognizer named in the command below; "
           "quality here means usefulness to *that* recognizer on photos like those."]),
        "  Other recognizers, cameras and populations can differ: calibrate the threshold on your own captures.",
        (f"- Backbones started from `--pretrained-backbones` files (`train.distill` or the user's own), then "
         f"trained on {m['captures']:,} crops." if m.get("pretrained_backbones") else
         f"- Trained from scratch on {m['captures']:,} crops: no ImageNet pretraining was available here."),
        "",
        f"Machine: {m.get('machine', 'see metrics.json')}.",
    ]
    return "\n".join(lines) + "\n"


def _inputs_v1(m: dict) -> list[str]:
    """Views, data, labels and recipe of the fg-utility-v1 weights (facegate 0.1)."""
    return [
        "",
        "Test-time views: `none` (identity), `flip` (+ horizontal flip), `full` (+ vertical flip,",
        "our reading of the paper's third view; training used both flips so every view is in distribution).",
        "All views of a batch go through a member in one forward pass.",
        "",
        "## Data",
        "LFW deep-funneled (`../shared/data`): the people of pair folds 1-5 (2,086 people) are held out",
        "for evaluation and never used. From the other 3,663 people (7,860 photos) the 906 people with",
        "two or more photos give the training captures: each photo as it is, plus "
        f"{m.get('variants', 2)} copies degraded at random severities (defocus, motion and Gaussian blur,",
        "sensor noise, JPEG, under- and over-exposure, low resolution, partial occlusion; one or two per",
        f"copy). {m['captures']} captures in all; {m['validation_captures']} of them (20% of the people) form the",
        "identity-disjoint validation split.",
        "",
        "## Labels: recognition utility",
        "Computed with the MobileFaceNet in `../shared/models` (CASIA-WebFace, 256-d image+mirror",
        "embedding, cosine similarity). For a capture `c` of person `i`:",
        "",
        "    z(c) = (mean_r cos(c, r) - mean_k cos(c, k)) / std_k cos(c, k)",
        "",
        "with `r` the other clean photos of `i` and `k` every clean photo of the other training people:",
        "how many impostor standard deviations the capture's genuine similarity sits above its",
        "impostors. Label = clip(z / 10, 0, 1). Faces are located by MTCNN on the clean photo;",
        "degradations are applied to the whole photo and the crop is taken with those landmarks",
        "(jittered by 2% of the eye distance for degraded copies), as the gate would crop it.",
        "",
        "## Training",
        f"Command: `{m['command']}`. It labels (here about 21 min: MTCNN on 7,860 photos, then",
        "captures at about 20/s), trains both members in parallel processes (times in the table below),",
        "then measures.",
        f"Recipe: Adam, head lr 5e-4, backbone lr {m.get('lr_backbone', 5e-4):g} (from scratch, so not lower than",
        "the head's), weight decay 1e-4, step decay x0.5 every 5 epochs, batch 64, MSECorrLoss alpha 1,",
        f"progressive stages (size:data share:epochs) `{m['stages']}`, best validation SRCC kept.",
        "Augmentation: horizontal and vertical flips, shifts of up to 4% of the side.",
    ]


def _inputs_v2(spec: ScorerSpec, m: dict) -> list[str]:
    """Views, data, labels and recipe of weights on the fg-utility-v2 scale."""
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
        f"{m.get('variants', 2)} degraded copies: one or two of defocus, motion and Gaussian blur, sensor noise, JPEG",
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
        "",
        "## Training",
        f"Command: `{m['command']}` (labels, then both members in parallel processes, then the scale; an",
        "interrupted run carries on from its last epoch when the same command runs again).",
        f"Recipe: Adam, head lr 5e-4, backbone lr {m.get('lr_backbone', 5e-4):g} "
        + (f"(backbones from {', '.join(f'`{f}`' for f in m['pretrained_backbones'].values())})"
           if m.get("pretrained_backbones") else "(from scratch)") + ", weight decay 1e-4, step",
        "decay x0.5 every 5 epochs, batch 64, MSECorrLoss alpha 1, "
        + ("progressive stages" if "," in m["stages"] else "one stage") + " (size:data share:epochs)",
        f"`{m['stages']}`, best validation SRCC kept. Augmentation: horizontal flips and shifts of up to 4% of",
        "the side (nothing that changes quality)"
        + (f"; half the crops re-sampled through a random similarity of up to {m['jitter']:g} (`train.fit --jitter`)."
           if m.get("jitter") else "."),
        *([_consistency_line(m["consistency"], "phase 1")] if m.get("consistency") else []),
        *([f"In phase 1 and the last stage the pooled features, through the distillation's own (fixed) linear map, are "
           f"kept near the recognizer's embedding of each crop: 1 - cosine enters the loss at weight "
           f"{m['teacher_weight']:g} (`train.fit --teacher-weight`)."] if m.get("teacher_weight") else []),
        *([f"In phase 1 and the last stage the checkpoint validated and kept is a moving average of the weights "
           f"(decay {m['ema']:g} per step, ramped up over the first steps; `train.fit --ema`), not the last step's."]
          if m.get("ema") else []),
        *([f"Phase 1 is trained {m['soup']} times from one start (the same heads on the same backbones; seeds 0-"
           f"{m['soup'] - 1} for batch order and augmentation) and the runs' weights averaged, batch-norm statistics "
           f"measured again on 4,096 training crops (a uniform model soup, `train.soup`)."]
          if (m.get("soup") or 1) > 1 else []),
        *_distilled_lines(m.get("distilled") or {}),
        "How this recipe was chosen (label variants tried, the label-ranking",
        "stage left out), measured on the validation people only: docs/results.md.",
    ]


def _consistency_line(weight: float, where: str) -> str:
    from .fit import CONSISTENCY_PIXELS  # torch only when the card has this line

    return (f"In {where} every batch is scored twice, the second time with each crop moved by "
            f"1-{CONSISTENCY_PIXELS} px (at 128 px); both views "
            f"learn the label and their mean squared difference enters the loss at weight {weight:g} "
            "(`train.fit --consistency`): a score that does not hang on the exact framing.")


def _distilled_lines(distilled: dict) -> list[str]:
    """Phase 0 (train.distill), when the backbones were distilled from a recognizer."""
    if not distilled:
        return []
    lines = ["", "Phase 0 (`train.distill`): each backbone, with a linear map, first trained to reproduce the",
             "teacher's embedding of every training crop (crop and mirror summed, normalised; loss 1 - cosine;",
             "AdamW with a one-cycle schedule; training side of the labels' identity split only):"]
    for arch, r in distilled.items():
        lines.append(f"- {arch}: teacher `{r['teacher']}`, {r['epochs']} epochs at {r['size']} px, peak lr {r['lr']:g}, "
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
