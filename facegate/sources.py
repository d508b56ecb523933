"""Frame sources for streaming: a webcam index, a video file, a network stream (RTSP/HTTP),
or a folder or glob of frame images, all read with OpenCV and yielded as :class:`Frame`.

Live sources (cameras, network streams) are read on a background thread into a one-frame
buffer: when processing is slower than the camera, older frames are dropped rather than
queued, so the gate never lags, and the count of dropped frames travels with each frame.
Files and folders are read frame by frame, nothing dropped.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import ImageError, SourceError
from .frozen import FrozenValue
from .images import load_rgb

__all__ = ["Frame", "SourceKind", "FrameSource", "classify", "open_source"]

#: FFmpeg's own messages ("moov atom not found", "Connection refused") would reach the user's
#: terminal beside facegate's; the cause is told once, as a SourceError. Set before OpenCV
#: starts its FFmpeg backend; a user's own setting is kept.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _opened_quietly(target) -> "cv2.VideoCapture":
    """``cv2.VideoCapture(target)`` with OpenCV's log silent while the backends are tried
    (they print, for instance, "Camera index out of range" for a missing camera)."""
    logging = cv2.utils.logging
    before = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        return cv2.VideoCapture(target)
    finally:
        logging.setLogLevel(before)


class SourceKind(str, Enum):
    CAMERA = "camera"
    VIDEO = "video"
    STREAM = "stream"
    FRAMES = "frames"


@dataclass(frozen=True, eq=False)
class Frame(FrozenValue):
    """One frame: ``rgb`` is ``(H, W, 3)`` uint8 RGB; ``time`` is seconds since the source
    started (the video's own clock for files); ``dropped`` counts frames skipped just before."""

    index: int
    time: float
    rgb: np.ndarray
    dropped: int = 0
    name: str = ""


def classify(source: str | int) -> SourceKind:
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return SourceKind.CAMERA
    text = str(source)
    if "://" in text:
        return SourceKind.STREAM
    if os.path.isdir(text) or any(ch in text for ch in "*?["):
        return SourceKind.FRAMES
    return SourceKind.VIDEO


class FrameSource:
    """Iterate frames from ``source``; use as a context manager so devices are released.

    Args:
        source: camera index, video path, URL, folder or glob.
        retries: reconnection attempts when a network stream drops (cameras: reopen tries).
        retry_delay: seconds between attempts.
    """

    def __init__(self, source: str | int, *, retries: int = 3, retry_delay: float = 1.0):
        self.source = source
        self.kind = classify(source)
        self.retries = retries
        self.retry_delay = retry_delay
        self.dropped_total = 0
        self.reconnects = 0
        self._capture = None
        self._files: list[str] = []
        self._latest: tuple[int, float, np.ndarray] | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._reader_error: str | None = None
        self._ended = False
        self._open()

    # -- opening ---------------------------------------------------------------------
    def _open(self) -> None:
        if self.kind is SourceKind.FRAMES:
            text = str(self.source)
            pattern = os.path.join(text, "*") if os.path.isdir(text) else text
            self._files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
            if not self._files:
                raise SourceError(f"{self.source}: no frame files found")
            return
        if self.kind is SourceKind.VIDEO and not Path(str(self.source)).is_file():
            raise SourceError(f"{self.source}: video file not found")
        self._capture = self._open_capture()
        if self.kind in (SourceKind.CAMERA, SourceKind.STREAM):
            self._reader = threading.Thread(target=self._read_live, name="facegate-source", daemon=True)
            self._reader.start()

    def _open_capture(self):
        target = int(self.source) if self.kind is SourceKind.CAMERA else str(self.source)
        capture = _opened_quietly(target)
        if not capture.isOpened():
            capture.release()
            what = {"camera": "camera", "video": "video file", "stream": "stream"}[self.kind.value]
            raise SourceError(f"{self.source}: cannot open {what}")
        return capture

    # -- live reading ------------------------------------------------------------------
    def _read_live(self) -> None:
        start, count, failures = time.monotonic(), 0, 0
        while not self._stop.is_set():
            ok, bgr = self._capture.read()
            if not ok or bgr is None:
                failures += 1
                if failures > self.retries:
                    self._reader_error = f"{self.source}: stream stopped delivering frames after {failures - 1} retries"
                    break
                self._capture.release()
                time.sleep(self.retry_delay)
                try:
                    self._capture = self._open_capture()
                    self.reconnects += 1
                except SourceError:
                    continue
                continue
            failures = 0
            with self._cond:
                if self._latest is not None:
                    self.dropped_total += 1  # the previous frame was never taken
                self._latest = (count, time.monotonic() - start, bgr)
                self._cond.notify()
            count += 1
        with self._cond:
            self._ended = True
            self._cond.notify()

    def _next_live(self) -> Frame | None:
        with self._cond:
            while self._latest is None and not self._ended:
                self._cond.wait(timeout=0.5)
            if self._latest is None:
                return None
            index, t, bgr = self._latest
            self._latest = None
        return Frame(index, t, np.ascontiguousarray(bgr[..., ::-1]), name=str(self.source))

    # -- iteration -------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if self.kind is SourceKind.FRAMES:
            for index, path in enumerate(self._files):
                try:
                    rgb = load_rgb(path)
                except ImageError:
                    self.dropped_total += 1  # an unreadable frame file is skipped, and counted
                    continue
                yield Frame(index, float(index), rgb, name=path)
            return
        if self.kind is SourceKind.VIDEO:
            fps = self._capture.get(cv2.CAP_PROP_FPS) or 25.0
            index = 0
            while True:
                ok, bgr = self._capture.read()
                if not ok or bgr is None:
                    if index == 0:
                        raise SourceError(f"{self.source}: no frame could be decoded (corrupt or unsupported video)")
                    return
                yield Frame(index, index / fps, np.ascontiguousarray(bgr[..., ::-1]), name=str(self.source))
                index += 1
        last_index = -1
        while True:
            frame = self._next_live()
            if frame is None:
                if self._reader_error:
                    raise SourceError(self._reader_error)
                return
            dropped = frame.index - last_index - 1
            last_index = frame.index
            yield Frame(frame.index, frame.time, frame.rgb, dropped=max(0, dropped), name=frame.name)

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._capture is not None:
            self._capture.release()

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_source(source: str | int, **options) -> FrameSource:
    """Open ``source`` (see :class:`FrameSource`); raises :class:`SourceError` if it cannot."""
    return FrameSource(source, **options)
