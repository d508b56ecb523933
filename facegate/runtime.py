"""Threads and inference sessions, chosen once per process.

Every pool that can run work (onnxruntime's intra-op pools, OpenCV's, torch's when torch is
in use) is sized from one number, so that the process never runs more busy threads than it
was given. onnxruntime's threads do not spin while they wait: on a machine where another
process is busy (a kiosk is rarely idle), spinning threads fight that process for the cores
and throughput collapses (docs/performance.md measures it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import ConfigError, WeightsError

__all__ = ["available_cores", "configure_threads", "load_onnx"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def configure_threads(threads: int | None = None) -> int:
    """Fix the thread budget for OpenCV and (when loaded) torch; returns it.

    ``None`` means every available core. Sessions are sized by the caller with the
    returned number (:func:`load_onnx`).
    """
    if threads is None:
        threads = available_cores()
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:  # never import torch just to configure it
        sys.modules["torch"].set_num_threads(threads)
    return threads


def load_onnx(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session for ``path`` with ``threads`` intra-op threads (the calling
    thread included), no inter-op pool and no spin-waiting.

    Raises:
        WeightsError: the file is missing or is not a graph onnxruntime can load.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: ONNX graph not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise WeightsError(f"{path}: cannot load ONNX graph ({exc})") from None
