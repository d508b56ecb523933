"""Cost of the quality components per face, on one core.

    python -m benchmarks.bench_components --shared ../shared

Faces come from the capture stage (MTCNN) on LFW photos (250x250) and, where present,
camera-resolution photos (``data/large-photos``), decoded and detected beforehand; only
:func:`facegate.components.measure_components` is timed, after warm-up, each face
``--repeats`` times. Reports the median and 90th percentile per face, and the share of
geometry (pose, margins), the image measures on the 112 px crop and blockiness; and, apart,
what the capture stage's two helpers add: the occlusion components (inside
``measure_components``: the helper on the template crop) and the orientation stage (once
per photo, on the decoded photo), each on one thread.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks import emit
from facegate import CaptureSettings, CaptureStage
from facegate.components import _blockiness, _margins, _template_crop, head_pose, measure_components
from facegate.folder import find_images
from facegate.occlusion import OcclusionModel
from facegate.orientation import OrientationModel
from facegate.runtime import configure_threads

ROOT = Path(__file__).resolve().parents[1]


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def measure(paths, repeats: int) -> dict:
    stage = CaptureStage(settings=CaptureSettings(components=False, orientation=False), threads=1)
    captures = [c for c in (stage.analyse(p) for p in paths) if c.primary is not None]
    if not captures:
        return {"faces": 0}
    occlusion, orientation = OcclusionModel(threads=1), OrientationModel(threads=1)
    for c in captures[:5]:  # warm-up
        measure_components(c.rgb, c.primary, c.faces, occlusion=occlusion)
        orientation(c.rgb)
    total, geometry, image, blocks, helpers, oriented = [], [], [], [], [], []
    for c in captures:
        f = c.primary
        size = (c.rgb.shape[1], c.rgb.shape[0])
        total += _time(lambda: measure_components(c.rgb, f, c.faces, occlusion=occlusion), repeats)
        geometry += _time(lambda: (head_pose(f.landmarks, size), _margins(f.landmarks, size)), repeats)
        crop = _template_crop(c.rgb, f.landmarks)[0]
        image += _time(lambda: _template_crop(c.rgb, f.landmarks), repeats)
        blocks += _time(lambda: _blockiness(c.rgb, f), repeats)
        helpers += _time(lambda: occlusion(crop[None]), repeats)
        oriented += _time(lambda: orientation(c.rgb), repeats)
    q = lambda v, p: float(np.percentile(v, p))  # noqa: E731
    return {"faces": len(captures), "image_sizes": sorted({f"{c.rgb.shape[1]}x{c.rgb.shape[0]}" for c in captures})[:4],
            "ms_per_face_median": statistics.median(total), "ms_per_face_p90": q(total, 90),
            "ms_pose_and_margins_median": statistics.median(geometry),
            "ms_template_crop_median": statistics.median(image),
            "ms_blockiness_median": statistics.median(blocks),
            "ms_occlusion_helper_median": statistics.median(helpers),
            "ms_orientation_stage_median": statistics.median(oriented), "ms_orientation_stage_p90": q(oriented, 90),
            "ms_added_by_both_median": statistics.median(np.add(helpers, oriented))}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--photos", type=int, default=200, help="LFW photos to use")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_threads(1)
    lfw = args.shared / "data" / "lfw-deepfunneled"
    lfw_paths = sorted(lfw.glob("*/*.jpg"))[:: max(1, 13233 // args.photos)][: args.photos] if lfw.is_dir() else \
        sorted((ROOT / "tests" / "fixtures").glob("*.jpg"))
    large = args.shared / "data" / "large-photos"
    report = {"machine": f"{platform.machine()}, 1 OpenCV thread", "lfw": measure(lfw_paths, args.repeats)}
    if large.is_dir():
        report["large_photos"] = measure(find_images(large)[:8], args.repeats)
    emit(report, args.json)


if __name__ == "__main__":
    main()
