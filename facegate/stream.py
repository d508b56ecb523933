"""Streaming gate: faces tracked across frames, one decision per visit, best shot kept.

Per frame: detect (every ``detect_every`` frames; in between, faces stay where they were
last found), crop, score all faces in one batch, decide each face alone (other people in
view are separate tracks, not a rejection), then update the tracks:

- a track is **accepted** once its score stays at or above the threshold, with no other
  rejection reason, for ``accept_frames`` frames in a row (hysteresis: it never flips back);
- its **best shot** is the highest-scoring acceptable frame within ``best_window`` frames of
  acceptance, written once the window closes or the person leaves;
- a track that leaves (unseen for ``max_age`` frames) without being accepted is **rejected**
  with its dominant reason as a prompt a person can act on ("move closer", "more light", ...).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from .detection import Face
from .frozen import FrozenValue
from .gate import Gate
from .policy import Policy, Status, decide
from .sources import Frame, FrameSource, open_source

__all__ = ["StreamGate", "StreamResult", "TrackView", "PROMPTS", "diagnose"]

#: What a person in front of the camera should do, by cause.
PROMPTS = {
    "face_too_small": "move closer",
    "pose": "face the camera",
    "dark": "more light",
    "bright": "less light",
    "blur": "hold still",
    "low_confidence": "face the camera",
    "low_quality": "look straight at the camera",
}


def diagnose(crop: np.ndarray, face: Face, reasons: tuple[str, ...]) -> str:
    """The most likely cause of a rejection, as a key of :data:`PROMPTS`.

    Low quality is split by cheap measurements on the aligned crop: brightness of the
    central face region, its sharpness (variance of the Laplacian), and head turn (nose
    offset from the eyes' midpoint, in eye distances)."""
    if "face_too_small" in reasons:
        return "face_too_small"
    h, w = crop.shape[:2]
    centre = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    brightness = float(centre.mean())
    if brightness < 70:
        return "dark"
    if brightness > 190:
        return "bright"
    # image cues come before the detector's doubt: blur and poor light also lower its confidence
    if cv2.Laplacian(centre, cv2.CV_64F).var() * (128.0 / w) ** 2 < 60:
        return "blur"
    if "low_confidence" in reasons:
        return "low_confidence"
    eyes_mid = face.landmarks[:2].mean(0)
    turn = abs(face.landmarks[2, 0] - eyes_mid[0]) / max(face.eye_distance, 1e-6)
    if turn > 0.3:
        return "pose"
    return "low_quality"


@dataclass
class _Track:
    id: int
    face: Face
    first_frame: int
    last_seen: int
    frames: int = 0
    streak: int = 0
    accepted_at: int | None = None
    best: tuple[float, Frame, Face] | None = None
    causes: Counter = field(default_factory=Counter)
    done: bool = False


@dataclass(frozen=True, eq=False)
class TrackView(FrozenValue):
    """One face in one frame: its track, score, per-frame status and prompt."""

    track: int
    face: Face
    score: float
    status: Status
    reasons: tuple[str, ...]
    prompt: str | None
    track_state: str  # "pending", "accepted" or "rejected"


@dataclass(frozen=True, eq=False)
class StreamResult(FrozenValue):
    """What happened at one processed frame: faces seen and decisions made (``frame`` is
    the frame itself, for drawing)."""

    index: int
    time: float
    dropped: int
    faces: tuple[TrackView, ...]
    events: tuple[dict, ...]
    latency_ms: float
    frame: Frame | None = None


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class StreamGate:
    """Gate a stream of frames.

    Args:
        gate: the :class:`Gate` whose detector, scorer and policy are used.
        accept_frames: consecutive acceptable frames before a track is accepted.
        best_window: frames after acceptance in which the best shot is sought.
        max_age: frames a track may go unseen before its visit ends.
        min_track_frames: a visit shorter than this ends without a decision (a glimpse).
        detect_every: run the detector every k-th frame; faces are held in between.
        iou: overlap needed to continue a track.
        out_dir: where best shots (image + JSON sidecar) are written (None: not written).
        events: JSON-lines file for events (None: not written).
        on_event: called with each event as it is emitted (e.g. to print it).
    """

    def __init__(self, gate: Gate, *, accept_frames: int = 3, best_window: int = 10, max_age: int = 5,
                 min_track_frames: int = 3, detect_every: int = 1, iou: float = 0.3,
                 out_dir: str | Path | None = None, events: str | Path | None = None,
                 on_event: Callable[[dict], None] | None = None):
        self.gate = gate
        # one face per track: other people are other tracks, not a reason to reject
        self.policy: Policy = replace(gate.policy, reject_multiple_faces=False)
        self.accept_frames, self.best_window, self.max_age = accept_frames, best_window, max_age
        self.min_track_frames, self.detect_every, self.iou = min_track_frames, max(1, detect_every), iou
        self.out_dir = Path(out_dir) if out_dir else None
        self.events_path = Path(events) if events else None
        self._tracks: list[_Track] = []
        self._next_id = 1
        self._events_fh = None
        self.on_event = on_event
        #: frames processed, frames the source dropped, and events emitted by kind
        self.counts: Counter = Counter()

    # -- public ----------------------------------------------------------------------
    def run(self, source: str | int | FrameSource, *, max_frames: int | None = None,
            duration: float | None = None) -> Iterator[StreamResult]:
        """Process ``source`` frame by frame; a generator, so stop whenever you like.
        ``duration`` is seconds of wall-clock time, for every kind of source. Closing the
        generator (or an exception, Ctrl-C included) finishes open tracks and flushes the
        outputs."""
        owned = not isinstance(source, FrameSource)
        frames = open_source(source) if owned else source
        start = time.monotonic()
        try:
            for n, frame in enumerate(frames):
                if max_frames is not None and n >= max_frames:
                    break
                if duration is not None and time.monotonic() - start > duration:
                    break
                yield self.process(frame)
        finally:
            self.finish()
            if owned:
                frames.close()

    def process(self, frame: Frame) -> StreamResult:
        t0 = time.perf_counter()
        capture = self.gate.capture
        if frame.index % self.detect_every == 0 or not self._tracks:
            faces = capture.detector.detect(frame.rgb)
        else:  # hold each live track's face where it was last found
            faces = [t.face for t in self._tracks if not t.done]
        crops = [capture.crop(frame.rgb, f) for f in faces]
        scores = self.gate.scorer.score(np.stack(crops)).ensemble if crops else []
        events: list[dict] = []
        views = []
        matched = self._match(faces, frame.index)
        for face, crop, score, track in zip(faces, crops, scores, matched):
            status, reasons = decide(self.policy, [face], face, float(score))
            cause = None if status is Status.ACCEPTED else diagnose(crop, face, reasons)
            events += self._observe(track, frame, face, float(score), status, cause)
            state = "accepted" if track.accepted_at is not None else "pending"
            views.append(TrackView(track.id, face, float(score), status, reasons,
                                   None if cause is None else PROMPTS[cause], state))
        events += self._expire(frame.index)
        for event in events:
            self._emit(event)
        self.counts["frames"] += 1
        self.counts["dropped"] += frame.dropped
        return StreamResult(frame.index, frame.time, frame.dropped, tuple(views), tuple(events),
                            (time.perf_counter() - t0) * 1000, frame)

    def finish(self) -> list[dict]:
        """End every open track (stream over): emit its decision; flush and close files."""
        events = []
        for track in self._tracks:
            events += self._close(track)
        self._tracks = []
        for event in events:
            self._emit(event)
        if self._events_fh is not None:
            self._events_fh.close()
            self._events_fh = None
        return events

    # -- tracking --------------------------------------------------------------------
    def _match(self, faces: list[Face], index: int) -> list[_Track]:
        live = [t for t in self._tracks if not t.done]
        pairs = sorted(((_iou(f.box, t.face.box), i, j) for i, f in enumerate(faces) for j, t in enumerate(live)),
                       reverse=True)
        chosen: dict[int, _Track] = {}
        used = set()
        for overlap, i, j in pairs:
            if overlap < self.iou or i in chosen or j in used:
                continue
            chosen[i] = live[j]
            used.add(j)
        result = []
        for i, face in enumerate(faces):
            track = chosen.get(i)
            if track is None:
                track = _Track(self._next_id, face, index, index)
                self._next_id += 1
                self._tracks.append(track)
            track.face, track.last_seen = face, index
            result.append(track)
        return result

    def _observe(self, track: _Track, frame: Frame, face: Face, score: float, status: Status,
                 cause: str | None) -> list[dict]:
        track.frames += 1
        if status is Status.ACCEPTED:
            track.streak += 1
            if track.best is None or score > track.best[0]:
                if track.accepted_at is None or frame.index <= track.accepted_at + self.best_window:
                    track.best = (score, frame, face)
            if track.accepted_at is None and track.streak >= self.accept_frames:
                track.accepted_at = frame.index
        else:
            track.streak = 0
            track.causes[cause] += 1
        if track.accepted_at is not None and frame.index >= track.accepted_at + self.best_window:
            return self._close(track)
        return []

    def _expire(self, index: int) -> list[dict]:
        events = []
        for track in self._tracks:
            if not track.done and index - track.last_seen > self.max_age:
                events += self._close(track)
        self._tracks = [t for t in self._tracks if not t.done or index - t.last_seen <= self.max_age]
        return events

    def _close(self, track: _Track) -> list[dict]:
        if track.done:
            return []
        track.done = True
        base = {"track": track.id, "first_frame": track.first_frame, "last_frame": track.last_seen,
                "frames": track.frames}
        if track.accepted_at is not None and track.best is not None:
            score, frame, face = track.best
            event = {"event": "accepted", **base, "frame": frame.index, "time": round(frame.time, 3),
                     "score": round(score, 2), "box": [round(v, 1) for v in face.box], "reasons": []}
            event["image"] = self._write_best_shot(frame, event)
            return [event]
        if track.frames < self.min_track_frames:
            return []
        cause = track.causes.most_common(1)[0][0] if track.causes else "low_quality"
        return [{"event": "rejected", **base, "reason": cause, "prompt": PROMPTS[cause],
                 "reasons": sorted(track.causes)}]

    # -- outputs ---------------------------------------------------------------------
    @staticmethod
    def annotate(frame: Frame, result: StreamResult) -> np.ndarray:
        """A BGR copy of the frame with each face's box, score and prompt drawn on it."""
        image = np.ascontiguousarray(frame.rgb[..., ::-1])
        for view in result.faces:
            colour = {"accepted": (0, 200, 0), "pending": (0, 200, 255)}.get(view.track_state, (0, 0, 255))
            x1, y1, x2, y2 = (int(round(v)) for v in view.face.box)
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
            label = f"#{view.track} {view.score:.0f}" + (f" {view.prompt}" if view.prompt else "")
            cv2.putText(image, label, (x1, max(12, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
        return image

    def _write_best_shot(self, frame: Frame, event: dict) -> str | None:
        if self.out_dir is None:
            return None
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"track{event['track']:05d}_frame{frame.index:07d}"
        image = self.out_dir / f"{stem}.jpg"
        tmp = image.with_name(f".{image.name}.tmp.jpg")
        cv2.imwrite(str(tmp), frame.rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
        tmp.replace(image)
        sidecar = {k: v for k, v in event.items() if k != "image"}
        (self.out_dir / f"{stem}.json").write_text(json.dumps({**sidecar, "image": image.name}, indent=1) + "\n")
        return str(image)

    def _emit(self, event: dict) -> None:
        self.counts[event["event"]] += 1
        if self.on_event is not None:
            self.on_event(event)
        if self.events_path is None:
            return
        if self._events_fh is None:
            self.events_path.parent.mkdir(parents=True, exist_ok=True)
            self._events_fh = self.events_path.open("a", encoding="utf-8")
        self._events_fh.write(json.dumps(event) + "\n")
        self._events_fh.flush()
