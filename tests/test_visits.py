"""One decision per visit: a face held still through sharp, blurred and dark moments is one
visit with one decision, and its best shot comes from a sharp moment; people side by side are
separate visits; a person who leaves and comes back is a new visit; held boxes between
detections keep nobody alive."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from facegate import Gate, Policy
from facegate.sources import Frame
from facegate.stream import StreamGate
from train.degradations import gamma, gaussian_blur

W, H = 320, 240


def canvas(*faces, width=W):
    frame = np.full((H, width, 3), 90, np.uint8)
    for k, face in enumerate(faces):
        x = 35 + k * 320
        frame[:, x : x + 250] = face[5:245]
    return frame


@pytest.fixture(scope="module")
def looks(fixtures):
    from facegate.images import load_rgb

    sharp = load_rgb(fixtures / "colin_powell_2.jpg")
    return {"sharp": sharp, "blurred": gaussian_blur(sharp, 4.0), "dark": gamma(sharp, 4.0),
            "other": load_rgb(fixtures / "colin_powell_1.jpg")}


@pytest.fixture(scope="module")
def threshold(looks):
    gate = Gate(detector="yunet", views="none", threads=2)
    score = {k: gate.assess(canvas(v), color_order="rgb").score for k, v in looks.items()}
    assert score["sharp"] > max(score["blurred"], score["dark"]), score
    return (score["sharp"] + max(score["blurred"], score["dark"])) / 2


#: six visits of one face held still, the sharp moments in a different place each time
ORDERS = [("sharp", "blurred", "dark"), ("blurred", "sharp", "dark"), ("dark", "blurred", "sharp"),
          ("sharp", "dark", "blurred"), ("blurred", "dark", "sharp"), ("dark", "sharp", "blurred")]
LENGTH = {"sharp": 12, "blurred": 6, "dark": 6}
GAP = 15


@pytest.fixture(scope="module")
def six_visits(tmp_path_factory, looks):
    frames, sharp_frames = [], set()
    for order in ORDERS:
        for look in order:
            for _ in range(LENGTH[look]):
                if look == "sharp":
                    sharp_frames.add(len(frames))
                frames.append(canvas(looks[look]))
        frames += [canvas()] * GAP
    path = tmp_path_factory.mktemp("visits") / "six_visits.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for f in frames:
        writer.write(f[..., ::-1])
    writer.release()
    return path, sharp_frames


@pytest.mark.parametrize("every", [1, 3])
def test_six_visits_give_six_decisions_each_with_a_sharp_best_shot(six_visits, threshold, tmp_path, every):
    path, sharp_frames = six_visits
    gate = Gate(detector="yunet", views="none", threads=2, policy=Policy(min_score=threshold))
    out = tmp_path / "shots"
    streamer = StreamGate(gate, detect_every=every, max_gap=0.3, out_dir=out, events=tmp_path / "events.jsonl")
    list(streamer.run(str(path)))
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["accepted"] * 6, events
    shots = sorted(p for p in out.glob("*.jpg") if not p.name.endswith("_face.jpg"))
    assert len(shots) == 6 and len(list(out.glob("*_face.jpg"))) == 6
    for event in events:
        assert event["frame"] in sharp_frames, event
        face = cv2.imread(event["face_image"])
        assert face is not None and face.shape[0] < H  # a crop around the face, not the frame
    assert len({e["track"] for e in events}) == 6


def _run(frames, gate, **options):
    streamer = StreamGate(gate, **options)
    results = [streamer.process(Frame(i, i / 10, f)) for i, f in enumerate(frames)]
    events = results and [e for r in results for e in r.events] + streamer.finish()
    return results, [e.to_dict() for e in events]


@pytest.mark.parametrize("every", [1, 3])
def test_two_people_at_once_are_two_visits(looks, threshold, every):
    gate = Gate(detector="yunet", views="none", threads=2, policy=Policy(min_score=threshold))
    both = canvas(looks["sharp"], looks["sharp"], width=2 * W)
    frames = [both] * 15 + [canvas(width=2 * W)] * GAP
    _, events = _run(frames, gate, detect_every=every, max_gap=0.3)
    assert [e["event"] for e in events] == ["accepted", "accepted"], events
    assert events[0]["track"] != events[1]["track"]


@pytest.mark.parametrize("every", [1, 3])
def test_leaving_and_coming_back_is_a_new_visit(looks, threshold, every):
    gate = Gate(detector="yunet", views="none", threads=2, policy=Policy(min_score=threshold))
    frames = [canvas(looks["sharp"])] * 12 + [canvas()] * GAP + [canvas(looks["sharp"])] * 12
    _, events = _run(frames, gate, detect_every=every, max_gap=0.3)
    assert [e["event"] for e in events] == ["accepted", "accepted"], events


def test_held_boxes_keep_no_ghost_alive(looks, threshold):
    """A face that leaves at frame 11 ends its visit within max_gap seconds; it is
    not carried to the end of the video, and another face later is another visit."""
    gate = Gate(detector="yunet", views="none", threads=2, policy=Policy(min_score=threshold))
    frames = [canvas(looks["sharp"])] * 12 + [canvas()] * 40 + [canvas(looks["other"])] * 12
    results, events = _run(frames, gate, detect_every=3, max_gap=0.3)
    first = events[0]
    assert first["event"] == "accepted" and first["last_frame"] <= 11
    assert {e["track"] for e in events} == {first["track"], events[-1]["track"]} and len(events) == 2
    ended = next(r.index for r in results if any(e.track == first["track"] for e in r.events))
    assert ended <= 11 + 3 * 4  # decided when the visit ended, not at the end of the video
    assert all(not r.faces for r in results[ended:52])
