"""Camera-resolution photos beside LFW photos: seconds per photo, peak memory, and agreement
of the working resolution with full resolution.

    python -m benchmarks.bench_large --shared ../shared

Each timed set runs in a fresh process (so peak memory is that set's own): a default Gate
(MTCNN, all views, 2 threads) assesses every photo of ``data/large-photos`` (24 photos,
3-14 megapixels) or the first ``--lfw`` LFW photos (250x250), after one warm-up photo. The
large photos run twice: at the working resolution (the default, :mod:`facegate.working`) and
at full resolution (``Gate(working=False)``). Reports the median and largest seconds per
photo and the process's peak resident memory; the time ratio again with both sets in one
process, a photo of each in turn (``paired``); and compares working and full resolution on
every large photo: decision, reasons, the faces the decision counts, landmarks (share of the
eye distance) and score (issue 17).
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
gate = Gate(threads=2, **json.loads(sys.argv[2]))
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


_PAIRED = r"""
import json, statistics, sys, time
from facegate import Gate
lfw, large = json.loads(sys.argv[1]), json.loads(sys.argv[2])
gate = Gate(threads=2)
gate.assess(lfw[0]); gate.assess(large[0])
rounds = []
for _ in range(int(sys.argv[3])):
    times = {"lfw": [], "large": []}
    for i in range(max(len(lfw), len(large))):  # interleaved: both sets see the same machine
        for name, paths in (("lfw", lfw), ("large", large)):
            if i < len(paths):
                t0 = time.perf_counter(); gate.assess(paths[i]); times[name].append(time.perf_counter() - t0)
    lfw_s, large_s = statistics.median(times["lfw"]), statistics.median(times["large"])
    rounds.append({"lfw_median_s": round(lfw_s, 4), "large_median_s": round(large_s, 4),
                   "ratio": round(large_s / lfw_s, 2)})
print(json.dumps({"rounds": rounds, "ratio_median": statistics.median(r["ratio"] for r in rounds)}))
"""


def _paired(lfw: list[str], large: list[str], rounds: int = 4) -> dict:
    """Both sets in one process, a photo of each in turn, ``rounds`` times: the time ratio
    with the machine's drift between separate runs taken out (LFW photos that follow a large
    one start with colder caches, which leans the other way)."""
    out = subprocess.run([sys.executable, "-c", _PAIRED, json.dumps(lfw), json.dumps(large), str(rounds)],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _run(paths: list[str], **options) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(paths), json.dumps(options)], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def agreement(paths: list[str]) -> list[dict]:
    """The working resolution against full resolution, photo by photo."""
    import numpy as np

    from facegate import Gate

    full, working = Gate(threads=2, working=False), Gate(threads=2)
    rows = []
    for path in paths:
        a, b = full.assess(path), working.assess(path)
        row = {"photo": Path(path).name, "status": [a.status.value, b.status.value],
               "same_reasons": a.reasons == b.reasons, "faces": [len(a.faces), len(b.faces)]}
        if a.face is not None and b.face is not None:
            gap = np.abs(np.array(a.face.landmarks) - np.array(b.face.landmarks)).max() / a.face.eye_distance
            row["landmarks_pct_eyes"] = round(100 * float(gap), 2)
            row["score_diff"] = round(b.score - a.score, 2)
            row["compression"] = [round(r.components.value("compression"), 2) for r in (a, b)]
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--lfw", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    lfw = sorted(str(p) for p in (args.shared / "data" / "lfw-deepfunneled").glob("*/*.jpg"))[:: 97][: args.lfw]
    large = sorted(str(p) for p in (args.shared / "data" / "large-photos").glob("*.jpg"))
    report = {"lfw": _run(lfw), "large-photos": _run(large), "large-photos full resolution": _run(large, working=False)}
    report["time_ratio_median"] = round(report["large-photos"]["median_s"] / report["lfw"]["median_s"], 1)
    report["paired"] = _paired(lfw, large)
    rows = agreement(large)
    with_face = [r for r in rows if "score_diff" in r]
    report["agreement"] = {
        "same decision and reasons": sum(r["status"][0] == r["status"][1] and r["same_reasons"] for r in rows),
        "photos": len(rows),
        "largest landmark gap, % of eye distance": max(r["landmarks_pct_eyes"] for r in with_face),
        "largest score gap": max(abs(r["score_diff"]) for r in with_face),
        "rows": rows,
    }
    emit(report, args.json)


if __name__ == "__main__":
    main()
