"""Camera-resolution photos beside LFW photos: seconds per photo and peak memory.

    python -m benchmarks.bench_large --shared ../shared

Each set runs in a fresh process (so peak memory is that set's own): a default Gate
(MTCNN, all views, 2 threads) assesses every photo of ``data/large-photos`` (24 photos,
3-14 megapixels) or the first ``--lfw`` LFW photos (250x250), after one warm-up photo.
Reports the median and largest seconds per photo and the process's peak resident memory.
This is the baseline for issue 17 (working resolution).

    python -m benchmarks.bench_large --shared ../shared --working

times the same with refined landmarks, at full resolution and at the working resolution
(``Gate(working=True)``, MTCNN with ``refine_landmarks``), and compares the two on every
large photo: landmarks (share of the eye distance), score, status, reasons, faces, and the
compression component.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks import emit

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, statistics, sys, time
from facegate import Gate
from PIL import Image
paths = json.loads(sys.argv[1])
options = json.loads(sys.argv[2])
if options.get("refine"):
    from facegate.detection import MTCNNDetector
    options["detector"] = MTCNNDetector(refine_landmarks=options.pop("refine"), threads=2)
gate = Gate(threads=2, **options)
gate.assess(paths[0])
times, pixels = [], []
for p in paths:
    t0 = time.perf_counter(); gate.assess(p); times.append(time.perf_counter() - t0)
    with Image.open(p) as im:
        pixels.append(im.width * im.height)
print(json.dumps({"photos": len(paths), "megapixels": [round(min(pixels) / 1e6, 1), round(max(pixels) / 1e6, 1)],
                  "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3),
                  "photos_per_s": round(len(times) / sum(times), 2),
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def _run(paths: list[str], **options) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(paths), json.dumps(options)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def agreement(paths: list[str]) -> list[dict]:
    """Working resolution against full resolution, photo by photo (refined landmarks in both)."""
    import numpy as np

    from facegate import Gate
    from facegate.detection import MTCNNDetector

    detector = MTCNNDetector(refine_landmarks=True, threads=2)
    full, working = Gate(threads=2, detector=detector), Gate(threads=2, detector=detector, working=True)
    rows = []
    for path in paths:
        a, b = full.assess(path), working.assess(path)
        row = {"photo": Path(path).name, "status": [a.status.value, b.status.value],
               "same_reasons": a.reasons == b.reasons, "faces": [len(a.faces), len(b.faces)]}
        if a.face is not None and b.face is not None:
            row["landmarks_pct_eyes"] = round(100 * float(np.abs(np.array(a.face.landmarks) - np.array(b.face.landmarks)).max())
                                              / a.face.eye_distance, 2)
        if a.score is not None and b.score is not None:
            row["score_diff"] = round(b.score - a.score, 2)
        if a.components is not None and b.components is not None:
            row["compression"] = [a.components.value("compression"), b.components.value("compression")]
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--lfw", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--working", action="store_true", help="time and compare the working resolution")
    args = parser.parse_args(argv)
    lfw = sorted(str(p) for p in (args.shared / "data" / "lfw-deepfunneled").glob("*/*.jpg"))[:: 97][: args.lfw]
    large = sorted(str(p) for p in (args.shared / "data" / "large-photos").glob("*.jpg"))
    report = {"lfw": _run(lfw), "large-photos": _run(large)}
    report["time_ratio_median"] = round(report["large-photos"]["median_s"] / report["lfw"]["median_s"], 1)
    if args.working:
        report["lfw refined"] = _run(lfw, refine=True)
        report["large-photos refined"] = _run(large, refine=True)
        report["large-photos working"] = _run(large, refine=True, working=True)
        report["working_time_ratio_median"] = round(
            report["large-photos working"]["median_s"] / report["lfw refined"]["median_s"], 1)
        report["agreement"] = agreement(large)
    emit(report, args.json)


if __name__ == "__main__":
    main()
