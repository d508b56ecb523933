"""Are the gate's verdicts right on real photos? Orientation, occlusion, the main face, missed faces.

On the evaluation people only (LFW folds 1-5 and the CelebA evaluation identities; no helper
or weights were trained on them), through the whole gate as a user runs it:

- turned copies (90, 180, 270 degrees clockwise to fix): the share never accepted, and the
  share named ``rotated`` with the turn that fixes it; upright photos named ``rotated``;
- occluded copies, drawn in the photo from the detected landmarks with occluders of this
  study's own (not the occlusion helper's training generator): an opaque band over both eyes,
  sunglasses, a skin-coloured patch over nose and mouth (the face's own skin tone), a mask;
  the share with an occlusion reason under ``--profile enrollment`` (and verification), the
  share whose score drops; unoccluded photos with an occlusion reason;
- natural occlusions labelled by hand in the evaluation photos
  (``natural_occlusions.txt`` beside this file);
- composites with a smaller bystander pasted at the frame's edge: the main person kept, and
  the decision;
- ``no_face`` photos in which the other detector (YuNet) finds a face.

    python -m train.studies.decisions --shared ../shared --photos 300 --out docs/decisions.md
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from facegate import Gate
from facegate.images import load_rgb

from ..degradations import _face_frame, _points

__all__ = ["evaluation_photos", "eyes_band", "sunglasses", "skin_patch", "face_mask", "with_bystander", "main"]

OCCLUSION_REASONS = ("eyes_covered", "mouth_covered", "face_occluded")
NATURAL = Path(__file__).with_name("natural_occlusions.txt")
#: The labelled photos' folders in SHARED/data, and the names the figures give them.
SOURCES = {"lfw-deepfunneled/": "LFW", "celeba-subset/": "CelebA"}


def evaluation_photos(shared: Path, per_set: int, seed: int = 0) -> list[Path]:
    """Up to ``per_set`` LFW photos (one per evaluation person) and ``per_set`` CelebA
    evaluation photos, drawn at random (seeded)."""
    from train.celeba import identities
    from train.lfw import evaluation_people

    rng = np.random.default_rng(seed)
    lfw_dir = shared / "data" / "lfw-deepfunneled"
    people = rng.permutation(sorted(evaluation_people(shared)))[:per_set]
    lfw = [sorted((lfw_dir / p).glob("*.jpg"))[0] for p in people]
    celeba = [p for photos in identities(shared, evaluation=True).values() for p in photos]
    return lfw + [celeba[i] for i in sorted(rng.permutation(len(celeba))[:per_set])]


# -- occluders of this study's own, drawn in the photo ---------------------------------------------
def eyes_band(rgb, landmarks, rng):
    """An opaque band over both eyes (a dark or coloured strip, a bar of sunglasses)."""
    eyes, right, down, ied = _face_frame(landmarks)
    h = rng.uniform(0.25, 0.4)
    w = rng.uniform(0.9, 1.2)
    out = rgb.copy()
    colour = tuple(int(c) for c in (rng.integers(0, 60, 3) if rng.random() < 0.7 else rng.integers(0, 256, 3)))
    cv2.fillConvexPoly(out, _points(eyes, right, down, ied, [(-w, -h), (w, -h), (w, h), (-w, h)]), colour, cv2.LINE_AA)
    return out


def sunglasses(rgb, landmarks, rng):
    """Two dark lenses and a bridge."""
    eyes, right, down, ied = _face_frame(landmarks)
    out = rgb.copy()
    colour = tuple(int(c) for c in rng.integers(5, 70, 3))
    angle = math.degrees(math.atan2(right[1], right[0]))
    for p in landmarks[:2]:
        cv2.ellipse(out, tuple(int(v) for v in p), (int(0.38 * ied), int(0.27 * ied)), angle, 0, 360, colour, -1,
                    cv2.LINE_AA)
    cv2.line(out, tuple(landmarks[0].astype(int)), tuple(landmarks[1].astype(int)), colour, max(1, int(0.07 * ied)))
    return out


def _skin(rgb, landmarks):
    """The face's own skin tone: the median of two cheek patches."""
    eyes, right, down, ied = _face_frame(landmarks)
    mouth = landmarks[3:].mean(0)
    samples = []
    for side in (-1, 1):
        c = (eyes + mouth) / 2 + side * 0.5 * ied * right
        r = max(1, int(0.12 * ied))
        x, y = int(c[0]), int(c[1])
        patch = rgb[max(0, y - r):y + r, max(0, x - r):x + r].reshape(-1, 3)
        if len(patch):
            samples.append(patch)
    return np.median(np.concatenate(samples), 0) if samples else np.array([180, 140, 120])


def skin_patch(rgb, landmarks, rng):
    """A patch of the face's own skin tone over nose and mouth (a hand)."""
    eyes, right, down, ied = _face_frame(landmarks)
    out = rgb.copy()
    colour = tuple(int(c) for c in np.clip(_skin(rgb, landmarks) * rng.uniform(0.9, 1.1), 0, 255))
    top, bottom, half = rng.uniform(0.45, 0.6), rng.uniform(1.45, 1.8), rng.uniform(0.65, 0.85)
    if rng.random() < 0.5:
        cv2.fillConvexPoly(out, _points(eyes, right, down, ied, [(-half, top), (half, top), (half, bottom), (-half, bottom)]),
                           colour, cv2.LINE_AA)
    else:
        c = _points(eyes, right, down, ied, [(0, (top + bottom) / 2)])[0]
        angle = math.degrees(math.atan2(right[1], right[0]))
        cv2.ellipse(out, tuple(int(v) for v in c), (int(half * ied), int((bottom - top) / 2 * ied)), angle, 0, 360,
                    colour, -1, cv2.LINE_AA)
    return out


def face_mask(rgb, landmarks, rng):
    """A mask over nose, mouth and chin (white, light blue or black)."""
    eyes, right, down, ied = _face_frame(landmarks)
    out = rgb.copy()
    colour = [(230, 230, 230), (150, 190, 220), (30, 30, 35)][rng.integers(3)]
    top = rng.uniform(0.45, 0.6)
    cv2.fillPoly(out, [_points(eyes, right, down, ied, [(-0.85, top), (0, top - 0.1), (0.85, top), (0.75, 1.5),
                                                        (0, 1.9), (-0.75, 1.5)])], colour, cv2.LINE_AA)
    return out


OCCLUDED = {"eyes": (eyes_band, sunglasses), "mouth": (skin_patch, face_mask)}


def with_bystander(rgb, face, other_rgb, other_face, rng):
    """``rgb`` with a smaller face (25-40% of the main face's side, from ``other_rgb``) pasted
    at a random edge of the frame, partly outside it or just inside."""
    x1, y1, x2, y2 = other_face.box
    side = max(x2 - x1, y2 - y1) * 1.4
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    patch = other_rgb[max(0, int(cy - side / 2)):int(cy + side / 2), max(0, int(cx - side / 2)):int(cx + side / 2)]
    target = max(8, int(max(face.box[2] - face.box[0], face.box[3] - face.box[1]) * 1.4 * rng.uniform(0.25, 0.4)))
    patch = cv2.resize(patch, (target, target), interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    out = rgb.copy()
    edge = rng.integers(4)
    shift = int(target * rng.uniform(0.0, 0.3))  # up to 30% outside the frame
    pos = rng.integers(0, max(1, (w if edge in (0, 1) else h) - target))
    x = {0: pos, 1: pos, 2: -shift, 3: w - target + shift}[edge]
    y = {0: -shift, 1: h - target + shift, 2: pos, 3: pos}[edge]
    xs, ys = max(0, x), max(0, y)
    xe, ye = min(w, x + target), min(h, y + target)
    out[ys:ye, xs:xe] = patch[ys - y:ye - y, xs - x:xe - x]
    return out


# -- the measurements ------------------------------------------------------------------------------
def _iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _values(result) -> dict:
    """The occlusion components' values of a result (None where not measured)."""
    c = result.components
    return {n: None if c is None or n not in c else c.value(n) for n in ("eyes_visible", "mouth_visible", "face_visible")}


def _turn_named(result) -> int | None:
    if "rotated" not in result.reasons or not result.found_by or not result.found_by.startswith("turned"):
        return None
    return int(result.found_by.split()[-1])


def measure(shared: Path, photos: list[Path], seed: int = 0, log=print) -> dict:
    gate, enrol = Gate(), Gate(profile="enrollment")
    from facegate.capture import CaptureSettings, CaptureStage

    yunet = CaptureStage(settings=CaptureSettings(detector="yunet", components=False))
    rng = np.random.default_rng(seed)
    rows, found = [], []
    t0 = time.time()
    for n, path in enumerate(photos):
        rgb = load_rgb(path)
        base = gate.assess(rgb, color_order="rgb")
        row = {"photo": str(path.relative_to(shared / "data")), "status": base.status.value,
               "rotated": "rotated" in base.reasons}
        if base.face is None:
            other = yunet.analyse_rgb(rgb)
            row["other_detector_face"] = other.primary is not None and \
                other.primary.probability >= yunet.min_face_probability
            rows.append(row)
            continue
        found.append((rgb, base.face))
        base_enrol = enrol.assess(rgb, color_order="rgb")
        row["score"] = base.score
        row["occlusion"] = _values(base)
        row["enrol_occlusion"] = [r for r in base_enrol.reasons if r in OCCLUSION_REASONS]
        row["verif_occlusion"] = [r for r in base.reasons if r in OCCLUSION_REASONS]
        for k, turn in ((1, 90), (2, 180), (3, 270)):
            turned = gate.assess(np.ascontiguousarray(np.rot90(rgb, k=k)), color_order="rgb")
            row[f"turned_{turn}"] = {"accepted": turned.status.value == "accepted", "named": _turn_named(turned)}
        for region, drawers in OCCLUDED.items():
            for draw in drawers:
                copy = draw(rgb, base.face.landmarks, rng)
                e, v = enrol.assess(copy, color_order="rgb"), gate.assess(copy, color_order="rgb")
                row[f"{region}:{draw.__name__}"] = {
                    "enrol": [r for r in e.reasons if r in OCCLUSION_REASONS],
                    "verif": [r for r in v.reasons if r in OCCLUSION_REASONS],
                    "accepted": v.status.value == "accepted",
                    "drop": None if v.score is None else base.score - v.score, "face": v.face is not None,
                    "values": _values(v)}
        rows.append(row)
        if (n + 1) % 50 == 0:
            log(f"  {n + 1}/{len(photos)} photos ({time.time() - t0:.0f} s)")
    # bystanders: each photo with a face gets another one's face pasted at an edge
    for i, row in enumerate(r for r in rows if "score" in r):
        rgb, face = found[i]
        other_rgb, other_face = found[(i + 1) % len(found)]
        base = gate.assess(rgb, color_order="rgb")
        copy = with_bystander(rgb, face, other_rgb, other_face, rng)
        after = gate.assess(copy, color_order="rgb")
        row["bystander"] = {"kept": after.face is not None and _iou(after.face.box, face.box) >= 0.5,
                            "same_decision": after.status == base.status and set(after.reasons) == set(base.reasons),
                            "before": [base.status.value, *base.reasons], "after": [after.status.value, *after.reasons]}
    return {"rows": rows, "seconds": round(time.time() - t0, 1)}


def natural(shared: Path) -> list[dict]:
    """The hand-labelled natural occlusions through the enrollment gate."""
    if not NATURAL.exists():
        return []
    enrol = Gate(profile="enrollment")
    out = []
    for line in NATURAL.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        path, kind = line.split()[:2]
        r = enrol.assess(shared / "data" / path)
        out.append({"photo": path, "kind": kind, "status": r.status.value,
                    "named": [x for x in r.reasons if x in OCCLUSION_REASONS]})
    return out


def _share(values) -> str:
    values = list(values)
    if not values:
        return "n/a"
    k = sum(bool(v) for v in values)
    return f"{k / len(values):.1%} ({k}/{len(values)})"


def summarise(result: dict, labelled: list[dict]) -> dict:
    rows = result["rows"]
    faced = [r for r in rows if "score" in r]
    out = {"photos": len(rows), "with_face": len(faced),
           "upright_named_rotated": _share(r["rotated"] for r in rows)}
    for turn in (90, 180, 270):
        out[f"turned_{turn}_never_accepted"] = _share(not r[f"turned_{turn}"]["accepted"] for r in faced)
        out[f"turned_{turn}_right_turn"] = _share(r[f"turned_{turn}"]["named"] == turn for r in faced)
    out["unoccluded_named_enrollment"] = _share(bool(r["enrol_occlusion"]) for r in faced)
    out["unoccluded_named_verification"] = _share(bool(r["verif_occlusion"]) for r in faced)
    for region, drawers in OCCLUDED.items():
        keys = [f"{region}:{d.__name__}" for d in drawers]
        copies = [r[k] for r in faced for k in keys]
        out[f"{region}_covered_named_enrollment"] = _share(bool(c["enrol"]) for c in copies)
        out[f"{region}_covered_named_verification"] = _share(bool(c["verif"]) for c in copies)
        out[f"{region}_covered_score_drops"] = _share(c["drop"] is None or c["drop"] > 0 for c in copies)
        out[f"{region}_covered_accepted_verification"] = _share(c["accepted"] for c in copies)
        for k in keys:
            out[f"{k}_named_enrollment"] = _share(bool(r[k]["enrol"]) for r in faced)
    out["bystander_main_face_kept"] = _share(r["bystander"]["kept"] for r in faced)
    out["bystander_same_decision"] = _share(r["bystander"]["same_decision"] for r in faced)
    no_face = [r for r in rows if "score" not in r]
    out["no_face"] = _share(True for _ in no_face)
    out["no_face_other_detector_finds_one"] = f"{sum(r.get('other_detector_face', False) for r in no_face)}/{len(rows)}"
    if labelled:
        wanted = {"eyes": {"eyes_covered"}, "mouth": {"mouth_covered", "face_occluded"}}
        for kind, reasons in wanted.items():
            out[f"natural_{kind}_covered_named_enrollment"] = _share(
                bool(reasons & set(r["named"])) for r in labelled if r["kind"] == kind)
            for source, name in SOURCES.items():
                out[f"natural_{kind}_covered_named_enrollment ({name})"] = _share(
                    bool(reasons & set(r["named"])) for r in labelled if r["kind"] == kind and r["photo"].startswith(source))
        out["natural_occlusions_named_enrollment"] = _share(bool(r["named"]) for r in labelled if r["kind"] in wanted)
        # an occluder at the mouth that leaves the lips in sight: reported, neither target nor error
        out["natural_mouth_partly_named_enrollment"] = _share(
            bool(wanted["mouth"] & set(r["named"])) for r in labelled if r["kind"] == "mouth_partly")
    return out


DOC_HEAD = """# Decisions on real photos: orientation, occlusion, the main face, missed faces

What the gate says about turned, occluded and crowded photos, measured on the evaluation
people only (LFW folds 1-5, CelebA evaluation identities): neither helper network nor the
quality weights saw them. {how}

## How each decision is made (and why)

- **Orientation** (`facegate/orientation.py`): a MobileNetV3-Small (the ImageNet start of
  `train.imagenet`, 96 px, the whole photo squashed) trained by `python -m train.orientation`
  to say which turn makes the photo upright, on the training people's photos turned at random,
  a third of them with the head alone tilted 20-70 degrees so that a tilted head is not a
  turned photo. A turn is called when its probability reaches the threshold chosen on the
  validation people (upright photos called turned at most 0.5% of the time there). The gate
  then searches and assesses the upright copy, and rejects the photo as `rotated` with the
  turn that fixes it. When the network is unsure and no face is found upright, the look
  again tries the turned copies, likelier turns first; a face found so in a photo the
  network holds upright (p >= 0.5) is a tilted head (`found_by` "tilted"), not a turned photo.
  Why a network and not the face's roll: an upside-down face makes MTCNN place
  upright-looking landmarks (roll near 0) on it, and a person lying down has a roll of 90
  degrees in an upright photo; the photo, not the face, says which way is up.
- **Occlusion** (`facegate/occlusion.py`, components `eyes_visible`, `mouth_visible`,
  `face_visible`): a MobileNetV3-Small at 64 px on the 112 px template crop the components
  already make, regressing the uncovered share of the eye regions, of the nose-and-mouth region
  and of the face, trained by `python -m train.occlusion` on the training people's clean crops
  with occluders drawn on them (sunglasses, masks and scarves, hands in the person's own skin,
  microphones and other photos' objects, hair), whose masks give the exact shares; every crop
  may also be darkened, brightened, blurred, noisy or grey, so light and focus are not read as
  occlusion; a second round leaves out the training crops a first round calls covered (their
  own sunglasses and hands); and training photos picked by eye from every training crop,
  with real sunglasses, with real hands, microphones or glasses over the mouth, and with
  clear glasses in thick dark frames ({training}), are taught with their own targets (the
  clear glasses as uncovered, so a dark frame is not read as a dark lens). Why a model and not landmark-region statistics: a hand in the
  person's own skin tone over the mouth leaves colour statistics unchanged, and dark
  sunglasses look like shadowed eyes; the drawn masks give exact targets for every kind.
  The occluders measured below are this study's own (a band, lenses, a skin-toned patch, a
  mask), drawn in the photo, not the training generator's. Natural occlusions: every
  evaluation photo labelled by eye (`train/studies/natural_occlusions.txt`: {natural}):
  eyes behind sunglasses (`eyes`), nose and mouth behind a hand, a microphone, a glove or a
  drink (`mouth`), and an occluder at the mouth that leaves the lips in sight
  (`mouth_partly`: a microphone below them, a cigarette, a finger; reported apart, neither
  covered nor uncovered).
- **Main face** (`facegate/detection.py`): faces the detector is sure of before unsure ones,
  faces mostly inside the frame before bystanders cut by its edge, then the most central of
  the nearly largest; overlapping boxes of one face merged.
- **Missed faces**: the last look asks the other shipped detector (YuNet when MTCNN found
  nothing), its face held to YuNet's own confidence cut-off.

## Figures

| measure | value |
|---|---|
"""


def _labelled_counts(labelled: list[dict]) -> str:
    """``'LFW: 43 eyes, 10 mouth, ...; CelebA: ...'`` from the labelled rows."""
    parts = []
    for source, name in SOURCES.items():
        mine = [r["kind"] for r in labelled if r["photo"].startswith(source)]
        kinds = ", ".join(f"{mine.count(k)} {k}" for k in ("eyes", "mouth", "mouth_partly"))
        parts.append(f"{name} {kinds}")
    return "; ".join(parts)


def _training_counts() -> str:
    """How many training photos each of train.occlusion's hand-picked lists holds."""
    from train.occlusion import NATURAL, natural_photos

    return ", ".join(f"{len(natural_photos(kind))} {kind.replace('_', ' ')}" for kind in NATURAL)


def write_doc(path: Path, summary: dict, seconds: float, photos: int, labelled: list[dict] = ()) -> None:
    how = (f"Command: `python -m train.studies.decisions --shared ../shared --photos {photos} --out "
           f"docs/decisions.md` ({photos} photos per set; {seconds / 60:.0f} min on {platform.machine()}, "
           f"{__import__('os').cpu_count()} cores). Rates are of photos with a face found "
           "(occluded and turned copies) or of all photos (upright named rotated, no_face).")
    lines = [DOC_HEAD.format(how=how, natural=_labelled_counts(list(labelled)), training=_training_counts())] + [f"| {k} | {v} |" for k, v in summary.items()]
    path.write_text("".join(lines[:1]) + "\n".join(lines[1:]) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--photos", type=int, default=300, help="photos per set (LFW, CelebA)")
    parser.add_argument("--json", type=Path, default=None, help="write every row here")
    parser.add_argument("--from-json", type=Path, default=None, help="summarise an earlier run's --json")
    parser.add_argument("--out", type=Path, default=None, help="write the summary as markdown here")
    args = parser.parse_args(argv)
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        result = measure(args.shared, evaluation_photos(args.shared, args.photos))
    labelled = natural(args.shared)
    summary = summarise(result, labelled)
    print(json.dumps(summary, indent=1))
    if args.json and not args.from_json:
        args.json.write_text(json.dumps({**result, "natural": labelled, "summary": summary}, indent=1))
    if args.out:
        write_doc(args.out, summary, result["seconds"], args.photos, labelled)


if __name__ == "__main__":
    main()
