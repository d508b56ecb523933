"""Train the occlusion helper: how much of the eyes, of the nose and mouth, and of the face is visible?

ISO/IEC 29794-5 (and OFIQ) name eyes visible, mouth occlusion and face occlusion. OFIQ
measures them with a face-parsing network; here a small network reads the aligned crop the
gate already makes (64 px) and regresses three shares, each the visible part of a region laid
out from the template's landmarks: both eyes, nose and mouth, the whole face. It learns from
occluders drawn onto the training people's clean crops, where the drawn mask gives the exact
visible share, and drawn to look like what covers faces in real captures rather than blocks
of colour:

- sunglasses (dark, tinted or mirrored lenses, frames, highlights), and eye patches of other
  photos' texture;
- masks (surgical and cloth, pleats and straps) and scarves (another photo's texture) over
  nose, mouth and chin;
- hands in the person's own skin (a patch of their cheek, warped into a palm and fingers),
  over the mouth, an eye or a cheek;
- a microphone (a meshed head on a handle), a phone or a cup, and any object as a patch of
  another photo's texture in a random shape;
- hair strands across the eyes.

Real occluders teach what drawn ones miss: training photos picked by eye with real
sunglasses (``natural_sunglasses.txt``), with a real hand, microphone or glass over the
mouth (``natural_mouth_occlusions.txt``) and with clear glasses in thick dark frames
(``natural_clear_glasses.txt``, taught uncovered, so a dark frame is not read as a dark lens)
are taught with their own targets (:data:`NATURAL`), about one crop in six; photos with an
occluder at the lips that leaves them in sight (``natural_mouth_partly.txt``) are not taught. The training photos carry other sunglasses and hands too; a second round
(``--clean-with`` a first round's helper) leaves out the crops the first calls covered, so
they are not taught as uncovered. Half the crops are left uncovered, and every crop may also be blurred, darkened, brightened,
noisy or greyed (so light and focus are not read as occlusion). Identity-disjoint validation
people; the evaluation people are never seen.

    python -m train.occlusion --shared ../shared --labels runs/release/labels/labels.csv --work runs/occlusion --out facegate/weights

Writes ``occlusion.onnx`` / ``occlusion.json`` (read by :mod:`facegate.occlusion`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from facegate.alignment import quality_template

from .small_nets import SmallFit, SmallNet, export, fit_small, predict

__all__ = ["REGIONS", "region_masks", "occlude", "main"]

#: The shares the helper gives, in its output order.
REGIONS = ("eyes", "mouth", "face")
SIZE = 64
#: Degradations in the labels that leave the face uncovered (the labels' own occlusion and
#: accessory copies are covered in unknown ways and are left out).
UNCOVERED = ("none", "defocus", "motion_blur", "gaussian_blur", "noise", "jpeg", "underexposure", "overexposure",
             "low_resolution", "jpeg_extreme")


def _frame(size: int):
    """The template's landmarks at ``size`` px, the eye centre, eye distance and mouth centre."""
    pts = quality_template(size, 0.0)
    eyes = pts[:2].mean(0)
    ied = float(np.linalg.norm(pts[1] - pts[0]))
    return pts, eyes, ied, pts[3:].mean(0)


def region_masks(size: int) -> np.ndarray:
    """``(3, size, size)`` float masks of the eyes, nose-and-mouth and face regions of the
    aligned crop (the template's landmarks place them)."""
    pts, eyes, ied, mouth = _frame(size)
    out = np.zeros((3, size, size), np.uint8)
    for p in pts[:2]:
        cv2.ellipse(out[0], (int(p[0]), int(p[1])), (int(0.3 * ied), int(0.18 * ied)), 0, 0, 360, 1, -1)
    nose, (ml, mr) = pts[2], pts[3:]
    hull = np.array([nose + (-0.28 * ied, -0.35 * ied), nose + (0.28 * ied, -0.35 * ied), mr + (0.15 * ied, 0.22 * ied),
                     ml + (-0.15 * ied, 0.22 * ied)], np.int32)
    cv2.fillConvexPoly(out[1], hull, 1)
    centre = (eyes + mouth) / 2
    cv2.ellipse(out[2], (int(centre[0]), int(centre[1] + 0.1 * ied)), (int(0.95 * ied), int(1.35 * ied)), 0, 0, 360, 1, -1)
    return out.astype(np.float32)


# -- occluders, drawn in the aligned crop -------------------------------------------------------
def _texture(other: np.ndarray, size: int, rng) -> np.ndarray:
    """A patch of another image, resized to the crop: what an object in front of the face looks like."""
    h, w = other.shape[:2]
    side = int(rng.uniform(0.3, 1.0) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return cv2.resize(other[y:y + side, x:x + side], (size, size)).astype(np.float32)


def _shape(mask: np.ndarray, centre, axes, rng) -> None:
    """An ellipse, a rounded rectangle or a polygon around ``centre``."""
    kind = rng.integers(3)
    cx, cy = int(centre[0]), int(centre[1])
    ax, ay = max(2, int(axes[0])), max(2, int(axes[1]))
    angle = float(rng.uniform(-30, 30))
    if kind == 0:
        cv2.ellipse(mask, (cx, cy), (ax, ay), angle, 0, 360, 255, -1, cv2.LINE_AA)
    elif kind == 1:
        box = cv2.boxPoints(((cx, cy), (2 * ax, 2 * ay), angle)).astype(np.int32)
        cv2.fillConvexPoly(mask, box, 255, cv2.LINE_AA)
        r = max(1, min(ax, ay) // 2)
        mask[:] = cv2.dilate(cv2.erode(mask, np.ones((r, r), np.uint8)), np.ones((r, r), np.uint8))
    else:
        n = rng.integers(5, 9)
        a = np.sort(rng.uniform(0, 2 * math.pi, n))
        r = rng.uniform(0.6, 1.0, n)
        poly = np.stack([cx + ax * r * np.cos(a), cy + ay * r * np.sin(a)], 1).astype(np.int32)
        cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA)


def _sunglasses(crop, other, rng, s):
    """Sunglasses as people wear them: big lenses (round, rectangular or aviator) that reach
    from the brows to the cheekbones, a frame, a bridge and the arms; dark, tinted, gradient
    or mirrored lenses, the eyes sometimes faintly through them, a highlight."""
    pts, eyes, ied, _ = _frame(s)
    mask = np.zeros((s, s), np.uint8)
    w, h = rng.uniform(0.36, 0.5) * ied, rng.uniform(0.24, 0.4) * ied
    lift = rng.uniform(-0.05, 0.12) * ied  # lenses sit a little above the eye centres
    shape = rng.integers(3)
    for p, side in ((pts[0], -1), (pts[1], 1)):
        cx, cy = p[0] + side * rng.uniform(-0.02, 0.06) * ied, p[1] - lift
        if shape == 0:
            cv2.ellipse(mask, (int(cx), int(cy)), (int(w), int(h)), 0, 0, 360, 255, -1, cv2.LINE_AA)
        elif shape == 1:
            box = np.array([(cx - w, cy - h), (cx + w, cy - h), (cx + w, cy + h), (cx - w, cy + h)], np.int32)
            cv2.fillConvexPoly(mask, box, 255, cv2.LINE_AA)
        else:  # aviator: wide on top, a rounded point towards the nose
            poly = np.array([(cx - side * w, cy - h), (cx + side * w, cy - h * 0.8), (cx + side * w * 0.9, cy + h * 0.3),
                             (cx + side * w * 0.3, cy + h), (cx - side * w * 0.6, cy + h * 0.9), (cx - side * w, cy)])
            cv2.fillPoly(mask, [poly.astype(np.int32)], 255, cv2.LINE_AA)
    lens = mask.copy()
    t = max(1, int(rng.uniform(0.03, 0.09) * ied))
    contours, _ = cv2.findContours(lens, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(mask, contours, -1, 255, t)
    cv2.line(mask, (int(pts[0][0] + 0.3 * ied), int(pts[0][1] - lift - 0.1 * ied)),
             (int(pts[1][0] - 0.3 * ied), int(pts[1][1] - lift - 0.1 * ied)), 255, t)
    for p, side in ((pts[0], -1), (pts[1], 1)):
        cv2.line(mask, (int(p[0] + side * w), int(p[1] - lift - 0.1 * ied)), (int(p[0] + side * 1.1 * ied), int(p[1] - lift)),
                 255, t)
    kind = rng.integers(4)
    if kind == 0:  # dark
        layer = np.full((s, s, 3), rng.uniform(5, 45), np.float32) + rng.uniform(0, 15, 3)
    elif kind == 1:  # tinted (brown, green, blue, grey)
        layer = np.full((s, s, 3), 1.0, np.float32) * rng.uniform(15, 110, 3)
    elif kind == 2:  # gradient: darker on top
        y = np.linspace(0, 1, s, dtype=np.float32)[:, None, None]
        layer = rng.uniform(5, 40) + rng.uniform(20, 90) * np.clip((y * s - (pts[0][1] - h)) / (2 * h), 0, 1) \
            * np.ones((1, 1, 3), np.float32)
    else:  # mirrored: a dim copy of another scene
        layer = _texture(other, s, rng) * rng.uniform(0.3, 0.8)
    y = np.linspace(0, 1, s, dtype=np.float32)[:, None, None]
    layer = layer + rng.uniform(0, 70) * np.exp(-((y - rng.uniform(0.3, 0.5)) ** 2) / 0.002)
    frame_colour = np.full((s, s, 3), rng.uniform(0, 80), np.float32) if rng.random() < 0.7 else \
        np.full((s, s, 3), 1.0, np.float32) * rng.uniform(0, 255, 3)
    frame = (mask > 0) & (lens == 0)
    layer = np.where(frame[..., None], frame_colour, layer)
    # the eyes faintly through the lenses now and then: the share covered counts the tint
    return layer, mask, rng.uniform(0.8, 1.0) if rng.random() < 0.3 else 1.0


def _skin_patch(crop, s, rng):
    """The person's own skin: a cheek patch of the crop, stretched to the crop."""
    pts, eyes, ied, mouth = _frame(s)
    side = rng.choice([-1, 1])
    c = (eyes + mouth) / 2 + np.array([side * 0.55 * ied, 0])
    r = max(2, int(0.18 * ied))
    patch = crop[int(c[1]) - r:int(c[1]) + r, int(c[0]) - r:int(c[0]) + r]
    if patch.size == 0:
        patch = crop
    return cv2.resize(cv2.GaussianBlur(patch, (0, 0), 1.0), (s, s), interpolation=cv2.INTER_CUBIC).astype(np.float32)


def _hand(crop, other, rng, s):
    pts, eyes, ied, mouth = _frame(s)
    mask = np.zeros((s, s), np.uint8)
    target = [mouth, pts[2], pts[rng.integers(2)], (eyes + mouth) / 2 + (rng.choice([-1, 1]) * 0.7 * ied, 0)]
    c = target[rng.choice(4, p=[0.45, 0.2, 0.2, 0.15])] + rng.normal(0, 0.15 * ied, 2)
    angle = rng.uniform(-0.8, 0.8) + (math.pi / 2 if rng.random() < 0.3 else 0)
    palm = (0.5 * ied * rng.uniform(0.8, 1.4), 0.4 * ied * rng.uniform(0.8, 1.4))
    cv2.ellipse(mask, (int(c[0]), int(c[1])), (int(palm[0]), int(palm[1])), math.degrees(angle), 0, 360, 255, -1,
                cv2.LINE_AA)
    for k in range(4):
        off = (-0.3 + 0.2 * k) * ied
        base = c + off * np.array([math.cos(angle), math.sin(angle)])
        tip = base + 0.7 * ied * rng.uniform(0.7, 1.1) * np.array([math.sin(angle), -math.cos(angle)])
        cv2.line(mask, tuple(base.astype(int)), tuple(tip.astype(int)), 255, max(2, int(0.17 * ied)), cv2.LINE_AA)
    layer = _skin_patch(crop, s, rng) * rng.uniform(0.75, 1.15)
    shade = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.9, 1.15), s, dtype=np.float32)[None, :, None]
    layer = layer * shade
    # the creases between the fingers, darker
    gaps = np.zeros((s, s), np.uint8)
    for k in range(3):
        off = (-0.2 + 0.2 * k) * ied
        base = c + off * np.array([math.cos(angle), math.sin(angle)])
        tip = base + 0.7 * ied * np.array([math.sin(angle), -math.cos(angle)])
        cv2.line(gaps, tuple(base.astype(int)), tuple(tip.astype(int)), 255, 1, cv2.LINE_AA)
    layer = layer * (1 - 0.35 * (gaps[..., None] / 255.0))
    return layer, mask, 1.0


def _mask_or_scarf(crop, other, rng, s):
    pts, eyes, ied, mouth = _frame(s)
    top = pts[2][1] - rng.uniform(0.05, 0.45) * ied
    left, right = pts[0][0] - rng.uniform(0.5, 0.8) * ied, pts[1][0] + rng.uniform(0.5, 0.8) * ied
    bottom = mouth[1] + rng.uniform(0.7, 1.3) * ied
    poly = np.array([(left, top + 0.1 * ied), ((left + right) / 2, top - 0.05 * ied), (right, top + 0.1 * ied),
                     (right - 0.1 * ied, bottom - 0.4 * ied), ((left + right) / 2, bottom), (left + 0.1 * ied, bottom - 0.4 * ied)])
    mask = np.zeros((s, s), np.uint8)
    cv2.fillPoly(mask, [poly.astype(np.int32)], 255, cv2.LINE_AA)
    if rng.random() < 0.5:  # surgical or cloth: a plain colour with pleats
        colour = [(235, 235, 235), (160, 200, 230), (40, 40, 45), (90, 120, 170), (200, 170, 180)][rng.integers(5)]
        layer = np.full((s, s, 3), colour, np.float32) + rng.normal(0, 4, 3)
        y = np.arange(s, dtype=np.float32)[:, None, None]
        layer = layer * (1 - 0.12 * (np.sin(y / max(1.0, 0.12 * ied) * math.pi) > 0.6))
        for p, side in ((pts[0], -1), (pts[1], 1)):  # the straps
            cv2.line(mask, (int(left if side < 0 else right), int(top + 0.2 * ied)),
                     (int(p[0] + side * 0.9 * ied), int(p[1] + 0.1 * ied)), 255, max(1, int(0.04 * ied)), cv2.LINE_AA)
    else:  # a scarf or a collar: another photo's texture
        layer = _texture(other, s, rng)
    return layer, mask, 1.0


def _object(crop, other, rng, s):
    """A microphone, a phone, a cup or anything: a patch of another photo in a random shape,
    anywhere on the face."""
    pts, eyes, ied, mouth = _frame(s)
    mask = np.zeros((s, s), np.uint8)
    if rng.random() < 0.45:  # a microphone: a meshed ball on a handle, on or just below the mouth
        c = mouth + (rng.normal(0, 0.3 * ied), rng.uniform(-0.25, 0.45) * ied)
        r = int(rng.uniform(0.3, 0.8) * ied)
        cv2.circle(mask, (int(c[0]), int(c[1])), r, 255, -1, cv2.LINE_AA)
        angle = rng.uniform(-1.0, 1.0)  # the handle, down and to either side, or held from the side
        end = c + 2 * s * np.array([math.sin(angle), math.cos(angle)])
        cv2.line(mask, (int(c[0]), int(c[1])), (int(end[0]), int(end[1])), 255, max(2, int(rng.uniform(0.2, 0.35) * ied)))
        base = rng.uniform(20, 170)  # black, grey or silver
        layer = np.full((s, s, 3), base, np.float32) + rng.normal(0, 6, 3)
        yy, xx = np.mgrid[0:s, 0:s]
        layer += rng.uniform(15, 40) * (((xx + yy) % 3 == 0) | ((xx - yy) % 3 == 0))[..., None]  # the mesh
        shine = np.exp(-((xx - c[0] + 0.3 * r) ** 2 + (yy - c[1] + 0.3 * r) ** 2) / max(1.0, (0.35 * r) ** 2))
        layer += rng.uniform(30, 90) * shine[..., None]  # a highlight on the ball
        return layer, mask, 1.0
    centre = pts[rng.integers(5)] + rng.normal(0, 0.4 * ied, 2)
    _shape(mask, centre, rng.uniform(0.3, 1.0, 2) * ied, rng)
    return _texture(other, s, rng), mask, rng.uniform(0.85, 1.0)


def _hair(crop, other, rng, s):
    pts, eyes, ied, _ = _frame(s)
    mask = np.zeros((s, s), np.uint8)
    side = rng.choice([-1, 1])
    for _ in range(int(rng.integers(10, 50))):
        x0 = eyes[0] + side * rng.uniform(-0.3, 0.9) * ied
        ctrl = np.array([(x0, 0), (x0 - side * rng.uniform(0, 0.4) * ied, eyes[1]),
                         (x0 - side * rng.uniform(0, 0.6) * ied, eyes[1] + rng.uniform(0.1, 1.2) * ied)])
        t = np.linspace(0, 1, 12)[:, None]
        curve = (1 - t) ** 2 * ctrl[0] + 2 * t * (1 - t) * ctrl[1] + t ** 2 * ctrl[2]
        cv2.polylines(mask, [curve.astype(np.int32)], False, 255, max(1, int(ied * rng.uniform(0.03, 0.1))), cv2.LINE_AA)
    colour = np.array([[25, 20, 18], [70, 45, 30], [150, 110, 60], [200, 170, 120]])[rng.integers(4)]
    return np.full((s, s, 3), colour, np.float32), mask, rng.uniform(0.8, 1.0)


OCCLUDERS = {"sunglasses": _sunglasses, "hand": _hand, "mask": _mask_or_scarf, "object": _object, "hair": _hair}
_WEIGHTS = np.array([0.25, 0.25, 0.2, 0.2, 0.1])


def occlude(crop: np.ndarray, other: np.ndarray, rng: np.random.Generator, kind: str | None = None):
    """``crop`` (aligned, uint8) with an occluder drawn on it, and the occluder's coverage
    ``(S, S)`` in [0, 1]."""
    s = crop.shape[0]
    kind = kind or list(OCCLUDERS)[rng.choice(len(OCCLUDERS), p=_WEIGHTS)]
    layer, mask, alpha = OCCLUDERS[kind](crop, other, rng, s)
    if rng.random() < 0.5:  # a soft edge
        mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 1.5))
    cover = mask.astype(np.float32) / 255.0 * alpha
    out = crop.astype(np.float32) * (1 - cover[..., None]) + layer * cover[..., None]
    return np.clip(out, 0, 255).astype(np.uint8), cover


def _degrade(crop: np.ndarray, rng) -> np.ndarray:
    """Light, focus and noise that do not cover anything."""
    x = crop.astype(np.float32)
    r = rng.random()
    if r < 0.15:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.8, 2.5))
    elif r < 0.3:
        x = 255.0 * (x / 255.0) ** rng.uniform(1.5, 3.5)  # dark
    elif r < 0.4:
        x = 255.0 * (x / 255.0) ** rng.uniform(0.3, 0.7)  # bright
    elif r < 0.5:
        x = x + rng.normal(0, rng.uniform(4, 15), x.shape)
    if rng.random() < 0.15:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
    return np.clip(x, 0, 255).astype(np.uint8)


def visible_shares(cover: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """The visible share of each region under ``cover``."""
    return 1.0 - (regions * cover[None]).sum((1, 2)) / regions.sum((1, 2))


#: Training photos with real occluders, picked by eye and listed in these files (paths under
#: SHARED/data), and the shares every crop of them is taught (eyes, nose and mouth, face): real
#: sunglasses (eyes mostly covered, the lenses' share of the face); a real hand, microphone or
#: glass over the nose and mouth (the mouth mostly covered, about a fifth of the face). A drawn
#: occluder may be added on top, and only lowers these. (Tried and not shipped: a target of 0.1
#: with the real crops moved and recoloured, rounds 6 and 7 in the notes: better on the
#: validation people's real occluders, but thick-framed clear glasses read as covered eyes.
#: Round 10: the lower face of a real mouth photo transplanted onto 5% of the other crops,
#: taught covered, beside as many clean transplants: the evaluation photos' natural mouth
#: occlusions named 5 of 13, as round 9 without it.)
NATURAL = {
    "sunglasses": (Path(__file__).with_name("natural_sunglasses.txt"), (0.1, 1.0, 0.85)),
    "mouth": (Path(__file__).with_name("natural_mouth_occlusions.txt"), (1.0, 0.25, 0.8)),
    "clear_glasses": (Path(__file__).with_name("natural_clear_glasses.txt"), (1.0, 1.0, 1.0)),
}
#: Drawn occluders a natural one may get beside it (on the region it leaves uncovered).
_BESIDE = {"sunglasses": ("hand", "mask", "object"), "mouth": ("sunglasses", "hair"),
           "clear_glasses": ("hand", "mask", "object")}


#: Training photos with an occluder at the mouth that leaves the lips in sight (a microphone
#: below them, a straw, a finger): neither covered nor uncovered, so they are not taught at all.
LEFT_OUT = Path(__file__).with_name("natural_mouth_partly.txt")


def _listed(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def natural_photos(kind: str) -> set[str]:
    """The photos of one :data:`NATURAL` list."""
    return _listed(NATURAL[kind][0])


def _clean_crops(labels: Path, size: int) -> tuple[np.ndarray, list[str], list[str]]:
    """The labels' crops that no drawn degradation covers, their identities and source photos."""
    import csv

    rows = [r for r in csv.DictReader(open(labels)) if r["degradation"] in UNCOVERED]
    crops = []
    for r in rows:
        img = cv2.cvtColor(cv2.imread(str(labels.parent / r["path"])), cv2.COLOR_BGR2RGB)
        crops.append(cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
    return np.stack(crops), [r["identity"] for r in rows], [r["source"] for r in rows]


def is_val_of(ids, held) -> np.ndarray:
    return np.array([i in held for i in ids])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, required=True, help="a train.labels labels.csv (its crops are used)")
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=Path("runs/occlusion"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--clean-with", type=Path, default=None, metavar="DIR",
                        help="leave out the crops a first occlusion helper (DIR/occlusion.onnx) calls covered: the "
                             "training photos' own sunglasses and hands, which would otherwise be taught as uncovered")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = args.work / f"crops{2 * SIZE}.npz"
    if cache.exists():
        stored = np.load(cache)
        crops, ids, sources = stored["crops"], list(stored["ids"]), list(stored["sources"])
    else:
        crops, ids, sources = _clean_crops(args.labels, 2 * SIZE)
        args.work.mkdir(parents=True, exist_ok=True)
        np.savez(cache, crops=crops, ids=np.array(ids), sources=np.array(sources))
    # which NATURAL kind each crop's photo is (index into it; -1: none)
    kinds = list(NATURAL)
    natural = np.full(len(sources), -1)
    relative = [str(Path(s).relative_to(args.shared / "data")) if Path(s).is_relative_to(args.shared / "data")
                else "" for s in sources]
    for k, kind in enumerate(kinds):
        listed = natural_photos(kind)
        natural[[r in listed for r in relative]] = k
        print(f"{int((natural == k).sum())} crops of {len(listed)} photos with real {kind} occluders")
    left_out = _listed(LEFT_OUT)
    ambiguous = np.array([r in left_out for r in relative])
    if ambiguous.any():
        print(f"left out {int(ambiguous.sum())} crops of photos with the lips in sight behind an occluder")
        keep = ~ambiguous
        crops, ids, natural = crops[keep], [i for i, k in zip(ids, keep) if k], natural[keep]
    if args.clean_with is not None:
        from facegate.occlusion import OcclusionModel

        first = OcclusionModel(args.clean_with)
        shares = np.concatenate([first(crops[i:i + 256]) for i in range(0, len(crops), 256)])
        keep = (shares[:, :2] >= 0.5).all(1) | (natural >= 0)
        print(f"left out {int((~keep).sum())} of {len(crops)} crops the first helper calls covered")
        crops, ids, natural = crops[keep], [i for i, k in zip(ids, keep) if k], natural[keep]
    names = sorted(set(ids))
    held = set(np.random.default_rng(0).permutation(names)[: len(names) // 5])
    is_val = is_val_of(ids, held)
    regions = region_masks(SIZE)

    def sample(i, rng, covered):
        crop = cv2.resize(crops[i], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        cover = np.zeros((SIZE, SIZE), np.float32)
        if natural[i] >= 0:  # a real occluder: its own target, and perhaps a drawn one on the rest of the face
            kind = kinds[natural[i]]
            target = np.array(NATURAL[kind][1], np.float32)
            if covered:
                beside = _BESIDE[kind]
                crop, more = occlude(np.ascontiguousarray(crop), crops[rng.integers(len(crops))], rng,
                                     kind=beside[rng.integers(len(beside))])
                target = np.minimum(target, visible_shares(more, regions))
            return _degrade(crop, rng), target
        if covered:
            other = crops[rng.integers(len(crops))]
            crop, cover = occlude(np.ascontiguousarray(crop), other, rng)
            if rng.random() < 0.2:
                crop, more = occlude(crop, crops[rng.integers(len(crops))], rng)
                cover = np.maximum(cover, more)
        return _degrade(crop, rng), visible_shares(cover, regions)

    training = ~is_val_of(ids, held)
    #: each kind's training crops, and the share of a batch drawn from them
    real = {k: np.flatnonzero((natural == k) & training) for k in range(len(kinds))}
    real_share = {kinds.index("sunglasses"): 0.06, kinds.index("mouth"): 0.06, kinds.index("clear_glasses"): 0.04}

    def with_real(i, rng):
        u = rng.random()
        for k, share in real_share.items():
            if u < share and len(real[k]):
                return real[k][rng.integers(len(real[k]))]
            u -= share
        return i

    def make_batch(items, rng):
        # about one crop in eight a training photo with a real occluder (6 in 100 sunglasses, 6 a covered mouth)
        items = [with_real(i, rng) for i in items]
        pairs = [sample(i, rng, rng.random() < 0.6) for i in items]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs]).astype(np.float32)

    val_rng = np.random.default_rng(1)
    val_items = np.flatnonzero(is_val)[:3000]
    val = [sample(i, val_rng, k % 2 == 1) for k, i in enumerate(val_items)]
    val_x, val_y = np.stack([v[0] for v in val]), np.stack([v[1] for v in val])

    # the validation people's own real occluders, as they are: named at the enrollment bound (0.6)?
    real_val = {kind: np.flatnonzero((natural == k) & is_val) for k, kind in enumerate(kinds)}
    real_val_x = {kind: np.stack([cv2.resize(crops[i], (SIZE, SIZE), interpolation=cv2.INTER_AREA) for i in idx])
                  for kind, idx in real_val.items() if len(idx)}

    def evaluate(net):
        p = 1 / (1 + np.exp(-predict(net, val_x)))
        covered = val_y < 0.5
        out = {"val_mae": [float(v) for v in np.abs(p - val_y).mean(0)]}
        for k, name in enumerate(REGIONS):
            out[f"val_{name}_covered_found"] = float(np.mean(p[covered[:, k], k] < 0.5)) if covered[:, k].any() else None
            clear = val_y[:, k] > 0.95
            out[f"val_{name}_clear_called_covered"] = float(np.mean(p[clear, k] < 0.5))
        for kind, x in real_val_x.items():  # a covered kind: named at 0.6? the clear glasses: eyes called covered?
            target = NATURAL[kind][1]
            region = int(np.argmin(target))
            said = "named" if min(target) < 0.5 else "called_covered"
            out[f"val_real_{kind}_{said}"] = float(np.mean(1 / (1 + np.exp(-predict(net, x)[:, region])) < 0.6))
            out[f"val_real_{kind}_crops"] = len(x)
        return out

    def loss_fn(logits, target):
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, target)

    net = SmallNet(len(REGIONS), shared=args.shared)
    history = fit_small(net, make_batch, np.flatnonzero(~is_val), loss_fn, evaluate, SmallFit(epochs=args.epochs),
                        args.work)
    if args.out:
        info = {"name": "facegate-occlusion", "outputs": [f"{r} visible" for r in REGIONS], "regions": list(REGIONS),
                "crop": "the spec's aligned crop, resized", "crops": int((~is_val).sum()),
                "validation_crops": int(is_val.sum()), "history": history,
                "command": "python -m train.occlusion " + " ".join(argv if argv is not None else sys.argv[1:])}
        print(export(net, args.out / "occlusion.onnx", SIZE, info))


if __name__ == "__main__":
    main()
