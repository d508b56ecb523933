"""Streaming speed at 640x480 with one face in view: frames per second end to end
(detect, crop, score, track, decide) and latency per frame, for each detector, with and
without test-time views, and with detection every frame or every 3rd frame.

    python benchmarks/bench_stream.py --threads 2 --frames 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from facegate import Gate  # noqa: E402
from facegate.images import load_rgb  # noqa: E402
from facegate.sources import Frame  # noqa: E402
from facegate.stream import StreamGate  # noqa: E402


def frames_640x480(count: int) -> list[np.ndarray]:
    """A face (an LFW photo, enlarged as a webcam would see a person at a desk) drifting
    slowly across a 640x480 frame."""
    face = cv2.resize(load_rgb(ROOT / "tests" / "fixtures" / "tony_blair_1.jpg"), (360, 360))
    out = []
    for i in range(count):
        canvas = np.full((480, 640, 3), 100, np.uint8)
        x = 140 + int(20 * np.sin(i / 15))
        canvas[60:420, x : x + 360] = face
        out.append(canvas)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    frames = frames_640x480(args.frames)
    import tempfile

    from facegate.export import export_onnx
    from facegate.scorer import Scorer

    tmp = tempfile.TemporaryDirectory()
    graphs = {v: export_onnx(Scorer(views=v), Path(tmp.name) / f"{v}.onnx") for v in ("none", "full")}
    print("| detector | scoring | views | detect every | frames/s | latency median | latency p95 |\n"
          "|---|---|---|---|---|---|---|")
    settings = [(d, backend, v, e) for d in ("yunet", "mtcnn") for backend in ("onnxruntime", "pytorch")
                for v in ("none", "full") for e in (1, 3)]
    for detector, backend, views, every in settings:
                gate = Gate(detector=detector, views=views, onnx=graphs[views] if backend == "onnxruntime" else None)
                streamer = StreamGate(gate, detect_every=every)
                for i in range(5):  # warm-up
                    streamer.process(Frame(i, 0.0, frames[i]))
                latencies = []
                t0 = time.perf_counter()
                for i, rgb in enumerate(frames):
                    latencies.append(streamer.process(Frame(i + 5, i / 30, rgb)).latency_ms)
                fps = len(frames) / (time.perf_counter() - t0)
                latencies.sort()
                print(f"| {detector} | {backend} | {views} | {every} | {fps:.1f} | {statistics.median(latencies):.1f} ms | "
                      f"{latencies[int(0.95 * (len(latencies) - 1))]:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
