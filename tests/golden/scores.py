"""Golden results of the shipped weights on the committed fixture photos and on copies of one
of them made worse in known ways (blurred, darkened, fewer pixels, heavy JPEG), so that
scores across the whole scale are pinned, not only the top where the good photos sit.

tests/test_golden.py compares every run against ``scores.json``; after a deliberate change
of weights, detector or policy, write the file again and review its diff:

    python -m tests.golden.scores --write
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GOLDEN = Path(__file__).resolve().parent / "scores.json"

#: Gates the file pins: (name, Gate keyword arguments).
GATES = {
    "verification": {},
    "enrollment": {"profile": "enrollment"},
    "yunet": {"detector": "yunet"},
}


def worse_copies() -> dict[str, np.ndarray]:
    """Copies of colin_powell_1.jpg made worse in known, deterministic ways (RGB uint8)."""
    rgb = np.asarray(Image.open(FIXTURES / "colin_powell_1.jpg").convert("RGB"))
    h, w = rgb.shape[:2]
    copies = {
        "blurred": cv2.GaussianBlur(rgb, (0, 0), 2.5),
        "dark": (255.0 * (rgb / 255.0) ** 3.0).round().astype(np.uint8),
        "small": cv2.resize(cv2.resize(rgb, (w // 4, h // 4), interpolation=cv2.INTER_AREA), (w, h),
                            interpolation=cv2.INTER_LINEAR),
    }
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=6)
    copies["jpeg_q6"] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return copies


def inputs() -> dict[str, object]:
    """Every input the file pins, by name: the fixture files, then the worse copies."""
    found: dict[str, object] = {p.name: p for p in sorted(FIXTURES.glob("*.jpg"))}
    found.update({f"colin_powell_1.{k}": v for k, v in worse_copies().items()})
    return found


def record(result) -> dict:
    return {"status": result.status.value, "reasons": list(result.reasons),
            "score": None if result.score is None else round(result.score, 3),
            "member_scores": {k: round(v, 3) for k, v in sorted(result.member_scores.items())}}


def measure(threads: int = 2) -> dict[str, dict[str, dict]]:
    """``{gate name: {input name: record}}`` with the shipped weights."""
    from facegate import Gate

    found = inputs()
    out = {}
    for name, options in GATES.items():
        gate = Gate(threads=threads, **options)
        out[name] = {k: record(gate.assess(v, color_order="rgb") if isinstance(v, np.ndarray) else gate.assess(v))
                     for k, v in found.items()}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"write {GOLDEN.name} (else print)")
    args = parser.parse_args(argv)
    text = json.dumps(measure(), indent=1) + "\n"
    if args.write:
        GOLDEN.write_text(text)
        print(f"wrote {GOLDEN}")
    else:
        print(text)


if __name__ == "__main__":
    main()
