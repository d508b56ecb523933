"""Streaming speed at 640x480 with one face in view: frames per second end to end
(detect, crop, score, track, decide) and latency per frame, for each detector, with and
without test-time views, and with detection every frame or every 3rd frame.

    python -m benchmarks.bench_stream --threads 2 --frames 200
    python -m benchmarks.bench_stream --command --frames 300 --repeats 5

``--command`` times ``facegate stream`` on a 640x480 MJPEG video of those frames as a user
runs it, a new process each time, start-up included: frames / wall seconds, the median of
``--repeats`` runs after a warm-up, detecting every frame and every third.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facegate import Gate
from facegate.images import load_rgb
from facegate.sources import Frame
from facegate.stream import StreamGate

ROOT = Path(__file__).resolve().parents[1]


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


def command_fps(frames: list[np.ndarray], repeats: int) -> None:
    """``facegate stream`` on a video of ``frames``, whole processes: frames per second."""
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "desk.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
        for rgb in frames:
            writer.write(np.ascontiguousarray(rgb[..., ::-1]))
        writer.release()
        print("| `facegate stream`, 640x480 video | detect every | frames/s (median, min-max) |\n|---|---|---|")
        for every in (1, 3):
            rates = []
            for k in range(repeats + 1):
                t0 = time.perf_counter()
                subprocess.run([str(Path(sys.executable).parent / "facegate"), "stream", "--source", str(video),
                                "--out", str(Path(tmp) / f"out{every}-{k}"), "--detect-every", str(every)],
                               check=True, capture_output=True)
                if k:  # the first run warms the file cache
                    rates.append(len(frames) / (time.perf_counter() - t0))
            print(f"| {len(frames)} frames, start-up included | {every} | {statistics.median(rates):.1f} "
                  f"({min(rates):.1f}-{max(rates):.1f}) |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--onnx-only", action="store_true", help="skip the PyTorch backend (no torch import)")
    parser.add_argument("--command", action="store_true", help="time `facegate stream` on a video instead")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    frames = frames_640x480(args.frames)
    if args.command:
        command_fps(frames, args.repeats)
        return
    print("| detector | scoring | views | detect every | frames/s | latency median | latency p95 |\n"
          "|---|---|---|---|---|---|---|")
    backends = ("onnx",) if args.onnx_only else ("onnx", "torch")
    settings = [(d, backend, v, e) for d in ("yunet", "mtcnn") for backend in backends
                for v in ("none", "full") for e in (1, 3)]
    for detector, backend, views, every in settings:
                gate = Gate(detector=detector, views=views, backend=backend, threads=args.threads)
                streamer = StreamGate(gate, detect_every=every)
                for i in range(5):  # warm-up
                    streamer.process(Frame(i, 0.0, frames[i]))
                latencies = []
                t0 = time.perf_counter()
                for i, rgb in enumerate(frames):
                    latencies.append(streamer.process(Frame(i + 5, i / 30, rgb)).latency_ms)
                fps = len(frames) / (time.perf_counter() - t0)
                latencies.sort()
                print(f"| {detector} | {'onnxruntime' if backend == 'onnx' else 'pytorch'} | {views} | {every} | {fps:.1f} | {statistics.median(latencies):.1f} ms | "
                      f"{latencies[int(0.95 * (len(latencies) - 1))]:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
