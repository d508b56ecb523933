"""Streaming gate: faces followed across frames as visits, one decision per visit, the
best shot of the visit kept.

A **visit** is one face in view, followed by box overlap from one detection to the next
(:class:`VisitTracker`); it ends when ``max_age`` detection runs in a row miss it, so a
person who leaves and comes back is a new visit. On frames where the detector does not run
(``detect_every`` > 1) nothing is observed: the boxes shown are the last ones found, and
they neither keep a visit alive nor feed its decision.

Per detection frame: crop and score every face in one batch, decide each face alone (other
people in view are separate visits, not a rejection), then update the visits:

- a visit is **accepted** once its faces pass the policy for ``accept_frames`` detection
  frames in a row (hysteresis: it never flips back), and keeps being followed, with no new
  event, until the person leaves;
- its **best shot** is its highest-scoring acceptable frame, over the whole visit (or, with
  ``best_window``, up to that many frames after acceptance, for lower latency); the single
  ``accepted`` event is emitted with it, as a full frame and a face crop;
- a visit that ends without being accepted is **rejected** with its dominant reason as a
  prompt a person can act on ("move closer", "more light", ...); a glimpse shorter than
  ``min_track_frames`` gets no decision.

Outputs (best-shot files, the event log) are written by :class:`StreamOutputs`.
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
from .policy import PROMPTS, Policy, Status, decide, explain
from .sources import Frame, FrameSource, open_source

__all__ = ["StreamGate", "StreamOutputs", "StreamResult", "TrackView", "VisitTracker", "annotate"]


@dataclass
class _Visit:
    id: int
    face: Face
    first_frame: int
    last_seen: int
    misses: int = 0  # detection runs in a row that did not find this face
    frames: int = 0
    streak: int = 0
    accepted_at: int | None = None
    best: tuple[float, Frame, Face] | None = None
    causes: Counter = field(default_factory=Counter)
    last: tuple[float, Status, tuple[str, ...], str | None] | None = None  # score, status, reasons, prompt
    decided: bool = False


@dataclass(frozen=True, eq=False)
class TrackView(FrozenValue):
    """One face in one frame: its visit, score, per-frame status and prompt. On frames
    where the detector did not run, the face and score are the visit's last ones."""

    track: int
    face: Face
    score: float
    status: Status
    reasons: tuple[str, ...]
    prompt: str | None
    track_state: str  # "pending" or "accepted"


@dataclass(frozen=True, eq=False)
class StreamResult(FrozenValue):
    """What happened at one processed frame: faces seen and decisions made (``frame`` is
    the frame itself, for drawing; ``detected``: whether the detector ran on it)."""

    index: int
    time: float
    dropped: int
    faces: tuple[TrackView, ...]
    events: tuple[dict, ...]
    latency_ms: float
    frame: Frame | None = None
    detected: bool = True


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class VisitTracker:
    """Faces to visits by box overlap, greedily, highest overlap first; only detections
    move a visit, so a visit cannot live on a held box.

    Args:
        iou: overlap needed to continue a visit.
        max_age: detection runs in a row that may miss a visit before it ends.
    """

    def __init__(self, iou: float = 0.3, max_age: int = 5):
        self.iou, self.max_age = iou, max_age
        self.visits: list[_Visit] = []
        self._next_id = 1

    def match(self, faces: list[Face], index: int) -> tuple[list[_Visit], list[_Visit]]:
        """The visit of each face (new ones for faces that continue none), and the visits
        that ended because this detection run missed them once too often."""
        pairs = sorted(((_iou(f.box, v.face.box), i, j) for i, f in enumerate(faces) for j, v in enumerate(self.visits)),
                       reverse=True)
        chosen: dict[int, _Visit] = {}
        used: set[int] = set()
        for overlap, i, j in pairs:
            if overlap >= self.iou and i not in chosen and j not in used:
                chosen[i] = self.visits[j]
                used.add(j)
        for j, visit in enumerate(self.visits):
            if j not in used:
                visit.misses += 1
        ended = [v for v in self.visits if v.misses > self.max_age]
        self.visits = [v for v in self.visits if v.misses <= self.max_age]
        matched = []
        for i, face in enumerate(faces):
            visit = chosen.get(i)
            if visit is None:
                visit = _Visit(self._next_id, face, index, index)
                self._next_id += 1
                self.visits.append(visit)
            visit.face, visit.last_seen, visit.misses = face, index, 0
            matched.append(visit)
        return matched, ended

    def end_all(self) -> list[_Visit]:
        ended, self.visits = self.visits, []
        return ended


class StreamOutputs:
    """Where decisions go: best shots (full frame, face crop and a JSON sidecar, each
    written atomically) in ``out_dir``, events as JSON lines in ``events``, and to
    ``on_event``. Either folder may be None (not written)."""

    def __init__(self, out_dir: str | Path | None = None, events: str | Path | None = None,
                 on_event: Callable[[dict], None] | None = None):
        self.out_dir = Path(out_dir) if out_dir else None
        self.events_path = Path(events) if events else None
        self.on_event = on_event
        self._events_fh = None

    def best_shot(self, frame: Frame, face: Face, event: dict) -> dict:
        """Write the best shot; returns the file names to put in the event."""
        if self.out_dir is None:
            return {"image": None, "face_image": None}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"track{event['track']:05d}_frame{frame.index:07d}"
        image, face_image = self.out_dir / f"{stem}.jpg", self.out_dir / f"{stem}_face.jpg"
        _write_jpeg(image, frame.rgb)
        _write_jpeg(face_image, face_crop(frame.rgb, face))
        sidecar = {**event, "image": image.name, "face_image": face_image.name}
        (self.out_dir / f"{stem}.json").write_text(json.dumps(sidecar, indent=1) + "\n")
        return {"image": str(image), "face_image": str(face_image)}

    def emit(self, event: dict) -> None:
        if self.on_event is not None:
            self.on_event(event)
        if self.events_path is None:
            return
        if self._events_fh is None:
            self.events_path.parent.mkdir(parents=True, exist_ok=True)
            self._events_fh = self.events_path.open("a", encoding="utf-8")
        self._events_fh.write(json.dumps(event) + "\n")
        self._events_fh.flush()

    def close(self) -> None:
        if self._events_fh is not None:
            self._events_fh.close()
            self._events_fh = None


def _write_jpeg(path: Path, rgb: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp.jpg")
    cv2.imwrite(str(tmp), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    tmp.replace(path)


def face_crop(rgb: np.ndarray, face: Face, margin: float = 0.4) -> np.ndarray:
    """The face's box grown by ``margin`` of its size on every side, clipped to the frame."""
    x1, y1, x2, y2 = face.box
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    h, w = rgb.shape[:2]
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my)))
    return rgb[top:max(bottom, top + 1), left:max(right, left + 1)]


class StreamGate:
    """Gate a stream of frames: one decision per visit.

    Args:
        gate: the :class:`Gate` whose capture stage, scorer and policy are used.
        accept_frames: consecutive acceptable detection frames before a visit is accepted.
        best_window: None (default): the best shot is the best frame of the whole visit,
            written when it ends; a number: the best within that many frames after
            acceptance, written then (lower latency).
        max_age: detection runs in a row that may miss a face before its visit ends.
        min_track_frames: a visit observed on fewer detection frames ends without a decision.
        detect_every: run the detector every k-th frame; nothing is observed in between.
        iou: overlap needed to continue a visit.
        out_dir: where best shots (full frame, face crop, JSON sidecar) are written.
        events: JSON-lines file for events (None: not written).
        on_event: called with each event as it is emitted (e.g. to print it).
        outputs: where decisions go instead of files (a :class:`StreamOutputs`, e.g. the
            service's, which hands best shots back as JPEG bytes); overrides ``out_dir``,
            ``events`` and ``on_event``.
    """

    def __init__(self, gate: Gate, *, accept_frames: int = 3, best_window: int | None = None, max_age: int = 5,
                 min_track_frames: int = 3, detect_every: int = 1, iou: float = 0.3,
                 out_dir: str | Path | None = None, events: str | Path | None = None,
                 on_event: Callable[[dict], None] | None = None, outputs: "StreamOutputs | None" = None):
        self.gate = gate
        # one face per visit: other people are other visits, not a reason to reject
        self.policy: Policy = replace(gate.policy, reject_multiple_faces=False)
        self.accept_frames, self.best_window, self.min_track_frames = accept_frames, best_window, min_track_frames
        self.detect_every = max(1, detect_every)
        self.tracker = VisitTracker(iou, max_age)
        self.outputs = outputs if outputs is not None else StreamOutputs(out_dir, events, on_event)
        #: frames processed, frames the source dropped, and events emitted by kind
        self.counts: Counter = Counter()

    # -- public ----------------------------------------------------------------------
    def run(self, source: str | int | FrameSource, *, max_frames: int | None = None,
            duration: float | None = None) -> Iterator[StreamResult]:
        """Process ``source`` frame by frame; a generator, so stop whenever you like.
        ``duration`` is seconds of wall-clock time, for every kind of source. Closing the
        generator (or an exception, Ctrl-C included) ends open visits, emits their
        decisions and flushes the outputs."""
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
        detect = frame.index % self.detect_every == 0 or not self.tracker.visits
        events: list[dict] = []
        if detect:
            capture = self.gate.capture
            faces = capture.detector.detect(frame.rgb)
            crops = [capture.crop(frame.rgb, f) for f in faces]
            scores = self.gate.scorer.score(np.stack(crops)).ensemble if crops else []
            visits, ended = self.tracker.match(faces, frame.index)
            for visit in ended:
                events += self._decide(visit)
            for face, score, visit in zip(faces, scores, visits):
                # each face alone: other people in view are visits of their own
                components = capture.measure(frame.rgb, face)
                status, reasons = decide(self.policy, [face], face, float(score), components)
                cause = None if status is Status.ACCEPTED else explain(reasons, components)
                visit.last = (float(score), status, reasons, None if cause is None else cause[1])
                events += self._observe(visit, frame, face, float(score), status, cause)
        views = tuple(TrackView(v.id, v.face, *v.last, "accepted" if v.accepted_at is not None else "pending")
                      for v in self.tracker.visits if v.misses == 0 and v.last is not None)
        for event in events:
            self._emit(event)
        self.counts["frames"] += 1
        self.counts["dropped"] += frame.dropped
        return StreamResult(frame.index, frame.time, frame.dropped, views, tuple(events),
                            (time.perf_counter() - t0) * 1000, frame, detect)

    def finish(self) -> list[dict]:
        """End every open visit (stream over): emit its decision; flush and close files."""
        events = [e for visit in self.tracker.end_all() for e in self._decide(visit)]
        for event in events:
            self._emit(event)
        self.outputs.close()
        return events

    @property
    def visits_decided(self) -> int:
        return self.counts["accepted"] + self.counts["rejected"]

    # -- decisions -------------------------------------------------------------------
    def _observe(self, visit: _Visit, frame: Frame, face: Face, score: float, status: Status,
                 cause: tuple[str, str] | None) -> list[dict]:
        visit.frames += 1
        if status is Status.ACCEPTED:
            visit.streak += 1
            in_window = (visit.accepted_at is None or self.best_window is None
                         or frame.index <= visit.accepted_at + self.best_window)
            if in_window and (visit.best is None or score > visit.best[0]):
                visit.best = (score, frame, face)
            if visit.accepted_at is None and visit.streak >= self.accept_frames:
                visit.accepted_at = frame.index
        else:
            visit.streak = 0
            visit.causes[cause] += 1
        if (self.best_window is not None and visit.accepted_at is not None
                and frame.index >= visit.accepted_at + self.best_window):
            return self._decide(visit)
        return []

    def _decide(self, visit: _Visit) -> list[dict]:
        """The visit's one decision (nothing if it was made already, or for a glimpse)."""
        if visit.decided:
            return []
        visit.decided = True
        base = {"track": visit.id, "first_frame": visit.first_frame, "last_frame": visit.last_seen,
                "frames": visit.frames}
        if visit.accepted_at is not None and visit.best is not None:
            score, frame, face = visit.best
            event = {"event": "accepted", **base, "frame": frame.index, "time": round(frame.time, 3),
                     "accepted_at": visit.accepted_at, "score": round(score, 2),
                     "box": [round(v, 1) for v in face.box], "reasons": []}
            return [{**event, **self.outputs.best_shot(frame, face, event)}]
        if visit.frames < self.min_track_frames:
            return []
        reason, prompt = visit.causes.most_common(1)[0][0] if visit.causes else ("low_quality", PROMPTS["low_quality"])
        return [{"event": "rejected", **base, "reason": reason, "prompt": prompt,
                 "reasons": sorted({r for r, _ in visit.causes})}]

    def _emit(self, event: dict) -> None:
        self.counts[event["event"]] += 1
        self.outputs.emit(event)


def annotate(frame: Frame, result: StreamResult) -> np.ndarray:
    """A BGR copy of the frame with each face's box, score and prompt drawn on it: green
    for an accepted visit, red for a face rejected in this frame, amber otherwise."""
    image = np.ascontiguousarray(frame.rgb[..., ::-1])
    for view in result.faces:
        colour = ((0, 200, 0) if view.track_state == "accepted"
                  else (0, 0, 230) if view.status is Status.REJECTED else (0, 200, 255))
        x1, y1, x2, y2 = (int(round(v)) for v in view.face.box)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        label = f"#{view.track} {view.score:.0f}" + (f" {view.prompt}" if view.prompt else "")
        cv2.putText(image, label, (x1, max(12, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return image
