"""Run every benchmark and write docs/performance.md.

    python -m benchmarks.run_all            # speed, streaming, then memory at 1,000 and 10,000 files
    python -m benchmarks.run_all --quick    # speed only, fewer photos
    python -m benchmarks.run_all --no-memory --before /tmp/before   # with an earlier checkout's command figures
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks import bench_runtime, bench_speed

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs (about 12 min)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of an earlier facegate (git worktree add ...): its command-level figures "
                             "are measured in the same run, beside this tree's")
    args = parser.parse_args(argv)
    photos = 60 if args.quick else 300
    trees = ([args.before.resolve()] if args.before else []) + [ROOT]
    runtime = [bench_runtime.measure(tree, ROOT.parent / "shared", photos, 3) for tree in trees]
    speed = bench_speed.main(["--threads", str(args.threads), "--photos", str(photos),
                              "--json", str(ROOT / "runs" / "speed.json")])
    stream = subprocess.run([sys.executable, "-m", "benchmarks.bench_stream", "--threads",
                             str(args.threads), "--frames", "60" if args.quick else "150"],
                            capture_output=True, text=True, check=True, cwd=ROOT).stdout
    stream = "\n".join(line for line in stream.splitlines() if not line.startswith("[torch.onnx]"))  # exporter chatter
    memory = ""
    if not args.quick and not args.no_memory:
        memory = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_memory.py"), "--counts", "1000",
                                 "10000", "--threads", str(args.threads)], capture_output=True, text=True,
                                check=True).stdout
    text = ["# Performance", "",
            f"Made by `python -m benchmarks.run_all{' --quick' if args.quick else ''}"
            f"{' --no-memory' if args.no_memory else ''}` on {speed['date']}."
            + (" Memory: see [results.md](results.md)." if args.no_memory else ""), "",
            "### The `facegate` command as a user runs it" + (f" (before: {runtime[0]['commit']}, after: "
                                                           f"{runtime[-1]['commit']})" if args.before else ""), "",
            f"Whole commands, each a new process (`benchmarks/bench_runtime.py`: medians of 3; throughput with "
            f"start-up subtracted; {photos} LFW photos; a video of 150 frames). Default settings: "
            f"threads = every available core.", "",
            bench_runtime.render(runtime), "",
            bench_speed.render(speed), "", "### Streaming at 640x480, one face in view", "", stream.strip()]
    if memory:
        text += ["", "### Memory over a folder (`facegate score`, one process per count)", "", memory.strip()]
    args.out.write_text("\n".join(text) + "\n")
    print(args.out)


if __name__ == "__main__":
    main()
