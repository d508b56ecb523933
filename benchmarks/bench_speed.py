"""Speed of the shipped gate on this machine: per-face scoring and end-to-end throughput.

    python benchmarks/bench_speed.py --threads 2 --photos 200

Measures, after warm-up, with repeated runs (median and spread):
- per-face scoring latency at batch 1 and throughput at batch 32, for each view set;
- MTCNN detection time per LFW photo (250x250) and per 640x480 frame;
- end-to-end photos per second (decode, detect, align, score, decide) on LFW photos;
- parameters and multiply-accumulates per face of each member at the input size.
Prints a Markdown table and writes JSON beside it with --json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import facegate
from facegate import Gate
from facegate.images import load_rgb
from facegate.detection import create_detector
from facegate.models import count_macs
from facegate.scorer import Scorer

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def summary(times: list[float], per: int = 1) -> dict:
    ms = sorted(t * 1000 / per for t in times)
    return {"median_ms": statistics.median(ms), "p10_ms": ms[len(ms) // 10], "p90_ms": ms[(len(ms) * 9) // 10]}


def macs_per_face(scorer: Scorer) -> dict:
    size = scorer.spec.input_size
    return {
        name: {"params": sum(p.numel() for p in net.parameters()), "macs": count_macs(net, size)}
        for name, net in zip(scorer.member_names, scorer.ensemble.members)
    }


def photos(shared: Path, n: int) -> list[Path]:
    lfw = shared / "data" / "lfw-deepfunneled"
    if lfw.is_dir():
        files = sorted(lfw.glob("*/*.jpg"))
        return [files[i] for i in np.linspace(0, len(files) - 1, n).astype(int)]
    fixtures = sorted((ROOT / "tests" / "fixtures").glob("*.jpg"))
    return (fixtures * (n // len(fixtures) + 1))[:n]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
               "torch": torch.__version__, "facegate": facegate.__version__,
               "date": time.strftime("%Y-%m-%d")}
    rng = np.random.default_rng(0)
    files = photos(args.shared, args.photos)
    gate = Gate(threads=args.threads)
    size = gate.spec.input_size
    # Real aligned crops from the photos, so the scorer sees faces, not noise.
    crops = []
    for path in files[:64]:
        rgb = load_rgb(path)
        result = gate.assess(rgb, color_order="rgb")
        if result.face is not None:
            crops.append(gate.spec.crop(rgb, result.face.landmarks))
    crops = np.stack(crops)
    results["members"] = macs_per_face(gate.scorer)

    scoring = {}
    for views in ("none", "flip", "full"):
        scorer = Scorer(views=views)
        one = crops[:1]
        batch = crops[:32] if len(crops) >= 32 else np.resize(crops, (32, size, size, 3))
        scoring[views] = {
            "batch1": summary(timed(lambda: scorer.score(one), args.repeats)),
            "batch32_per_face": summary(timed(lambda: scorer.score(batch), max(5, args.repeats // 3)), per=32),
        }
    results["scoring"] = scoring

    lfw_rgb = load_rgb(files[0])
    frame = np.ascontiguousarray(np.pad(lfw_rgb, ((115, 115), (195, 195), (0, 0)), mode="edge"))  # 480x640
    results["detection"] = {}
    for name in ("mtcnn", "yunet"):
        detector = create_detector(name)
        results["detection"][f"{name} 250x250 (LFW)"] = summary(timed(lambda: detector.detect(lfw_rgb), args.repeats))
        results["detection"][f"{name} 640x480"] = summary(timed(lambda: detector.detect(frame), args.repeats))

    end_to_end = {}
    for detector_name in ("mtcnn", "yunet"):
        for views in ("none", "full"):
            g = Gate(views=views, threads=args.threads, batch_size=16, detector=detector_name)
            list(g.assess_many(files[:8]))
            t0 = time.perf_counter()
            statuses = [r.status.value for r in g.assess_many(files)]
            elapsed = time.perf_counter() - t0
            end_to_end[f"{detector_name}, views={views}"] = {
                "photos": len(files), "seconds": elapsed, "photos_per_second": len(files) / elapsed,
                "statuses": {s: statuses.count(s) for s in sorted(set(statuses))}}
    results["end_to_end"] = end_to_end

    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


def render(r: dict) -> str:
    lines = [f"Machine: {r['machine']}; torch {r['torch']}; facegate {r['facegate']}; {r['date']}", ""]
    lines += ["| model | parameters | MACs per face |", "|---|---|---|"]
    for name, m in r["members"].items():
        lines.append(f"| {name} | {m['params'] / 1e6:.2f} M | {m['macs'] / 1e6:.1f} M |")
    lines += ["", "| views | batch 1, ms per face | batch 32, ms per face |", "|---|---|---|"]
    for views, s in r["scoring"].items():
        b1, b32 = s["batch1"], s["batch32_per_face"]
        lines.append(f"| {views} | {b1['median_ms']:.2f} (p10 {b1['p10_ms']:.2f}, p90 {b1['p90_ms']:.2f}) | "
                     f"{b32['median_ms']:.2f} (p10 {b32['p10_ms']:.2f}, p90 {b32['p90_ms']:.2f}) |")
    lines += ["", "| detection | median ms | p10 | p90 |", "|---|---|---|---|"]
    for name, s in r["detection"].items():
        lines.append(f"| {name} | {s['median_ms']:.1f} | {s['p10_ms']:.1f} | {s['p90_ms']:.1f} |")
    lines += ["", "| end to end (decode, detect, align, score, decide) | photos | photos per second |", "|---|---|---|"]
    for setting, s in r["end_to_end"].items():
        lines.append(f"| {setting} | {s['photos']} | {s['photos_per_second']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
