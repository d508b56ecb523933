"""A stream visit is one person (issue 36), on videos built from photos of LFW evaluation
people (never trained on) at 640x480 and 30 frames a second: a person replaced after two
empty frames, or by a hard cut in the same place, starts a new visit; a blurred person gets
a rejection with the focus prompt, the prompt a still of that frame gets; every accepted
best shot is of its visit's person; detecting every frame or every third finds the same
visits on a long video."""

from __future__ import annotations

import numpy as np
import pytest

from facegate import Gate
from facegate.images import load_rgb
from facegate.sources import Frame
from facegate.stream import StreamGate
from train.degradations import gaussian_blur

FPS = 30.0


def frame_of(photo: np.ndarray | None) -> np.ndarray:
    """A 640x480 frame with the photo's face enlarged as a webcam at a desk sees it."""
    canvas = np.full((480, 640, 3), 100, np.uint8)
    if photo is not None:
        import cv2

        face = cv2.resize(photo, (360, 360), interpolation=cv2.INTER_LINEAR)
        canvas[60:420, 140:500] = face
    return canvas


@pytest.fixture(scope="module")
def people(shared):
    """Photos of LFW evaluation people whose face the stream's gate accepts when sharp."""
    from train.lfw import evaluation_people

    gate = Gate(detector="yunet", views="none", threads=2)
    lfw = shared / "data" / "lfw-deepfunneled"
    chosen = []
    for person in sorted(evaluation_people(shared))[::7]:
        photo = load_rgb(sorted((lfw / person).glob("*.jpg"))[0])
        result = gate.assess(frame_of(photo), color_order="rgb")
        if result.accepted and len(result.faces) == 1:
            chosen.append((person, photo))
        if len(chosen) == 8:
            break
    assert len(chosen) == 8
    return chosen


def segments(*parts):
    """Frames and, for each frame, whose it is (None: empty): parts are (photo or None,
    owner, count)."""
    frames, owners = [], []
    for photo, owner, count in parts:
        frames += [frame_of(photo)] * count
        owners += [owner] * count
    return frames, owners


def run(frames, every=1, **options):
    gate = Gate(detector="yunet", views="none", threads=2)
    stream = StreamGate(gate, detect_every=every, **options)
    results = [stream.process(Frame(i, i / FPS, f)) for i, f in enumerate(frames)]
    events = [e for r in results for e in r.events] + stream.finish()
    return results, sorted(events, key=lambda e: e.first_frame)


def owner_of(event, owners):
    """Whose frames the visit spans (one person, or several: a mixed visit)."""
    return {owners[i] for i in range(event.first_frame, event.last_frame + 1)} - {None}


def test_a_person_replaced_after_two_empty_frames_is_a_new_visit(people):
    (a, photo_a), (b, photo_b) = people[0], people[1]
    frames, owners = segments((photo_a, a, 20), (None, None, 2), (gaussian_blur(photo_b, 5.0), b, 20))
    results, events = run(frames)
    assert [owner_of(e, owners) for e in events] == [{a}, {b}], [e.to_dict() for e in events]
    assert [e.event for e in events] == ["accepted", "rejected"]
    blurred = events[1]
    assert blurred.reason == "blurred" and "focus" in blurred.prompt
    # a still of that frame gets the same reasons and prompt, from the same policy code
    still = Gate(detector="yunet", views="none", threads=2).assess(frames[30], color_order="rgb")
    face = results[30].faces[0]
    assert (face.reasons, face.prompt) == (still.reasons, still.prompt) and still.prompt == blurred.prompt


def test_a_hard_cut_to_another_person_in_the_same_place_is_a_new_visit(people):
    (a, photo_a), (b, photo_b) = people[2], people[3]
    frames, owners = segments((photo_a, a, 20), (photo_b, b, 20), (None, None, 20))
    results, events = run(frames)
    assert [owner_of(e, owners) for e in events] == [{a}, {b}], [e.to_dict() for e in events]
    assert all(e.event == "accepted" for e in events)
    for event in events:  # the best shot is its visit's person
        assert owners[event.frame] in owner_of(event, owners)
    tracks = {r.faces[0].track for r in results[:20]} | {r.faces[0].track for r in results[20:40]}
    assert len(tracks) == 2


def long_video(people):
    """Eight people in turn, each 20-40 frames, with empty gaps of 0, 2 or 10 frames."""
    parts = []
    for k, (person, photo) in enumerate(people):
        parts.append((photo, person, 20 + 5 * (k % 5)))
        parts.append((None, None, (0, 2, 10)[k % 3]))
    return segments(*parts)


def test_detecting_every_frame_or_every_third_finds_the_same_visits(people):
    frames, owners = long_video(people)
    seen = {}
    for every in (1, 3):
        _, events = run(frames, every=every)
        seen[every] = [(sorted(owner_of(e, owners)), e.event) for e in events]
        assert all(len(owner_of(e, owners)) == 1 for e in events), seen[every]  # never two people in one visit
        for event in events:
            if event.event == "accepted":
                assert owners[event.frame] in owner_of(event, owners)
    assert seen[1] == seen[3] and len(seen[1]) == len(people), seen


class FlakyDetector:
    """A detector of the user's own (any object with ``detect``), failing on some frames,
    as a detector can on odd data: YuNet's faces on the others."""

    name = "yunet"

    def __init__(self):
        from facegate.detection import create_detector

        self.inner = create_detector("yunet")
        self.calls = 0

    def detect(self, rgb, **options):
        self.calls += 1
        if self.calls % 4 == 0:
            raise RuntimeError("the detector fell over")
        return self.inner.detect(rgb)


def test_a_frame_the_detector_fails_on_is_recorded_and_the_stream_goes_on(people):
    (a, photo_a) = people[4]
    gate = Gate(detector=FlakyDetector(), views="none", threads=2)
    stream = StreamGate(gate, detect_reduction=1)
    results = [stream.process(Frame(i, i / FPS, frame_of(photo_a))) for i in range(24)]
    failed = [r for r in results if r.error]
    assert len(failed) == 6 and all("the detector fell over" in r.error for r in failed)
    assert stream.counts["failed"] == 6 and stream.counts["frames"] == 24
    events = stream.finish()
    assert [e.event for e in events] == ["accepted"]  # one visit through the failed frames
