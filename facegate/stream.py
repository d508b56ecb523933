"""Streaming gate: each person in view followed as a visit, one decision per visit, the
best shot of the visit kept.

A **visit** is one person in view. Each detection run goes through the capture stage stills
use (:meth:`facegate.capture.CaptureStage.analyse_frame`: the detector's settings from the
weights' spec, detector failures captured per frame, looking again on an empty frame at
most once a ``look_again_every`` seconds so a dark or turned camera is named), and every face
is decided alone by :meth:`facegate.Gate.decide_faces`, the code that decides the faces of a
still, so a frame gets the reasons and prompt a still of it gets. A face continues a visit
when its box overlaps the visit's *and* it looks like the visit's person
(:func:`appearance`, compared with the visit's last look: a hard cut to another person in
the same place is a new visit); a visit ends when ``max_gap`` seconds of video pass without
it (seconds, not detection runs, so ``detect_every`` 1 and 3 give the same visits). On
frames where the detector does not run nothing is observed: the boxes shown are the last
ones found, and they neither keep a visit alive nor feed its decision.

- a visit is **accepted** once its face passes the policy on ``accept_frames`` detection
  frames in a row (hysteresis: it never flips back), and keeps being followed, with no new
  event, until the person leaves;
- its **best shot** is its highest-scoring acceptable frame, over the whole visit (or, with
  ``best_window``, up to that many frames after acceptance, for lower latency); the single
  :class:`VisitAccepted` event is emitted with it, as a full frame and a face crop;
- a visit that ends without being accepted gets a :class:`VisitRejected` event with its
  most frequent cause as a prompt a person can act on ("move closer", "more light", ...);
  a glimpse shorter than ``min_visit`` seconds gets no decision.

Events are typed records written as JSON lines by :class:`StreamOutputs`, each with the
run it belongs to; a second run into the same folder or event log appends, numbering its
visits after the ones already there, so no best shot is overwritten and every event names
one visit of one run.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Union

import cv2
import numpy as np

from .detection import Face
from .frozen import FrozenValue
from .gate import Gate
from .policy import PROMPTS, Status, explain
from .sources import Frame, FrameSource, open_source

__all__ = ["StreamGate", "StreamOutputs", "StreamResult", "TrackView", "VisitAccepted", "VisitRejected", "VisitTracker",
           "annotate", "SAME_PERSON", "appearance", "edge_look"]


# -- who is in front of the camera: appearance of the aligned crop ------------------------
# A signal maps a face's aligned crop (the spec's framing) to a unit vector; two faces
# compare by the dot product. benchmarks/visit_appearance.py measures this one beside the
# others that were tried (grey layout, colour, mixes) on LFW people.

def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) + 1e-9)


def _inner_grey(crop: np.ndarray) -> np.ndarray:
    s = crop.shape[0]
    return cv2.cvtColor(np.ascontiguousarray(crop[s // 8: s - s // 8, s // 8: s - s // 8]), cv2.COLOR_RGB2GRAY)


def edge_look(crop: np.ndarray) -> np.ndarray:
    """Where the face's edges run: the inner face at 48x48, smoothed (1.5 px) so that a
    blurred moment reads like a sharp one, histograms of edge direction (8 bins, weighted by
    strength) on a 6x6 grid, each cell's normalised (so a darker moment reads alike too),
    less their mean."""
    grey = cv2.resize(_inner_grey(crop), (48, 48), interpolation=cv2.INTER_AREA).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (0, 0), 1.5)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    strength, angle = np.hypot(gx, gy), (np.arctan2(gy, gx) % np.pi) / np.pi * 8
    bins = np.minimum(angle.astype(int), 7)
    cells = np.zeros((6, 6, 8), np.float32)
    rows, cols = np.indices(grey.shape) // 8
    np.add.at(cells, (rows, cols, bins), strength)
    cells /= np.linalg.norm(cells, axis=2, keepdims=True) + 1e-6
    v = cells.ravel()
    return _unit(v - v.mean())


def appearance(crop: np.ndarray) -> np.ndarray:
    """The appearance of a face for following it across frames: :func:`edge_look`, the
    signal that told LFW evaluation people apart best while keeping each through blur,
    darkness, JPEG noise, a smaller face and a turn of the head (docs/performance.md,
    ``python -m benchmarks.visit_appearance``)."""
    return edge_look(crop)


#: A face continues a visit when its look's dot product with the visit's last look is at
#: least this: near the equal-error point measured for :func:`edge_look` on LFW evaluation
#: people and their copies (docs/performance.md). Frames a video holds a moment apart are
#: far closer than these copies to their photo.
SAME_PERSON = 0.44


@dataclass
class _Visit:
    id: int
    face: Face
    look: np.ndarray
    first_frame: int
    first_time: float
    last_seen: int
    last_time: float
    misses: int = 0  # detection runs since it was last found
    frames: int = 0
    streak: int = 0
    accepted_at: int | None = None
    best: tuple[float, Frame, Face] | None = None
    causes: Counter = field(default_factory=Counter)
    last: tuple[float, Status, tuple[str, ...], str | None] | None = None  # score, status, reasons, prompt
    decided: bool = False


@dataclass(frozen=True)
class _VisitSpan:
    """Which visit, and the frames and video seconds it spanned (``frames``: detection
    frames it was seen on)."""

    track: int
    first_frame: int
    last_frame: int
    frames: int
    first_time: float
    last_time: float


@dataclass(frozen=True)
class VisitAccepted(_VisitSpan):
    """A visit accepted: its best shot (frame index, video time, score, box) and, where
    outputs are written, the files of the frame and the face crop."""

    frame: int
    time: float
    accepted_at: int
    score: float
    box: tuple[float, float, float, float]
    image: str | None = None
    face_image: str | None = None
    event = "accepted"

    def to_dict(self) -> dict:
        return {"event": self.event, **asdict(self), "box": list(self.box), "reasons": []}


@dataclass(frozen=True)
class VisitRejected(_VisitSpan):
    """A visit that ended without being accepted: its most frequent cause, the prompt for
    it, and every reason seen."""

    reason: str
    prompt: str
    reasons: tuple[str, ...]
    event = "rejected"

    def to_dict(self) -> dict:
        return {"event": self.event, **asdict(self), "reasons": list(self.reasons)}


VisitEvent = Union[VisitAccepted, VisitRejected]


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
    events: tuple[VisitEvent, ...]
    latency_ms: float
    frame: Frame | None = None
    detected: bool = True
    error: str | None = None  # why the capture stage could not search this frame


def _iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class VisitTracker:
    """Faces to visits: a face continues the visit whose box it overlaps most, among those
    whose person it looks like (:data:`SAME_PERSON`); only detections move a visit, so a
    visit cannot live on a held box.

    Args:
        iou: overlap needed to continue a visit.
        max_gap: seconds of video a visit may go unseen before it ends.
        same_person: the least look similarity that continues a visit.
    """

    def __init__(self, iou: float = 0.3, max_gap: float = 0.5, same_person: float = SAME_PERSON, first_id: int = 1):
        self.iou, self.max_gap, self.same_person = iou, max_gap, same_person
        self.visits: list[_Visit] = []
        self._next_id = first_id

    def match(self, faces: list[Face], looks: list[np.ndarray], index: int, time_s: float
              ) -> tuple[list[_Visit], list[_Visit]]:
        """The visit of each face (new ones for faces that continue none), and the visits
        that ended because they went unseen for longer than ``max_gap``."""
        pairs = sorted(((_iou(f.box, v.face.box), i, j) for i, f in enumerate(faces) for j, v in enumerate(self.visits)
                        if float(looks[i] @ v.look) >= self.same_person), reverse=True)
        chosen: dict[int, _Visit] = {}
        used: set[int] = set()
        for overlap, i, j in pairs:
            if overlap >= self.iou and i not in chosen and j not in used:
                chosen[i] = self.visits[j]
                used.add(j)
        for j, visit in enumerate(self.visits):
            if j not in used:
                visit.misses += 1
        ended = [v for v in self.visits if v.misses and time_s - v.last_time > self.max_gap]
        self.visits = [v for v in self.visits if v not in ended]
        matched = []
        for i, face in enumerate(faces):
            visit = chosen.get(i)
            if visit is None:
                visit = _Visit(self._next_id, face, looks[i], index, time_s, index, time_s)
                self._next_id += 1
                self.visits.append(visit)
            visit.face, visit.look, visit.last_seen, visit.last_time, visit.misses = face, looks[i], index, time_s, 0
            matched.append(visit)
        return matched, ended

    def end_all(self) -> list[_Visit]:
        ended, self.visits = self.visits, []
        return ended


class StreamOutputs:
    """Where decisions go: best shots (full frame, face crop and a JSON sidecar, each
    written atomically) in ``out_dir``, events as JSON lines in ``events``, and to
    ``on_event``. Either folder may be None (not written).

    Files are only ever added: an event log that exists is appended to, and the visits of
    this run are numbered after the highest visit the log or the folder already holds
    (:meth:`first_track`), so an earlier run's best shots keep their names and contents.
    Each written event and sidecar carries ``run`` (this run's start, UTC, to the
    microsecond), which tells the runs in one log apart.
    """

    #: a best shot's file stem, and the pattern that reads the visit back from it
    _SHOT_STEM = "track{track:05d}_frame{frame:07d}"
    _SHOT_NAME = re.compile(r"^track(\d+)_frame\d+")

    def __init__(self, out_dir: str | Path | None = None, events: str | Path | None = None,
                 on_event: Callable[[dict], None] | None = None, run: str | None = None):
        self.out_dir = Path(out_dir) if out_dir else None
        self.events_path = Path(events) if events else None
        self.on_event = on_event
        self.run = run or datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        self._events_fh = None

    def first_track(self) -> int:
        """The number of this run's first visit: one after the highest visit already in the
        event log or among the best shots of ``out_dir`` (1 when both are new). A line of the
        log that is not an event (a run killed mid-write) is passed over."""
        highest = 0
        if self.events_path is not None and self.events_path.is_file():
            with self.events_path.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        track = json.loads(line).get("track")
                    except (ValueError, AttributeError):
                        continue
                    if isinstance(track, int):
                        highest = max(highest, track)
        if self.out_dir is not None and self.out_dir.is_dir():
            for path in self.out_dir.iterdir():
                match = self._SHOT_NAME.match(path.name)
                if match:
                    highest = max(highest, int(match.group(1)))
        return highest + 1

    def best_shot(self, frame: Frame, face: Face, event: VisitAccepted) -> dict:
        """Write the best shot; returns the file names to put in the event."""
        if self.out_dir is None:
            return {"image": None, "face_image": None}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = self._SHOT_STEM.format(track=event.track, frame=frame.index)
        image, face_image = self.out_dir / f"{stem}.jpg", self.out_dir / f"{stem}_face.jpg"
        _write_jpeg(image, frame.rgb)
        _write_jpeg(face_image, face_crop(frame.rgb, face))
        sidecar = {"run": self.run, **event.to_dict(), "image": image.name, "face_image": face_image.name}
        (self.out_dir / f"{stem}.json").write_text(json.dumps(sidecar, indent=1) + "\n")
        return {"image": str(image), "face_image": str(face_image)}

    def emit(self, event: VisitEvent) -> None:
        if self.on_event is not None:
            self.on_event(event)
        if self.events_path is None:
            return
        if self._events_fh is None:
            self.events_path.parent.mkdir(parents=True, exist_ok=True)
            self._events_fh = self.events_path.open("a", encoding="utf-8")
            if self._events_fh.tell() and not _ends_with_newline(self.events_path):
                self._events_fh.write("\n")  # an earlier run's last line was cut off: start on a line of our own
        self._events_fh.write(json.dumps({"run": self.run, **event.to_dict()}) + "\n")
        self._events_fh.flush()

    def close(self) -> None:
        if self._events_fh is not None:
            self._events_fh.close()
            self._events_fh = None


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, 2)
        return fh.read(1) == b"\n"


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
        gate: the :class:`Gate` whose capture stage (detector and settings), scorer and
            policy are used; its faces are decided as :meth:`Gate.decide_faces` decides a
            still's.
        accept_frames: consecutive acceptable detection frames before a visit is accepted.
        best_window: None (default): the best shot is the best frame of the whole visit,
            written when it ends; a number: the best within that many frames after
            acceptance, written then (lower latency).
        max_gap: seconds of video a visit may go unseen before it ends.
        min_visit: seconds a visit must last to get a decision (shorter ones are glimpses).
        detect_every: run the detector every k-th frame; nothing is observed in between.
        iou: overlap needed to continue a visit.
        same_person: look similarity needed to continue a visit (:data:`SAME_PERSON`).
        detect_reduction: the detector sees the frame reduced this many times ("auto": for
            YuNet 2 on frames 480 pixels high or more, where the faces a policy can accept
            stay above the detector's smallest, 4 times fewer pixels to search; 1 otherwise,
            and for MTCNN, whose pyramid starts at its smallest face anyway); crops and
            components use the full frame.
        look_again_every: seconds between looks again on an empty frame (brightened,
            turned, padded copies: five more detections, too many for every frame).
        orient_every: seconds the orientation stage's answer is reused while a visit is
            open (a camera does not turn under one person's visit; each new visit, and a frame
            with no visit open, asks again; 0: ask on every frame).
        out_dir: where best shots (full frame, face crop, JSON sidecar) are written.
        events: JSON-lines file for events (None: not written).
        on_event: called with each event as it is emitted (e.g. to print it).
        outputs: where decisions go instead of files (a :class:`StreamOutputs`, e.g. the
            service's, which hands best shots back as JPEG bytes); overrides ``out_dir``,
            ``events`` and ``on_event``.
    """

    def __init__(self, gate: Gate, *, accept_frames: int = 3, best_window: int | None = None, max_gap: float = 0.5,
                 min_visit: float = 0.1, detect_every: int = 1, iou: float = 0.3, same_person: float = SAME_PERSON,
                 detect_reduction: int | str = "auto", look_again_every: float = 1.0, orient_every: float = 5.0,
                 out_dir: str | Path | None = None, events: str | Path | None = None,
                 on_event: Callable[[VisitEvent], None] | None = None, outputs: "StreamOutputs | None" = None):
        self.gate = gate
        # one capture stage per use, sharing the gate's detector: every frame without looking
        # again; an empty frame now and then with it
        # (components are measured face by face in Gate.decide_faces, not once more here)
        self.stage = gate.capture.sharing(components=False, look_again=False, working=None)
        self.look_again_stage = gate.capture.sharing(components=False, look_again=True, working=None)
        self.accept_frames, self.best_window, self.min_visit = accept_frames, best_window, min_visit
        self.detect_every = max(1, detect_every)
        self.detect_reduction = detect_reduction
        self.look_again_every = look_again_every
        self._looked_again_at: float | None = None
        self.orient_every = orient_every
        self._orientation, self._oriented_at = None, None  # the last answer asked for, and when
        self.outputs = outputs if outputs is not None else StreamOutputs(out_dir, events, on_event)
        #: the number of this run's first visit (after those the outputs already hold)
        self.first_track = self.outputs.first_track()
        self.tracker = VisitTracker(iou, max_gap, same_person, first_id=self.first_track)
        #: frames processed, frames the source dropped, frames the capture stage failed on,
        #: and events emitted by kind
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

    def capture(self, frame: Frame):
        """The capture stage on one frame (the detector on the frame reduced as
        ``detect_reduction`` says; looking again on an empty frame when it is time)."""
        reduction = self.detect_reduction
        if reduction == "auto":  # (MTCNN's own pyramid starts at its smallest face: reducing first costs it more)
            yunet = getattr(self.stage.detector, "name", None) == "yunet"
            reduction = 2 if yunet and frame.rgb.shape[0] >= 480 else 1
        known = self._known_orientation(frame)
        capture = self.stage.analyse_frame(frame.rgb, reduce_by=int(reduction), source=f"frame {frame.index}",
                                           orientation=known)
        if known is None and capture.orientation is not None:
            self._orientation, self._oriented_at = capture.orientation, frame.time
        due = self._looked_again_at is None or frame.time - self._looked_again_at >= self.look_again_every
        if capture.error is None and not capture.faces and due:
            self._looked_again_at = frame.time
            capture = self.look_again_stage.analyse_frame(frame.rgb, reduce_by=int(reduction),
                                                          source=f"frame {frame.index}",
                                                          orientation=capture.orientation)
        return capture

    def _known_orientation(self, frame: Frame):
        """The orientation answer to reuse for this frame, or None to ask the stage: reused only
        while a visit is open and for at most ``orient_every`` seconds."""
        if self._orientation is None or not self.tracker.visits or self.orient_every <= 0:
            return None
        return self._orientation if frame.time - self._oriented_at < self.orient_every else None

    def process(self, frame: Frame) -> StreamResult:
        t0 = time.perf_counter()
        detect = frame.index % self.detect_every == 0 or not self.tracker.visits
        events: list[VisitEvent] = []
        error = None
        if detect:
            capture = self.capture(frame)
            error = capture.error
            if error is not None:
                self.counts["failed"] += 1
            else:
                decided = self.gate.decide_faces(capture)
                looks = [appearance(self.stage.crop(frame.rgb, f.face)) for f in decided]
                visits, ended = self.tracker.match([f.face for f in decided], looks, frame.index, frame.time)
                for visit in ended:
                    events += self._decide(visit)
                for face, visit in zip(decided, visits):
                    cause = (None if face.status is Status.ACCEPTED
                             else explain(face.reasons, face.components, capture.found_by))
                    visit.last = (float(face.score), face.status, face.reasons, face.prompt)
                    events += self._observe(visit, frame, face.face, float(face.score), face.status, cause)
        views = tuple(TrackView(v.id, v.face, *v.last, "accepted" if v.accepted_at is not None else "pending")
                      for v in self.tracker.visits if v.misses == 0 and v.last is not None)
        for event in events:
            self._emit(event)
        self.counts["frames"] += 1
        self.counts["dropped"] += frame.dropped
        return StreamResult(frame.index, frame.time, frame.dropped, views, tuple(events),
                            (time.perf_counter() - t0) * 1000, frame, detect, error)

    def finish(self) -> list[VisitEvent]:
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
                 cause: tuple[str, str] | None) -> list[VisitEvent]:
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

    def _decide(self, visit: _Visit) -> list[VisitEvent]:
        """The visit's one decision (nothing if it was made already, or for a glimpse)."""
        if visit.decided:
            return []
        visit.decided = True
        base = {"track": visit.id, "first_frame": visit.first_frame, "last_frame": visit.last_seen,
                "frames": visit.frames, "first_time": round(visit.first_time, 3), "last_time": round(visit.last_time, 3)}
        if visit.accepted_at is not None and visit.best is not None:
            score, frame, face = visit.best
            event = VisitAccepted(**base, frame=frame.index, time=round(frame.time, 3), accepted_at=visit.accepted_at,
                                  score=round(score, 2), box=tuple(round(v, 1) for v in face.box))
            return [replace(event, **self.outputs.best_shot(frame, face, event))]
        if visit.last_time - visit.first_time < self.min_visit:
            return []
        reason, prompt = visit.causes.most_common(1)[0][0] if visit.causes else ("low_quality", PROMPTS["low_quality"])
        return [VisitRejected(**base, reason=reason, prompt=prompt, reasons=tuple(sorted({r for r, _ in visit.causes})))]

    def _emit(self, event: VisitEvent) -> None:
        self.counts[event.event] += 1
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
