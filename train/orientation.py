"""Train the photo-orientation helper: is this photo upright, or turned 90, 180 or 270 degrees?

Whether a photo is turned is a property of the photo, not of one face: a person lying down
or tilting their head is in an upright photo, and an upside-down face can fool a face
detector into upright-looking landmarks. So the gate asks a small network that sees the
whole photo (64 px, squashed to a square): people's bodies, hair, shoulders and the scene say
which way is up. Trained self-supervised (RotNet, Gidaris et al. 2018) on the training people's
photos of LFW and CelebA, each drawn upright or turned by a multiple of 90 degrees, with views
that do not change the answer (the head alone tilted 20-70 degrees in a third of the views, so
that a tilted head does not read as a turned photo; crops, tilts of the whole photo of up to
15 degrees, mirror images, light, grey, blur, noise); identity-disjoint validation people; the
evaluation people are never seen.

    python -m train.orientation --shared ../shared --work runs/orientation --out facegate/weights

Writes ``orientation.onnx`` and ``orientation.json`` (read by :mod:`facegate.orientation`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from facegate.images import load_rgb

from .small_nets import SmallFit, SmallNet, export, fit_small, predict

__all__ = ["TURNS", "training_photos", "thumbnails", "head_tilted", "turned", "choose_threshold", "main"]

#: Output i: the photo needs turning TURNS[i] degrees clockwise to be upright (it was turned
#: that far counter-clockwise).
TURNS = (0, 90, 180, 270)
SIZE, STORED = 96, 128


def training_photos(shared: Path) -> dict[str, list[Path]]:
    """The LFW training people's and CelebA training identities' photos, by person."""
    from .celeba import identities
    from .lfw import training_people

    people = {f"lfw/{k}": v for k, v in training_people(shared).items()}
    people.update({f"celeba/{k}": v for k, v in identities(shared, evaluation=False).items()})
    return people


def thumbnail(rgb: np.ndarray, size: int) -> np.ndarray:
    """The whole photo squashed to ``size`` x ``size`` (what the runtime feeds the helper)."""
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)


def thumbnails(photos: list[Path], cache: Path, size: int = STORED) -> tuple[np.ndarray, np.ndarray]:
    """``(N, size, size, 3)`` uint8 thumbnails of ``photos`` and the main face's five
    landmarks in each (``(N, 5, 2)`` in thumbnail pixels; NaN where none was found), cached in
    ``cache`` (.npz)."""
    if cache.exists():
        stored = np.load(cache)
        if len(stored["thumbs"]) == len(photos):
            return stored["thumbs"], stored["landmarks"]
    from facegate.capture import CaptureSettings, CaptureStage

    stage = CaptureStage(settings=CaptureSettings(components=False, orientation=False, look_again=False))
    thumbs, marks = [], []
    for p in photos:
        rgb = load_rgb(p)
        capture = stage.analyse_rgb(rgb)
        scale = np.array([size / rgb.shape[1], size / rgb.shape[0]])
        marks.append(capture.primary.landmarks * scale if capture.primary is not None else np.full((5, 2), np.nan))
        thumbs.append(thumbnail(rgb, size))
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, thumbs=np.stack(thumbs), landmarks=np.stack(marks))
    return np.stack(thumbs), np.stack(marks)


def head_tilted(thumb: np.ndarray, landmarks: np.ndarray, angle: float) -> np.ndarray:
    """``thumb`` with the head turned ``angle`` degrees about its centre inside a soft
    ellipse, the rest of the photo left as it is: a tilted head in a photo that is not turned."""
    h, w = thumb.shape[:2]
    centre = tuple(float(v) for v in landmarks.mean(0))
    side = max(4.0, 2.2 * float(np.linalg.norm(landmarks[1] - landmarks[0])))
    turned_head = cv2.warpAffine(thumb, cv2.getRotationMatrix2D(centre, angle, 1.0), (w, h),
                                 borderMode=cv2.BORDER_REFLECT)
    mask = np.zeros((h, w), np.float32)
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (int(0.8 * side), int(0.95 * side)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(0.5, 0.1 * side))[..., None]
    return (turned_head * mask + thumb * (1 - mask)).astype(np.uint8)


def turned(image: np.ndarray, index: int) -> np.ndarray:
    """``image`` turned counter-clockwise by ``TURNS[index]`` (so it needs that turn back)."""
    return np.ascontiguousarray(np.rot90(image, k=index))


def _view(thumb: np.ndarray, rng: np.random.Generator, landmarks: np.ndarray | None = None) -> np.ndarray:
    """A view of an upright thumbnail that is still upright: a third of them with the head
    alone tilted 20-70 degrees (``landmarks`` place it), then a crop of 70-100% of the side, a
    tilt of up to 15 degrees, a mirror image, light and contrast, grey, blur or noise."""
    if landmarks is not None and np.isfinite(landmarks).all() and rng.random() < 0.33:
        thumb = head_tilted(thumb, landmarks, float(rng.choice([-1, 1]) * rng.uniform(20, 70)))
    s = thumb.shape[0]
    side = rng.uniform(0.7, 1.0) * s
    cx, cy = rng.uniform(side / 2, s - side / 2, 2)
    angle = rng.uniform(-15, 15)
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, SIZE / side)
    m[:, 2] = np.array([SIZE / 2, SIZE / 2]) - m[:, :2] @ np.array([cx, cy])  # the crop's centre to the view's
    view = cv2.warpAffine(thumb, m, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    if rng.random() < 0.5:
        view = view[:, ::-1]
    view = view.astype(np.float32) * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30)
    if rng.random() < 0.2:
        view = np.repeat(view.mean(axis=2, keepdims=True), 3, axis=2)
    if rng.random() < 0.2:
        view = cv2.GaussianBlur(view, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.2:
        view = view + rng.normal(0, rng.uniform(2, 10), view.shape)
    return np.clip(view, 0, 255).astype(np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=Path("runs/orientation"))
    parser.add_argument("--out", type=Path, default=None, help="write orientation.onnx/.json here (e.g. facegate/weights)")
    parser.add_argument("--epochs", type=int, default=SmallFit.epochs)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    people = training_photos(args.shared)
    names = sorted(people)
    held = set(np.random.default_rng(0).permutation(names)[: len(names) // 5])
    photos = [p for n in names for p in people[n]]
    is_val = np.array([n in held for n in names for _ in people[n]])
    thumbs, landmarks = thumbnails(photos, args.work / f"thumbnails{STORED}.npz")
    val_thumbs = np.stack([cv2.resize(t, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for t in thumbs[is_val]])

    def make_batch(items, rng):
        k = rng.integers(0, 4, len(items))
        return np.stack([turned(_view(thumbs[i], rng, landmarks[i]), j) for i, j in zip(items, k)]), k

    def evaluate(net):
        probs = [torch.softmax(torch.from_numpy(predict(net, np.stack([turned(t, j) for t in val_thumbs]))), 1).numpy()
                 for j in range(4)]
        right = [float(np.mean(p.argmax(1) == j)) for j, p in enumerate(probs)]
        return {"val_right": right, "val_upright_called_turned": float(np.mean(probs[0].argmax(1) != 0))}

    cfg = SmallFit(epochs=args.epochs)
    net = SmallNet(len(TURNS), shared=args.shared)
    history = fit_small(net, make_batch, np.flatnonzero(~is_val), torch.nn.functional.cross_entropy, evaluate, cfg,
                        args.work)
    if args.out:
        info = {"name": "facegate-orientation", "outputs": [f"turn {t}" for t in TURNS], "turns": list(TURNS),
                "photos": int((~is_val).sum()), "validation_photos": int(is_val.sum()), "history": history,
                "command": "python -m train.orientation " + " ".join(argv if argv is not None else __import__("sys").argv[1:])}
        path = export(net, args.out / "orientation.onnx", SIZE, info)
        info["min_probability"], info["validation_decisions"] = choose_threshold(
            args.out, [p for p, v in zip(photos, is_val) if v])
        export(net, path, SIZE, info)
        print(path, info["min_probability"], info["validation_decisions"])


def choose_threshold(folder: Path, photos: list[Path], most_upright_turned: float = 0.005) -> tuple[float, dict]:
    """The lowest probability a turn needs (0.5 to 0.98) for upright validation photos to be
    called turned at most ``most_upright_turned`` of the time, through the runtime's own path
    (the exported graph on the decoded photo); and what it gives on each turn."""
    from facegate.orientation import OrientationModel

    model = OrientationModel(folder)
    probs = np.array([[model.probabilities(turned(load_rgb(p), k)) for k in range(4)] for p in photos])
    for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98):
        best = probs.argmax(-1)
        called = np.where((best != 0) & (probs.max(-1) >= t), best, 0)
        upright_turned = float(np.mean(called[:, 0] != 0))
        if upright_turned <= most_upright_turned:
            return t, {"upright_called_turned": upright_turned,
                       **{f"turn_{TURNS[k]}_right": float(np.mean(called[:, k] == k)) for k in (1, 2, 3)}}
    return 0.98, {}


if __name__ == "__main__":
    main()
