"""Peak resident memory of `facegate score` over folders of 1,000 and 10,000 LFW photos.

    python benchmarks/bench_memory.py --counts 1000 10000

Each count runs in its own process (a folder of symbolic links to LFW photos, scored
end to end with JSON-lines output to /dev/null); peak RSS is read from the kernel's
accounting of that child (``os.wait4``). Memory should not grow with the number of files.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(files: list[Path], threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        for i, f in enumerate(files):
            os.symlink(f.resolve(), folder / f"{i:05d}_{f.name}")
        t0 = time.time()
        with open(os.devnull, "w") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "facegate.cli", "score", "--format", "jsonl",
                                     "--threads", str(threads), str(folder)], stdout=sink, cwd=ROOT)
            _, status, usage = os.wait4(proc.pid, 0)
        return {"files": len(files), "seconds": round(time.time() - t0, 1),
                "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "exit": os.waitstatus_to_exitcode(status)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    photos = sorted((args.shared / "data" / "lfw-deepfunneled").glob("*/*.jpg"))
    if not photos:
        sys.exit(f"no LFW photos under {args.shared}")
    print("| files | seconds | photos per second | peak RSS (MiB) |\n|---|---|---|---|")
    for count in args.counts:
        r = run(photos[:count], args.threads)
        print(f"| {r['files']} | {r['seconds']} | {r['files'] / r['seconds']:.1f} | {r['peak_rss_mib']} |", flush=True)


if __name__ == "__main__":
    main()
