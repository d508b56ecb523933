"""Calibrate the observer quality scorer (``facegate/observer.py``) on LFW training people.

Captures: ``--photos`` photos of distinct LFW training people (seeded; people reserved for
evaluation never enter), each as it is plus one copy degraded by a random kind from
``train/degradations.py`` at a random severity. Landmarks come from MTCNN on the clean
photo and move with the degradation. Pseudo-labels are embedding stability under
perturbations (no identities used); the read-out is chosen and fitted by
:func:`facegate.observer.calibrate` and saved as a small JSON file.

Run: ``python -m train.observer --shared ../shared --out facegate/weights/observer_mobilefacenet_casia.json``
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from facegate.detection import MTCNNDetector, choose_primary
from facegate.images import load_rgb
from facegate.observer import ObserverCalibration, calibrate, pseudo_quality
from facegate.recognition import MobileFaceNetRecognizer

from .degradations import DEGRADATIONS, degrade
from .lfw import training_people


def calibration_captures(
    shared: Path, recognizer: MobileFaceNetRecognizer, photos: int, seed: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Aligned crops ``(2 * found, 112, 96, 3)`` uint8, their photo index ``(2 * found,)``
    (clean and degraded copy share it) and a label per crop (``none`` or the degradation)."""
    rng = np.random.default_rng(seed)
    people = training_people(shared)
    names = [str(n) for n in rng.permutation(sorted(people))]  # one photo per person: no celebrity dominates
    detector = MTCNNDetector(min_face_size=40)  # LFW faces are ~100 px; a coarser pyramid is faster
    kinds = sorted(DEGRADATIONS)
    crops, groups, labels = [], [], []
    for name in names:
        if len(crops) >= 2 * photos:
            break
        path = people[name][int(rng.integers(len(people[name])))]
        rgb = load_rgb(path)
        face = choose_primary(detector.detect(rgb), rgb.shape)
        if face is None:
            continue
        kind = str(rng.choice(kinds))
        degraded, moved = degrade(rgb, face.landmarks, kind, float(rng.uniform()), rng)
        crops += [recognizer.align(rgb, face.landmarks), recognizer.align(degraded, moved)]
        groups += [len(groups) // 2] * 2
        labels += ["none", kind]
    return np.stack(crops), np.array(groups), labels


def print_table(cal: ObserverCalibration) -> None:
    print(f"{'layer':<11} {'pooled':>7} {'norm':>7} {'mean_abs':>9}   (SRCC with pseudo-quality, held-out half)")
    rows: dict[str, dict[str, float | None]] = {}
    for row in cal.candidates:
        rows.setdefault(row["layer"], {})[row["feature"]] = row["srcc"]
    fmt = lambda v: "    nan" if v is None else f"{v:7.3f}"  # noqa: E731
    for layer, cells in rows.items():
        print(f"{layer:<11} {fmt(cells.get('pooled'))} {fmt(cells.get('norm'))}   {fmt(cells.get('mean_abs'))}")
    print(f"chosen: {cal.layer}:{cal.feature} (SRCC {cal.srcc:.3f}, ridge alpha {cal.alpha:.3g})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("facegate/weights/observer_mobilefacenet_casia.json"))
    parser.add_argument("--photos", type=int, default=600, help="clean photos (each also gets one degraded copy)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perturbations", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: SHARED/models/mobilefacenet_casia.ckpt")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    checkpoint = args.checkpoint or args.shared / "models" / "mobilefacenet_casia.ckpt"
    recognizer = MobileFaceNetRecognizer(str(checkpoint), batch_size=16)  # small batches are faster on 1 core
    t0 = time.time()
    crops, groups, labels = calibration_captures(args.shared, recognizer, args.photos, args.seed)
    t1 = time.time()
    print(f"{len(crops)} captures from {len(crops) // 2} photos of LFW training people ({t1 - t0:.0f} s)", flush=True)
    pseudo = pseudo_quality(recognizer, crops, args.perturbations, args.seed)
    t2 = time.time()
    labels_arr = np.array(labels)
    print(f"pseudo-quality ({args.perturbations} perturbations, {t2 - t1:.0f} s): "
          f"clean median {np.median(pseudo[labels_arr == 'none']):.3f}, "
          f"degraded median {np.median(pseudo[labels_arr != 'none']):.3f}", flush=True)
    for kind in sorted(DEGRADATIONS):
        sel = labels_arr == kind
        if sel.any():
            print(f"  {kind:<15} n={sel.sum():3d} median {np.median(pseudo[sel]):.3f}")
    cal = calibrate(
        recognizer, crops, pseudo, args.seed, groups=groups,
        recognizer_name=checkpoint.stem, perturbations=args.perturbations,
    )
    t3 = time.time()
    notes = dict(cal.notes)
    notes.update({
        "checkpoint_sha256": hashlib.sha256(checkpoint.read_bytes()).hexdigest(),
        "photos": int(len(crops) // 2),
        "seconds_captures": round(t1 - t0, 1),
        "seconds_pseudo_labels": round(t2 - t1, 1),
        "seconds_calibration": round(t3 - t2, 1),
        "threads": args.threads,
        "command": f"python -m train.observer --photos {args.photos} --seed {args.seed} "
                   f"--perturbations {args.perturbations}",
    })
    cal = dataclasses.replace(cal, notes=notes)
    print_table(cal)
    cal.save(args.out)
    print(f"wrote {args.out}; captures {t1 - t0:.0f} s, pseudo-labels {t2 - t1:.0f} s, "
          f"calibration {t3 - t2:.0f} s, total {t3 - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
