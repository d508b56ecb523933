"""Recognition-utility labels for training the quality models (in the spirit of FROQ,
arXiv 2509.17689: quality is what a real recognizer can do with the capture).

For every photo of a training person with two or more photos we make captures: the photo
as it is, and copies degraded at random severities (``train/degradations.py``). The label
of a capture ``c`` of person ``i`` is

    z(c) = (mean_r cos(e_c, e_r) - mean_k cos(e_c, e_k)) / std_k cos(e_c, e_k)

with ``r`` the *other* clean photos of ``i`` and ``k`` the clean photos of every other
training person (about 7,800), embeddings ``e`` from MobileFaceNet (image and mirror,
256-d). That is the genuine similarity in units of the capture's own impostor spread: how
far above impostors this capture lands. The training target is ``clip(z / Z_FULL, 0, 1)``.

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

from facegate.capture import CaptureStage
from facegate.images import load_rgb
from facegate.recognition import MobileFaceNetRecognizer
from facegate.scorer import default_weights_dir
from facegate.spec import ScorerSpec

from .degradations import DEGRADATIONS, degrade
from .lfw import training_people

#: z at which the label saturates at 1.0 (a clearly recognisable capture).
Z_FULL = 10.0

CSV_FIELDS = [
    "path", "score", "identity", "source", "degradation", "severity",
    "genuine", "impostor_mean", "impostor_std", "z",
]


def utility_label(z: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(z, dtype=np.float64) / Z_FULL, 0.0, 1.0)


def detect_photos(paths: list[Path], cache: Path, spec: ScorerSpec) -> dict[str, np.ndarray]:
    """Primary-face landmarks of each photo from the capture stage (the detector settings
    of ``spec``, as inference uses them), cached as JSON; a cache made with other settings
    is redone."""
    stage = CaptureStage(spec)
    settings = {"detector": stage.detector_name, **stage.detector_settings}
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    found: dict[str, list] = cached.get("faces", {}) if cached.get("settings") == settings else {}
    todo = [p for p in paths if str(p) not in found]
    if todo:
        t0 = time.time()
        for n, path in enumerate(todo, 1):
            primary = stage.analyse(path).primary
            found[str(path)] = None if primary is None else primary.landmarks.tolist()
            if n % 1000 == 0:
                print(f"  detected {n}/{len(todo)} ({n / (time.time() - t0):.0f}/s)", flush=True)
        cache.write_text(json.dumps({"settings": settings, "faces": found}))
    return {k: np.array(v) for k, v in found.items() if v is not None}


def make_captures(rgb, landmarks, variants, rng):
    """Yield (degradation label, severity, image, landmarks) for one photo."""
    yield "none", 0.0, rgb, landmarks
    kinds = sorted(DEGRADATIONS)
    for _ in range(variants):
        count = 1 if rng.uniform() < 0.7 else 2
        chosen = rng.choice(kinds, size=count, replace=False)
        severities = rng.uniform(0, 1, size=count)
        img, lm = rgb, landmarks
        for kind, severity in zip(chosen, severities):
            img, lm = degrade(img, lm, str(kind), float(severity), rng)
        label = "+".join(str(k) for k in chosen)
        yield label, float(severities.max()), img, lm


def build(shared: Path, out: Path, *, variants: int, seed: int, limit_people: int | None,
          checkpoint: Path | None = None, spec: ScorerSpec | None = None) -> Path:
    """Write ``labels.csv`` and its crops into ``out``; crops and detections follow ``spec``
    (default: the shipped weights' spec, so labels see the faces inference sees)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "crops").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    spec = spec or ScorerSpec.load(default_weights_dir() / "spec.json")
    people = training_people(shared)
    if limit_people:
        names = sorted(people)
        keep = set(rng.choice(names, size=min(limit_people, len(names)), replace=False))
        people = {n: p for n, p in people.items() if n in keep}
    photos = [p for ps in people.values() for p in ps]
    print(f"{len(people)} training people, {len(photos)} photos", flush=True)

    landmarks = detect_photos(photos, out / "detections.json", spec)
    print(f"faces found in {len(landmarks)}/{len(photos)} photos", flush=True)

    recognizer = MobileFaceNetRecognizer(str(checkpoint or shared / "models" / "mobilefacenet_casia.ckpt"))
    ref_paths = [p for p in photos if str(p) in landmarks]
    ref_ident = np.array([p.parent.name for p in ref_paths])
    ref_index = {str(p): i for i, p in enumerate(ref_paths)}
    ref_crops = np.stack([recognizer.align(load_rgb(p), landmarks[str(p)]) for p in ref_paths])
    ref_emb = recognizer.embed_aligned(ref_crops)
    print(f"embedded {len(ref_emb)} clean reference photos", flush=True)

    rows = []
    multi = [n for n, ps in people.items() if sum(str(p) in landmarks for p in ps) >= 2]
    t0 = time.time()
    for n, name in enumerate(multi, 1):
        for photo in people[name]:
            if str(photo) not in landmarks:
                continue
            rgb = load_rgb(photo)
            lm0 = landmarks[str(photo)]
            caps, mfn = [], []
            for k, (deg, severity, img, lm) in enumerate(make_captures(rgb, lm0, variants, rng)):
                ied = float(np.linalg.norm(lm[1] - lm[0])) or 1.0
                jittered = lm + rng.normal(0, 0.02 * ied, lm.shape) if deg != "none" else lm
                crop = spec.crop(img, jittered)
                rel = f"crops/{photo.stem}_{k}.png"
                cv2.imwrite(str(out / rel), crop[..., ::-1])
                caps.append((rel, deg, severity))
                mfn.append(recognizer.align(img, lm))
            emb = recognizer.embed_aligned(np.stack(mfn))
            sims = emb @ ref_emb.T  # (captures, references)
            own = ref_index[str(photo)]
            genuine_mask = (ref_ident == name)
            genuine_mask[own] = False
            impostor_mask = ref_ident != name
            for (rel, deg, severity), s in zip(caps, sims):
                g = float(s[genuine_mask].mean())
                imp = s[impostor_mask]
                mu, sd = float(imp.mean()), float(imp.std()) + 1e-6
                z = (g - mu) / sd
                rows.append({
                    "path": rel, "score": 0.0, "identity": name, "source": photo.name,
                    "degradation": deg, "severity": round(severity, 4), "genuine": round(g, 5),
                    "impostor_mean": round(mu, 5), "impostor_std": round(sd, 5), "z": round(z, 4),
                })
        if n % 100 == 0:
            print(f"  labelled {n}/{len(multi)} people, {len(rows)} captures "
                  f"({len(rows) / (time.time() - t0):.0f}/s)", flush=True)

    z = np.array([r["z"] for r in rows])
    for row, label in zip(rows, utility_label(z)):
        row["score"] = round(float(label), 5)
    csv_path = out / "labels.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    clean = np.array([r["degradation"] == "none" for r in rows])
    print(f"wrote {len(rows)} captures to {csv_path}; z clean median {np.median(z[clean]):.2f}, "
          f"degraded median {np.median(z[~clean]):.2f}; label mean {utility_label(z).mean():.3f}", flush=True)
    return csv_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--out", type=Path, default=Path("runs/labels"))
    parser.add_argument("--variants", type=int, default=2, help="degraded copies per photo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-people", type=int, default=None, help="label a random subset (for trials)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    build(args.shared, args.out, variants=args.variants, seed=args.seed, limit_people=args.limit_people)


if __name__ == "__main__":
    main()
