"""What a user of the `facegate` command feels: start-up, memory, throughput with and without
another busy process, and stream frame rate. Every figure is a whole command run as a new
process, so it can be measured on any checkout of facegate, before and after a change:

    python -m benchmarks.bench_runtime --json runs/runtime-after.json
    git worktree add /tmp/before f5e8060
    python -m benchmarks.bench_runtime --tree /tmp/before --json runs/runtime-before.json
    python -m benchmarks.bench_runtime --compare runs/runtime-before.json runs/runtime-after.json

Figures (median of ``--repeats`` runs where it is cheap):
- `facegate score one.jpg`: wall time and peak resident memory (``os.wait4``);
- `python -c "import facegate"` and `"from facegate import Gate"`: wall time (and
  `python -c pass` for the interpreter alone);
- folder throughput with default settings: ``(N - 1) / (T(N photos) - T(1 photo))``, so
  start-up is not counted; the same with a CPU-bound process running beside it;
- `facegate stream` on a 640x480 video, detecting every frame, default settings:
  ``(150 - 30) / (T(150 frames) - T(30 frames))`` frames per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ONE_PHOTO = ROOT / "tests" / "fixtures" / "colin_powell_1.jpg"


#: Runs the measured command and reports its wall time and peak memory. A child's peak RSS
#: (``ru_maxrss``) starts at its parent's resident size when it is forked, so a benchmark
#: process that has loaded torch would lend the command a gigabyte it never used; this small
#: intermediate process forks the command instead.
_LAUNCHER = """
import json, os, subprocess, sys, time
t0 = time.perf_counter()
with open(os.devnull, "w") as sink:
    child = subprocess.Popen(sys.argv[1:], stdout=sink, stderr=sink)
    _, status, usage = os.wait4(child.pid, 0)
print(json.dumps([time.perf_counter() - t0, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)]))
"""


def run(args: list[str], tree: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of ``python args`` with ``tree`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, sys.executable, *args], cwd=tree, env=env,
                         capture_output=True, text=True, check=True).stdout
    seconds, peak, code = json.loads(out)
    return seconds, peak, code


def median_run(args: list[str], tree: Path, repeats: int) -> dict:
    runs = [run(args, tree) for _ in range(repeats)]
    return {"seconds": statistics.median(r[0] for r in runs), "peak_mib": statistics.median(r[1] for r in runs),
            "exit": runs[0][2]}


def photo_folder(shared: Path, count: int, work: Path) -> Path:
    folder = work / f"photos{count}"
    folder.mkdir()
    photos = sorted((shared / "data" / "lfw-deepfunneled").glob("*/*.jpg"))
    if not photos:
        sys.exit(f"no LFW photos under {shared}")
    for i in np.linspace(0, len(photos) - 1, count).astype(int):
        os.symlink(photos[i], folder / f"{i:05d}_{photos[i].name}")
    return folder


def throughput(tree: Path, folder: Path, one: Path, repeats: int) -> float:
    count = len(list(folder.iterdir()))
    t_one = median_run(["-m", "facegate.cli", "score", "--format", "jsonl", str(one)], tree, repeats)["seconds"]
    t_all = median_run(["-m", "facegate.cli", "score", "--format", "jsonl", str(folder)], tree, 1)["seconds"]
    return (count - 1) / (t_all - t_one)


def stream_video(path: Path, count: int) -> Path:
    from benchmarks.bench_stream import frames_640x480

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    for rgb in frames_640x480(count):
        writer.write(np.ascontiguousarray(rgb[..., ::-1]))
    writer.release()
    return path


def stream_fps(tree: Path, video: Path, work: Path, repeats: int) -> float:
    def seconds(frames: int) -> float:
        return median_run(["-m", "facegate.cli", "stream", "--source", str(video), "--out", str(work / f"s{frames}"),
                           "--max-frames", str(frames)], tree, repeats)["seconds"]

    return (150 - 30) / (seconds(150) - seconds(30))


def measure(tree: Path, shared: Path, photos: int, repeats: int) -> dict:
    r = {"tree": str(tree), "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree,
                                                      capture_output=True, text=True).stdout.strip(),
         "machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
         "date": time.strftime("%Y-%m-%d")}
    r["python_alone_s"] = median_run(["-c", "pass"], tree, repeats)["seconds"]
    r["import_s"] = median_run(["-c", "import facegate"], tree, repeats)["seconds"]
    r["import_gate_s"] = median_run(["-c", "from facegate import Gate"], tree, repeats)["seconds"]
    one = median_run(["-m", "facegate.cli", "score", str(ONE_PHOTO)], tree, repeats)
    r["score_one_s"], r["score_one_peak_mib"] = one["seconds"], one["peak_mib"]
    r["help_s"] = median_run(["-m", "facegate.cli", "--help"], tree, repeats)["seconds"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = photo_folder(shared, photos, work)
        first = next(folder.iterdir())
        r["folder_photos"] = photos
        r["folder_photos_per_s"] = throughput(tree, folder, first, repeats)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(1.0)
            r["folder_photos_per_s_busy"] = throughput(tree, folder, first, repeats)
        finally:
            busy.kill()
            busy.wait()
        video = stream_video(work / "visit.avi", 150)
        r["stream_fps"] = stream_fps(tree, video, work, repeats)
    return r


ROWS = [
    ("`python -c pass` (the interpreter alone)", "python_alone_s", "{:.2f} s"),
    ("`import facegate`", "import_s", "{:.2f} s"),
    ("`from facegate import Gate`", "import_gate_s", "{:.2f} s"),
    ("`facegate --help`", "help_s", "{:.2f} s"),
    ("`facegate score one.jpg`, wall", "score_one_s", "{:.2f} s"),
    ("`facegate score one.jpg`, peak memory", "score_one_peak_mib", "{:.0f} MiB"),
    ("folder of LFW photos, default settings", "folder_photos_per_s", "{:.1f} photos/s"),
    ("the same, with a CPU-bound process beside it", "folder_photos_per_s_busy", "{:.1f} photos/s"),
    ("`facegate stream`, 640x480 video, detecting every frame", "stream_fps", "{:.1f} fps"),
]


def render(results: list[dict]) -> str:
    head = "| figure | " + " | ".join(f"{r['commit']}" for r in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]
    for label, key, fmt in ROWS:
        lines.append(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in results) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout of facegate to measure")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--compare", type=Path, nargs="+", default=None, help="render saved results side by side")
    args = parser.parse_args(argv)
    if args.compare:
        print(render([json.loads(p.read_text()) for p in args.compare]))
        return
    result = measure(args.tree.resolve(), args.shared, args.photos, args.repeats)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(render([result]))


if __name__ == "__main__":
    main()
