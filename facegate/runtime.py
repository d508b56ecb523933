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

__all__ = ["available_cores", "configure_threads", "process_threads", "load_onnx"]

#: The process's thread budget once chosen (None: not yet), and whether torch's pool has it.
_BUDGET: int | None = None
_TORCH_SIZED = False


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _checked(threads) -> int:
    if threads is None:
        return available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    return threads


def configure_threads(threads: int | None = None) -> int:
    """Choose the process's thread budget and size OpenCV's and (when loaded) torch's pools
    with it; returns it. ``None`` means every available core.

    This is the process's choice (a command's ``--threads``, a service's start-up, a
    worker process), made where the process starts; constructors do not call it, so two
    gates in one process never resize each other's pools (:func:`process_threads`).
    Sessions are sized by their owners (:func:`load_onnx`).
    """
    global _BUDGET, _TORCH_SIZED
    threads = _checked(threads)
    import cv2

    cv2.setNumThreads(threads)
    if "torch" in sys.modules:  # never import torch just to configure it
        sys.modules["torch"].set_num_threads(threads)
        _TORCH_SIZED = True
    _BUDGET = threads
    return threads


def process_threads(requested: int | None = None) -> int:
    """The threads a new gate or stage may use: ``requested`` when given (for its own
    sessions), else the process's budget. The first call in a process that has not chosen a
    budget chooses it (:func:`configure_threads` with ``requested``); later calls never
    change the process's pools."""
    if _BUDGET is None:
        return configure_threads(requested)
    return _BUDGET if requested is None else _checked(requested)


def torch_imported() -> None:
    """Size torch's pool with the process's budget once torch is imported after the budget
    was chosen (torch's pool is process-wide: a scorer or detector cannot own one)."""
    global _TORCH_SIZED
    if _BUDGET is not None and not _TORCH_SIZED and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(_BUDGET)
        _TORCH_SIZED = True


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
