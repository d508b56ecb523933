"""Recognition-utility labels for training the quality models (in the spirit of FROQ,
arXiv 2509.17689: quality is what a real recognizer can do with the capture).

Who: the LFW training people (folds 1-5 held out) and the CelebA training identities
(numbers not divisible by 5), as identities ``lfw/<name>`` and ``celeba/<number>``.

Captures: every photo of a person with a good reference besides it, as it is, and
``variants`` copies degraded at random (``train/degradations.py``, including the
training-only turned photos and JPEG quality 1-5); ``train.release --accessory-copies``
adds copies wearing sunglasses, a cap, hair or a hand (``build(..., only="accessory")``).
Every capture goes through facegate's capture stage as inference does (detection,
look-again, alignment onto the spec's crop): a copy in which no face is found is no
training sample, the gate rejects it anyway.

Label of a capture ``c`` of identity ``i`` (the recognizer: MobileFaceNet, image and mirror):

    match(c) = mean over good references r of i (not c's own photo) of
               sigmoid((cos(e_c, e_r) - T) / TAU)

with ``T`` the recognizer's cosine threshold at FMR 1e-3 (impostor pairs of clean training
photos) and TAU a soft step. It is the chance that a genuine comparison with a good
reference succeeds, the quantity the score scale fg-utility-v2 is calibrated to. Why
*good* references: a capture should not be blamed for its partner's flaws, so a reference
counts when it matches at least half of its identity's other photos itself (it is then a
photo the recognizer reads well). Why soft: with LFW's two or three photos a person a hard
0/1 would be a coin flip near the threshold; the step keeps the ordering of near misses.

Also recorded: the mean genuine cosine, the older z (genuine mean in units of the capture's
impostor spread), the hard match rate and the observer's score, so other targets can be
chosen at fitting time (``train.fit --target``).

Run: ``python -m train.labels --shared ../shared --out runs/labels``
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from facegate.capture import CaptureSettings, CaptureStage
from facegate.images import load_rgb
from facegate.observer import ObserverScorer, default_calibration_path
from facegate.recognition import MobileFaceNetRecognizer
from facegate.scale import good_references
from facegate.spec import ScorerSpec

from . import celeba, lfw
from .degradations import DEGRADATIONS, degrade
from .recipe import SHIPPED

#: Soft step of the match label, in cosine units (about half the impostor spread).
TAU = 0.04
#: False-match rate the label's threshold is set at.
FMR = 1e-3
#: Share of degraded copies that are a turned photo, and that are JPEG quality 1-5.
#: (Copies wearing an accessory are labelled apart: ``build(..., only="accessory")``.)
ROTATION_SHARE, JPEG_EXTREME_SHARE = 0.12, 0.06

CSV_FIELDS = [
    "path", "score", "identity", "source", "degradation", "severity", "match", "match_hard",
    "genuine", "z", "observer", "references", "found_by",
]


#: Identities from a user's own folder (``--people``) are named ``own/<sub-folder>``.
OWN_PREFIX = "own/"


def own_people(folder: Path) -> dict[str, list[Path]]:
    """A folder of one sub-folder per person (``train.release --people``) as identities with
    their photos (sidecar files left out); people with one photo are kept as impostors and
    references for others but cannot be labelled (a label needs another photo of them)."""
    from facegate.folder import find_images, split_sidecars

    folder = Path(folder)
    if not folder.is_dir():
        raise SystemExit(f"error: --people {folder}: not a folder")
    people = {}
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        photos, _ = split_sidecars(find_images(person))
        if photos:
            people[OWN_PREFIX + person.name] = sorted(photos)
    if sum(len(p) >= 2 for p in people.values()) < 2:
        raise SystemExit(f"error: --people {folder}: needs at least two sub-folders (people) with two or more "
                         "photos each; found " + (f"{len(people)} with photos" if people else "none"))
    return people


def training_identities(shared: Path, people_dir: Path | None = None) -> dict[str, list[Path]]:
    """Every identity that may be trained on, with its photos: LFW's training people and
    CelebA's training identities, or the people of ``people_dir`` (:func:`own_people`)."""
    if people_dir is not None:
        return own_people(people_dir)
    people = {f"lfw/{name}": photos for name, photos in lfw.training_people(shared).items()}
    people.update({f"celeba/{name}": photos for name, photos in celeba.identities(shared, evaluation=False).items()})
    return people


def detect_photos(paths: list[Path], cache: Path, stage: CaptureStage) -> dict[str, np.ndarray]:
    """Primary-face landmarks of each photo from the capture stage (as inference finds them),
    cached as JSON; a cache made with other detector settings is redone."""
    settings = {"detector": stage.detector_name, **stage.detector_settings, "look_again": stage.look_again}
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    found: dict[str, list] = cached.get("faces", {}) if cached.get("settings") == settings else {}
    todo = [p for p in paths if str(p) not in found]
    t0 = time.time()
    for n, path in enumerate(todo, 1):
        primary = stage.analyse(path).primary
        found[str(path)] = None if primary is None else primary.landmarks.tolist()
        if n % 1000 == 0 or n == len(todo):
            print(f"  detected {n}/{len(todo)} ({n / (time.time() - t0):.0f}/s)", flush=True)
            cache.write_text(json.dumps({"settings": settings, "faces": found}))
    return {k: np.array(v) for k, v in found.items() if v is not None}


def fmr_threshold(emb: np.ndarray, identity: np.ndarray, fmr: float = FMR) -> float:
    """Cosine threshold at ``fmr`` over every pair of different identities."""
    values = []
    for start in range(0, len(emb), 2048):
        sims = emb[start : start + 2048] @ emb.T
        rows = np.arange(start, min(start + 2048, len(emb)))[:, None]
        upper = np.arange(len(emb))[None, :] > rows
        values.append(sims[upper & (identity[rows[:, 0]][:, None] != identity[None, :])].astype(np.float32))
    return float(np.quantile(np.concatenate(values), 1.0 - fmr))


def soft_match(cosines: np.ndarray, threshold: float, tau: float = TAU) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(np.asarray(cosines, dtype=np.float64) - threshold) / tau))


def draw_degradation(rng: np.random.Generator) -> list[tuple[str, float]]:
    """One degraded copy's recipe: a turned photo, extreme JPEG, or one or two of
    :data:`DEGRADATIONS` at random severities."""
    u = rng.uniform()
    if u < ROTATION_SHARE:
        return [("rotation", float(rng.uniform()))]
    if u < ROTATION_SHARE + JPEG_EXTREME_SHARE:
        return [("jpeg_extreme", float(rng.uniform()))]
    kinds = sorted(DEGRADATIONS)
    count = 1 if rng.uniform() < 0.7 else 2
    return [(str(k), float(rng.uniform())) for k in rng.choice(kinds, size=count, replace=False)]


def build(shared: Path, out: Path, *, variants: int, seed: int, limit_people: int | None = None,
          checkpoint: Path | None = None, spec: ScorerSpec | None = None, only: str | None = None,
          people_dir: Path | None = None) -> Path:
    """Write ``labels.csv`` and its crops into ``out``; crops and detections follow ``spec``
    (default: the shipped recipe's, :data:`train.recipe.SHIPPED`), so labels see the faces inference will see.

    ``people_dir``: label the people of this folder (:func:`own_people`) instead of LFW and
    CelebA; ``checkpoint``: the MobileFaceNet-architecture recognizer that judges the captures
    (default: the shared one). The observer column is calibrated for the shared checkpoint.

    ``only``: a degradation kind; label ``variants`` copies of that kind per photo and no
    clean captures, and add them to the ``labels.csv`` already in ``out`` in place of its
    earlier rows of that kind (same photos, threshold and references: its cached detections
    are reused). For adding one kind of copy without labelling everything again."""
    if only and not (out / "labels.csv").is_file():
        raise FileNotFoundError(f"{out / 'labels.csv'}: no labels to add {only} copies to (label without --only first)")
    out.mkdir(parents=True, exist_ok=True)
    (out / "crops").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    spec = spec or SHIPPED.weights_spec()
    # no orientation stage: the labelled photos are upright, and the labels (and so the shipped
    # weights' reproduction) must not hang on a helper trained on these very photos
    stage = CaptureStage(spec, CaptureSettings(components=False, orientation=False))
    people = training_identities(shared, people_dir)
    if limit_people:
        names = sorted(people)
        keep = set(rng.choice(names, size=min(limit_people, len(names)), replace=False))
        people = {n: p for n, p in people.items() if n in keep}
    photos = [p for ps in people.values() for p in ps]
    identity_of = {str(p): name for name, ps in people.items() for p in ps}
    print(f"{len(people)} training identities, {len(photos)} photos", flush=True)

    landmarks = detect_photos(photos, out / "detections.json", stage)
    print(f"faces found in {len(landmarks)}/{len(photos)} photos", flush=True)

    recognizer = MobileFaceNetRecognizer(str(checkpoint or shared / "models" / "mobilefacenet_casia.ckpt"))
    observer = ObserverScorer(recognizer, default_calibration_path())
    ref_paths = [p for p in photos if str(p) in landmarks]
    ref_ident = np.array([identity_of[str(p)] for p in ref_paths])
    ref_index = {str(p): i for i, p in enumerate(ref_paths)}
    ref_emb, threshold, good = _references(recognizer, ref_paths, ref_ident, landmarks, out)

    rows, skipped = [], 0
    t0 = time.time()
    for n, photo in enumerate(ref_paths, 1):
        name, own = identity_of[str(photo)], ref_index[str(photo)]
        refs = np.flatnonzero((ref_ident == name) & good)
        refs = refs[refs != own]
        if not len(refs):
            continue
        captures, missed = _captures(photo, landmarks[str(photo)], variants, only, rng, stage)
        skipped += missed
        if not captures:
            continue
        aligned = np.stack([recognizer.align(img, lm) for _, _, img, lm, _, _ in captures])
        emb = recognizer.embed_aligned(aligned)
        observed = observer.score_aligned(aligned)
        sims = emb @ ref_emb.T
        impostor = ref_ident != name
        for k, ((kind, severity, _, _, crop, found_by), s, obs) in enumerate(zip(captures, sims, observed)):
            rel = f"crops/{photo.parent.name}_{photo.stem}_{only + '_' if only else ''}{k}.png"
            cv2.imwrite(str(out / rel), crop[..., ::-1])
            genuine = s[refs]
            imp = s[impostor]
            rows.append({
                "path": rel, "score": 0.0, "identity": name, "source": str(photo), "degradation": kind,
                "severity": round(severity, 4), "match": round(float(soft_match(genuine, threshold).mean()), 5),
                "match_hard": round(float(np.mean(genuine >= threshold)), 5),
                "genuine": round(float(genuine.mean()), 5),
                "z": round(float((genuine.mean() - imp.mean()) / (imp.std() + 1e-6)), 4),
                "observer": round(float(obs), 5), "references": len(refs), "found_by": found_by,
            })
        if n % 500 == 0:
            print(f"  labelled {n}/{len(ref_paths)} photos, {len(rows)} captures "
                  f"({len(rows) / (time.time() - t0):.1f}/s)", flush=True)

    return _write(out, rows, only, skipped)


def _references(recognizer, paths: list[Path], identities: np.ndarray, landmarks: dict, out: Path) -> tuple:
    """The clean photos' embeddings, the cosine threshold at :data:`FMR` over their impostor
    comparisons, and which of them are good references (written to ``threshold.json``)."""
    emb = recognizer.embed_aligned(np.stack([recognizer.align(load_rgb(p), landmarks[str(p)]) for p in paths]))
    threshold = fmr_threshold(emb, identities)
    good = good_references(emb, identities, threshold)
    print(f"embedded {len(emb)} clean photos; cosine threshold at FMR {FMR:g}: {threshold:.4f}; "
          f"{good.sum()} good references", flush=True)
    (out / "threshold.json").write_text(json.dumps({"fmr": FMR, "cosine": threshold, "tau": TAU,
                                                    "good_references": int(good.sum())}) + "\n")
    return emb, threshold, good


def _captures(photo: Path, landmarks: np.ndarray, variants: int, only: str | None, rng: np.random.Generator,
              stage: CaptureStage) -> tuple[list[tuple], int]:
    """The photo as it is (unless ``only``) and ``variants`` degraded copies of it, each found
    again by the capture stage as inference would: (kind, severity, image, landmarks, crop,
    found_by) per capture, and the number of copies in which no face was found."""
    rgb = load_rgb(photo)
    captures = [] if only else [("none", 0.0, rgb, landmarks, stage.spec.crop(rgb, landmarks), "")]
    missed = 0
    for k in range(variants):
        img, lm = rgb, landmarks
        recipe = [(only, float(rng.uniform()))] if only else draw_degradation(rng)
        for kind, severity in recipe:
            img, lm = degrade(img, lm, kind, severity, rng)
        found = stage.analyse_rgb(img, source=f"{photo} copy {k}")
        if found.primary is None:
            missed += 1
            continue
        captures.append(("+".join(kind for kind, _ in recipe), max(s for _, s in recipe), img,
                         found.primary.landmarks, found.crop, found.found_by or ""))
    return captures, missed


def _write(out: Path, rows: list[dict], only: str | None, skipped: int) -> Path:
    """``labels.csv`` written whole, then moved into place (with ``only``: in place of the
    earlier rows of that kind)."""
    for row in rows:
        row["score"] = row["match"]
    csv_path = out / "labels.csv"
    if only:
        with csv_path.open(newline="") as fh:
            earlier = [r for r in csv.DictReader(fh) if r["degradation"] != only]
        rows = earlier + rows
    partial = csv_path.with_suffix(".csv.partial")
    with partial.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(csv_path)
    match = np.array([float(r["match"]) for r in rows])
    clean = np.array([r["degradation"] == "none" for r in rows])
    print(f"wrote {len(rows)} captures to {csv_path} ({skipped} degraded copies without a face left out); "
          f"match clean mean {match[clean].mean():.3f}, degraded mean {match[~clean].mean():.3f}", flush=True)
    return csv_path


def degradations(csv_path: Path) -> set[str]:
    """The degradation kinds a labels CSV holds (``none`` for the photos as they are)."""
    with Path(csv_path).open(newline="") as fh:
        return {row["degradation"] for row in csv.DictReader(fh)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("runs/labels"))
    parser.add_argument("--weights", type=Path, default=None,
                        help="crops and detector settings of this weights folder's spec (default: the shipped recipe's)")
    parser.add_argument("--variants", type=int, default=2, help="degraded copies per photo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, metavar="KIND",
                        help="label only copies of this degradation kind and add them to OUT/labels.csv "
                             "(replacing earlier rows of that kind)")
    parser.add_argument("--limit-people", type=int, default=None, help="label a random subset (for trials)")
    parser.add_argument("--people", type=Path, default=None, metavar="DIR",
                        help="label these people (one sub-folder each) instead of LFW's and CelebA's training people")
    parser.add_argument("--recognizer", type=Path, default=None,
                        help="MobileFaceNet checkpoint that judges the captures (default: SHARED/models/mobilefacenet_casia.ckpt)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = ScorerSpec.load(args.weights / "spec.json") if args.weights else None
    build(args.shared, args.out, variants=args.variants, seed=args.seed, limit_people=args.limit_people, spec=spec,
          only=args.only, people_dir=args.people, checkpoint=args.recognizer)


if __name__ == "__main__":
    main()
