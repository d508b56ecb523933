"""Speed of facegate on this machine, side by side with the field's reference backbones.

    python -m benchmarks.bench_speed --threads 2 --json runs/speed.json

After warm-up, with repeated runs (median, 10th and 90th percentiles), on the same
threads and inputs:
- members: parameters and multiply-accumulates (MACs) per face at the input size;
- scoring pre-cropped faces: latency at batch 1, throughput at batch 8/32/64, for each
  test-time view set, with each backend (PyTorch, onnxruntime: the default);
- the arithmetic limit: MACs per face / this CPU's measured matrix-multiply rate;
- detection per frame (MTCNN, YuNet) at 250x250 (LFW), 640x480 and 1280x720;
- end to end (decode, detect, align, score, decide) photos per second on LFW photos;
- reference backbones (MobileFaceNet as in eDifFIQA-T, iResNet-50/100 as in CR-FIQA and
  MagFace) at 112x112 with random weights, and their ratio to facegate's ensemble.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import facegate
from benchmarks.reference_models import REFERENCES
from facegate import CaptureStage, Gate
from facegate.detection import create_detector
from facegate.images import load_rgb
from facegate.models import count_macs
from facegate.runtime import configure_threads
from facegate.scorer import create_scorer

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
    return {"median_ms": statistics.median(ms), "p10_ms": ms[len(ms) // 10], "p90_ms": ms[(len(ms) * 9) // 10],
            "per_second": 1000.0 / statistics.median(ms)}


def matmul_macs_per_second(repeats: int = 20) -> float:
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    t = statistics.median(timed(lambda: torch.mm(a, b), repeats))
    return 1024**3 / t


def lfw_photos(shared: Path, n: int) -> list[Path]:
    files = sorted((shared / "data" / "lfw-deepfunneled").glob("*/*.jpg"))
    if not files:
        fixtures = sorted((ROOT / "tests" / "fixtures").glob("*.jpg"))
        return (fixtures * (n // len(fixtures) + 1))[:n]
    return [files[i] for i in np.linspace(0, len(files) - 1, n).astype(int)]


def real_crops(stage: CaptureStage, files: list[Path], count: int) -> np.ndarray:
    """Crops of real faces from the capture stage, repeated to ``count``."""
    crops = []
    for path in files:
        capture = stage.analyse(path)
        if capture.crop is not None:
            crops.append(capture.crop)
        if len(crops) == count:
            break
    return np.resize(np.stack(crops), (count,) + crops[0].shape)


def bench_scoring(crops: np.ndarray, repeats: int, backend: str, threads: int) -> dict:
    out = {}
    for views in ("none", "flip", "full"):
        scorer = create_scorer(views=views, backend=backend, threads=threads)
        row = {"batch1": summary(timed(lambda: scorer.score(crops[:1]), repeats))}
        for batch in (8, 32, 64):
            row[f"batch{batch}"] = summary(timed(lambda: scorer.score(crops[:batch]), max(5, repeats // 3)), per=batch)
        out[views] = row
    return out


def compare_weights(crops: np.ndarray, folders: list[Path], rounds: int, repeats: int, threads: int) -> dict:
    """Scoring speed of several weights folders, paired: each round times every folder in
    turn (default onnx backend, each spec's own views and the identity view alone), so drift
    in the machine's speed falls on all of them alike."""
    scorers = {(str(f), v): create_scorer(f, views=v, threads=threads) for f in folders for v in ("none", "full")}
    times: dict = {key: {"batch1": [], "batch32": []} for key in scorers}
    for _ in range(rounds):
        for key, scorer in scorers.items():
            times[key]["batch1"] += timed(lambda: scorer.score(crops[:1]), repeats)
            times[key]["batch32"] += timed(lambda: scorer.score(crops[:32]), max(3, repeats // 5), warmup=1)
    out = {}
    for (folder, views), t in times.items():
        spec = scorers[(folder, views)].spec
        out.setdefault(folder, {"spec": spec.name, "input_size": spec.input_size})[views] = {
            "views": list(scorers[(folder, views)].views), "batch1": summary(t["batch1"]),
            "batch32": summary(t["batch32"], per=32)}
    return out


def bench_detection(repeats: int) -> dict:
    group = load_rgb(ROOT / "tests" / "fixtures" / "multiface.jpg")
    frames = {
        "250x250": load_rgb(ROOT / "tests" / "fixtures" / "colin_powell_1.jpg"),
        "640x480": cv2.resize(group, (640, 480), interpolation=cv2.INTER_AREA),
        "1280x720": cv2.resize(group, (1280, 720), interpolation=cv2.INTER_AREA),
    }
    out = {}
    spec = create_scorer().spec
    for name, backend in (("mtcnn", "onnx"), ("mtcnn", "torch"), ("yunet", "onnx")):
        detector = create_detector(name, spec.detector_settings(name), threads=torch.get_num_threads(), backend=backend)
        label = name if name == "yunet" else f"{name} ({'onnxruntime' if backend == 'onnx' else 'facenet-pytorch'})"
        for size, frame in frames.items():
            out[f"{label} {size}"] = summary(timed(lambda: detector.detect(frame), max(5, repeats // 2)))
    return out


def bench_end_to_end(files: list[Path], threads: int) -> dict:
    out = {}
    for detector in ("mtcnn", "yunet"):
        for views in ("none", "full"):
            for workers in (0, 1):
                gate = Gate(views=views, batch_size=16, detector=detector, workers=workers, threads=threads)
                list(gate.assess_many(files[:8]))
                t0 = time.perf_counter()
                statuses = [r.status.value for r in gate.assess_many(files)]
                elapsed = time.perf_counter() - t0
                out[f"{detector}, views={views}, workers={workers}"] = {
                    "photos": len(files), "photos_per_second": len(files) / elapsed,
                    "statuses": {s: statuses.count(s) for s in sorted(set(statuses))}}
    return out


def bench_references(repeats: int) -> dict:
    out = {}
    x1, x32 = torch.randn(1, 3, 112, 112), torch.randn(32, 3, 112, 112)
    for name, build in REFERENCES.items():
        net = build().eval()
        with torch.inference_mode():
            b1 = summary(timed(lambda: net(x1), max(5, repeats // 3)))
            b32 = summary(timed(lambda: net(x32), 3, warmup=1), per=32)
        out[name] = {"params": sum(p.numel() for p in net.parameters()), "macs": count_macs(net, 112),
                     "batch1": b1, "batch32": b32}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--compare-weights", type=Path, nargs="+", default=None, metavar="DIR",
                        help="only: scoring speed per face of these weights folders, paired round by round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of --compare-weights")
    args = parser.parse_args(argv)
    configure_threads(args.threads)
    torch.set_num_threads(args.threads)
    if args.compare_weights:
        stage = CaptureStage(create_scorer(args.compare_weights[0]).spec)
        crops = real_crops(stage, lfw_photos(args.shared, 64), 32)
        r = compare_weights(crops, args.compare_weights, args.rounds, args.repeats, args.threads)
        for folder, row in r.items():
            for views in ("none", "full"):
                b1, b32 = row[views]["batch1"], row[views]["batch32"]
                print(f"{folder} ({row['spec']}, {row['input_size']} px), views {views} {row[views]['views']}: "
                      f"batch 1 {_cell(b1)}, batch 32 per face {_cell(b32)}")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(r, indent=1) + "\n")
        return r

    files = lfw_photos(args.shared, args.photos)
    gate = Gate(threads=args.threads, backend="torch")
    size = gate.spec.input_size
    crops = real_crops(gate.capture, files, 64)
    r = {"machine": f"{platform.machine()} {platform.processor()}".strip(), "threads": args.threads,
         "python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__,
         "facegate": facegate.__version__, "date": time.strftime("%Y-%m-%d"), "input_size": size}
    r["members"] = {name: {"params": sum(p.numel() for p in net.parameters()), "macs": count_macs(net, size)}
                    for name, net in zip(gate.scorer.member_names, gate.scorer.ensemble.members)}
    r["matmul_macs_per_second"] = matmul_macs_per_second()
    r["scoring"] = bench_scoring(crops, args.repeats, "torch", args.threads)
    r["onnxruntime"] = bench_scoring(crops, args.repeats, "onnx", args.threads)
    r["detection"] = bench_detection(args.repeats)
    r["references"] = bench_references(args.repeats)
    r["end_to_end"] = bench_end_to_end(files, args.threads)
    r["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(render(r))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    return r


def _cell(s: dict) -> str:
    return f"{s['median_ms']:.2f} ms ({s['p10_ms']:.2f}-{s['p90_ms']:.2f})"


def render(r: dict) -> str:
    ens_macs = sum(m["macs"] for m in r["members"].values())
    rate = r["matmul_macs_per_second"]
    lines = [f"Machine: {r['machine']}, {r['threads']} threads; Python {r['python']}, torch {r['torch']}, "
             f"OpenCV {r['opencv']}, facegate {r['facegate']}; {r['date']}. Medians, with 10th-90th percentiles.", ""]
    lines += ["### Models", "", "| model | parameters | MACs per face |", "|---|---|---|"]
    for name, m in r["members"].items():
        lines.append(f"| {name} ({r['input_size']} px) | {m['params'] / 1e6:.2f} M | {m['macs'] / 1e6:.1f} M |")
    lines.append(f"| ensemble, per view | {sum(m['params'] for m in r['members'].values()) / 1e6:.2f} M | {ens_macs / 1e6:.1f} M |")
    lines += ["", "### Scoring pre-cropped faces (PyTorch)", "",
              "| views | batch 1 latency | batch 8, per face | batch 32, per face | batch 64, per face | faces/s at 64 | arithmetic limit, faces/s | gap |",
              "|---|---|---|---|---|---|---|---|"]
    for views, s in r["scoring"].items():
        n_views = {"none": 1, "flip": 2, "full": 3}[views]
        limit = rate / (ens_macs * n_views)
        lines.append(f"| {views} | {_cell(s['batch1'])} | {_cell(s['batch8'])} | {_cell(s['batch32'])} | "
                     f"{_cell(s['batch64'])} | {s['batch64']['per_second']:.0f} | {limit:.0f} | "
                     f"{limit / s['batch64']['per_second']:.1f}x |")
    lines.append("")
    lines.append(f"Arithmetic limit: MACs per face / this CPU's 1024x1024 float32 matrix-multiply rate, measured in "
                 f"the same run ({rate / 1e9:.1f} GMAC/s).")
    if r.get("onnxruntime"):
        lines += ["", "### Scoring through onnxruntime (the default backend: member graphs, views in the batch)", "",
                  "| views | batch 1 latency | batch 32, per face | faces/s at 32 |", "|---|---|---|---|"]
        for views, s in r["onnxruntime"].items():
            lines.append(f"| {views} | {_cell(s['batch1'])} | {_cell(s['batch32'])} | {s['batch32']['per_second']:.0f} |")
    lines += ["", "### Detection per frame", "", "| detector, frame | time |", "|---|---|"]
    for name, s in r["detection"].items():
        lines.append(f"| {name} | {_cell(s)} |")
    lines += ["", "### End to end (decode, detect, align, score, decide) on LFW photos, default backend (onnx)", "",
              "| setting | photos | photos/s |", "|---|---|---|"]
    for name, s in r["end_to_end"].items():
        lines.append(f"| {name} | {s['photos']} | {s['photos_per_second']:.1f} |")
    full = r["scoring"]["full"]
    lines += ["", "### Reference FIQA backbones (112x112, random weights)", "",
              "| model | parameters | MACs per face | batch 1 latency | batch 32, per face | time per face vs facegate (views=full, batch 32) |",
              "|---|---|---|---|---|---|"]
    for name, m in r["references"].items():
        ratio = m["batch32"]["median_ms"] / full["batch32"]["median_ms"]
        lines.append(f"| {name} | {m['params'] / 1e6:.1f} M | {m['macs'] / 1e9:.2f} G | {_cell(m['batch1'])} | "
                     f"{_cell(m['batch32'])} | {ratio:.1f}x |")
    lines += ["", f"Peak resident memory of the benchmark process: {r['peak_rss_mib']:.0f} MiB."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
