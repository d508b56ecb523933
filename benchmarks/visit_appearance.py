"""Which appearance signal keeps a stream visit on one person: measured on LFW evaluation
people (never trained on), through the capture stage the stream uses.

A visit must survive what happens to one person in front of a camera between two
detections (blur, a darker or brighter moment, JPEG noise from the stream, a smaller face,
a slight turn of the head) and end when another person takes the place. For each person:
one photo, its degraded copies ("same"), and one photo of each of the other people
("other"). Each signal is a descriptor of the face's aligned crop compared by cosine; the
table gives how far apart the two sets lie.

    python -m benchmarks.visit_appearance --shared ../shared --people 80
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from facegate.capture import CaptureSettings, CaptureStage
from facegate.images import apply_gamma, load_rgb
from facegate.stream import _inner_grey, _unit, edge_look

ROOT = Path(__file__).resolve().parents[1]


# -- the signals tried beside the one visits use (facegate.stream.edge_look) ----------------

def grey_look(crop: np.ndarray) -> np.ndarray:
    """The inner face at 24x24 in grey, less its mean: the face's layout of light and dark."""
    v = cv2.resize(_inner_grey(crop), (24, 24), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
    return _unit(v - v.mean())


def colour_look(crop: np.ndarray) -> np.ndarray:
    """Hue and saturation of the whole crop (skin, hair, clothes), as a histogram's square
    root (so the dot product is the Bhattacharyya coefficient)."""
    hsv = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [18, 8], [0, 180, 0, 256]).ravel()
    return _unit(np.sqrt(hist / (hist.sum() + 1e-9)))


def mixed(*signals):
    """Several signals, each the same weight."""
    return lambda crop: _unit(np.concatenate([signal(crop) for signal in signals]))


APPEARANCE_SIGNALS = {"grey 24x24": grey_look, "edge directions": edge_look, "colour": colour_look,
                      "grey + colour": mixed(grey_look, colour_look), "edges + grey": mixed(edge_look, grey_look)}


def copies(rgb: np.ndarray) -> dict[str, np.ndarray]:
    h, w = rgb.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 6, 1.0)
    small = cv2.resize(rgb, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 10])
    return {
        "blur 2": cv2.GaussianBlur(rgb, (0, 0), 2.0),
        "blur 3": cv2.GaussianBlur(rgb, (0, 0), 3.0),
        "blur 4": cv2.GaussianBlur(rgb, (0, 0), 4.0),
        "dark (gamma 2.5)": apply_gamma(rgb, 2.5),
        "dark (gamma 4)": apply_gamma(rgb, 4.0),
        "bright (gamma 0.5)": apply_gamma(rgb, 0.5),
        "JPEG 10": cv2.imdecode(jpeg, cv2.IMREAD_COLOR)[..., ::-1],
        "half size": cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR),
        "turned 6 degrees": cv2.warpAffine(rgb, turn, (w, h), borderMode=cv2.BORDER_REPLICATE),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--people", type=int, default=80)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from train.lfw import evaluation_people

    lfw = args.shared / "data" / "lfw-deepfunneled"
    stage = CaptureStage(settings=CaptureSettings(detector="yunet", components=False))
    people = sorted(evaluation_people(args.shared))[:: 3][: args.people]
    crops: dict[str, dict[str, np.ndarray]] = {}
    for person in people:
        photo = sorted((lfw / person).glob("*.jpg"))[0]
        rgb = load_rgb(photo)
        found = {}
        for kind, image in {"photo": rgb, **copies(rgb)}.items():
            capture = stage.analyse_rgb(image)
            if capture.crop is not None:
                found[kind] = capture.crop
        if "photo" in found:
            crops[person] = found
    result = {"people": len(crops), "signals": {}}
    for name, signal in APPEARANCE_SIGNALS.items():
        looks = {p: {k: signal(c) for k, c in found.items()} for p, found in crops.items()}
        same = {k: [float(looks[p]["photo"] @ looks[p][k]) for p in looks if k in looks[p]]
                for k in next(iter(crops.values())) if k != "photo"}
        names = list(looks)
        other = [float(looks[a]["photo"] @ looks[b]["photo"]) for i, a in enumerate(names) for b in names[i + 1:]]
        all_same = np.concatenate([np.asarray(v) for v in same.values()])
        other = np.asarray(other)
        # the threshold that separates best (equal error), and how both sides fare at it
        grid = np.linspace(-1, 1, 2001)
        same_below = np.array([(all_same < t).mean() for t in grid])
        other_above = np.array([(other >= t).mean() for t in grid])
        k = int(np.argmin(np.abs(same_below - other_above)))
        result["signals"][name] = {
            "same_p1": float(np.percentile(all_same, 1)), "same_min": float(all_same.min()),
            "other_p99": float(np.percentile(other, 99)), "other_max": float(other.max()),
            "equal_error_threshold": float(grid[k]), "equal_error": float(same_below[k]),
            "same_by_copy_p5": {kind: float(np.percentile(v, 5)) for kind, v in same.items() if v},
        }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
