"""Streaming gate on a short video built from real photos: sharp, blurred, dark and
no-face segments, each person's visit separated by empty frames."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facegate import Gate, Policy
from facegate.cli import main
from facegate.errors import SourceError
from facegate.images import load_rgb
from facegate.sources import SourceKind, classify, open_source
from facegate.stream import StreamGate
from facegate.policy import PROMPTS
from train.degradations import gamma, gaussian_blur

FRAME = (320, 240)  # width, height


def place(rgb):
    """Centre a 250x250 photo on a 320x240 grey frame (cropping 5 rows top and bottom)."""
    canvas = np.full((FRAME[1], FRAME[0], 3), 90, np.uint8)
    canvas[:, 35:285] = rgb[5:245]
    return canvas


@pytest.fixture(scope="module")
def video(tmp_path_factory, fixtures):
    # photos in which YuNet finds exactly one face (tony_blair_1 has a second, partial one)
    sharp = load_rgb(fixtures / "colin_powell_2.jpg")
    blurred = gaussian_blur(load_rgb(fixtures / "colin_powell_1.jpg"), 4.0)
    dark = gamma(load_rgb(fixtures / "tony_blair_1.jpg"), 4.0)
    empty = cv2.resize(load_rgb(fixtures / "no_face.jpg"), (250, 250))
    segments = {"sharp": [], "gap1": [], "blurred": [], "gap2": [], "dark": [], "gap3": []}
    frames = []
    for name, count in [("sharp", 12), ("gap1", 8), ("blurred", 10), ("gap2", 8), ("dark", 10), ("gap3", 8)]:
        for k in range(count):
            if name == "sharp":
                img = gaussian_blur(sharp, 2.5) if k in (6, 7) else sharp  # a moment of motion
            else:
                img = {"blurred": blurred, "dark": dark}.get(name, empty)
            segments[name].append(len(frames))
            frames.append(place(img))
    path = tmp_path_factory.mktemp("video") / "visits.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, FRAME)
    for f in frames:
        writer.write(f[..., ::-1])
    writer.release()
    return path, segments, frames


@pytest.fixture(scope="module")
def stream_gate_threshold(video):
    """A threshold between the sharp person's score and the degraded ones', as a site would
    calibrate it; the logic under test is tracking, hysteresis and best shot."""
    path, segments, frames = video
    gate = Gate(detector="yunet", views="none")
    score = lambda i: gate.assess(frames[i], color_order="rgb").score  # noqa: E731
    sharp, blurred, dark = score(segments["sharp"][0]), score(segments["blurred"][0]), score(segments["dark"][0])
    assert sharp > max(blurred, dark)
    return (sharp + max(blurred, dark, score(segments["sharp"][6]))) / 2


def test_stream_picks_a_sharp_best_shot_and_explains_rejections(video, stream_gate_threshold, tmp_path):
    path, segments, _ = video
    gate = Gate(detector="yunet", views="none", policy=Policy(min_score=stream_gate_threshold))
    out = tmp_path / "shots"
    streamer = StreamGate(gate, accept_frames=3, best_window=12, max_gap=0.3, out_dir=out, events=tmp_path / "ev.jsonl")
    results = list(streamer.run(str(path)))
    assert len(results) == sum(len(v) for v in segments.values())
    events = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    accepted = [e for e in events if e["event"] == "accepted"]
    rejected = [e for e in events if e["event"] == "rejected"]
    assert len(accepted) == 1 and len(rejected) == 2, events
    best = accepted[0]
    assert best["frame"] in segments["sharp"] and best["frame"] not in (segments["sharp"][6], segments["sharp"][7])
    assert (out / f"track{best['track']:05d}_frame{best['frame']:07d}.jpg").is_file()
    sidecar = json.loads((out / f"track{best['track']:05d}_frame{best['frame']:07d}.json").read_text())
    assert sidecar["score"] == best["score"] and len(sidecar["box"]) == 4 and "time" in sidecar
    by_segment = {min(segments[s], key=lambda i: abs(i - e["first_frame"])): e for e in rejected for s in segments
                  if e["first_frame"] in segments[s]}
    # the prompts come from the quality components (the same ones single captures report)
    blurred = next(e for e in rejected if e["first_frame"] in segments["blurred"])
    dark = next(e for e in rejected if e["first_frame"] in segments["dark"])
    assert blurred["reason"] == "blurred" and dark["reason"] == "too_dark", by_segment
    assert blurred["prompt"] == PROMPTS["blurred"] and dark["prompt"] == PROMPTS["too_dark"]
    # no decision ever comes from the empty frames, and nobody flickers: one decision per visit
    for i in segments["gap1"] + segments["gap2"] + segments["gap3"]:
        assert results[i].faces == ()
    assert len({e["track"] for e in events}) == len(events)


def test_a_second_run_into_the_same_folder_adds_and_never_overwrites(video, stream_gate_threshold, tmp_path):
    path, segments, _ = video
    gate = Gate(detector="yunet", views="none", policy=Policy(min_score=stream_gate_threshold))
    out, log = tmp_path / "shots", tmp_path / "shots" / "events.jsonl"
    first = StreamGate(gate, max_gap=0.3, out_dir=out, events=log)
    list(first.run(str(path), max_frames=24))
    first_files = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "events.jsonl"}
    first_events = log.read_text().splitlines()
    assert first_files and first_events
    log.write_text(log.read_text() + '{"event": "accep')  # the first run killed mid-line
    second = StreamGate(gate, max_gap=0.3, out_dir=out, events=log)
    list(second.run(str(path), max_frames=24))
    assert second.first_track == 1 + max(json.loads(line)["track"] for line in first_events)
    # the first run's best shots are all still there, byte for byte
    assert all((out / name).read_bytes() == data for name, data in first_files.items())
    assert len([p for p in out.iterdir() if p.suffix == ".json"]) == 2 * len([n for n in first_files if n.endswith(".json")])
    lines = log.read_text().splitlines()
    assert lines[len(first_events)] == '{"event": "accep'  # the cut line stays alone, the next run starts anew
    events = [json.loads(line) for i, line in enumerate(lines) if i != len(first_events)]
    runs = [e["run"] for e in events]
    assert len(set(runs)) == 2 and runs == sorted(runs)  # two runs, each event names its own
    assert len({(e["run"], e["track"]) for e in events}) == len({e["track"] for e in events}) == len(events)
    for sidecar in out.glob("*.json"):
        record = json.loads(sidecar.read_text())
        assert any(e["run"] == record["run"] and e["track"] == record["track"] for e in events)


def test_detect_every_k_frames_holds_the_face(video, stream_gate_threshold):
    path, segments, _ = video
    gate = Gate(detector="yunet", views="none", policy=Policy(min_score=stream_gate_threshold))
    results = list(StreamGate(gate, detect_every=3).run(str(path), max_frames=12))
    assert len(results) == 12
    assert all(len(r.faces) == 1 for r in results[:6])


def test_cli_stream_on_a_video_and_a_folder(video, stream_gate_threshold, tmp_path):
    path, segments, frames = video
    runner = CliRunner()
    result = runner.invoke(main, ["stream", "--source", str(path), "--out", str(tmp_path / "out"),
                                  "--threshold", f"{stream_gate_threshold:.3f}", "--max-frames", "30"])
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output and (tmp_path / "out" / "events.jsonl").is_file()
    assert "scoring with onnxruntime" in result.output  # the shipped graph, by default
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames[:20]):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f[..., ::-1])
    assert classify(str(folder)) is SourceKind.FRAMES
    result = runner.invoke(main, ["stream", "--source", str(folder), "--out", str(tmp_path / "out2"),
                                  "--threshold", f"{stream_gate_threshold:.3f}", "--backend", "torch"])
    assert result.exit_code == 0 and "20 frames" in result.output and "scoring with PyTorch" in result.output
    assert "earlier runs" not in result.output  # a new folder
    # a second run into the first folder says it adds to it; a wrong path adds nothing and says only that
    again = runner.invoke(main, ["stream", "--source", str(path), "--out", str(tmp_path / "out"),
                                 "--threshold", f"{stream_gate_threshold:.3f}", "--max-frames", "30"])
    assert again.exit_code == 0 and "hold earlier runs: appending, this run's visits numbered from" in again.output
    before = (tmp_path / "out" / "events.jsonl").read_bytes()
    wrong = runner.invoke(main, ["stream", "--source", str(tmp_path / "no-such.avi"), "--out", str(tmp_path / "out")])
    assert wrong.exit_code == 1 and "not found" in wrong.output and "earlier runs" not in wrong.output
    assert "Traceback" not in wrong.output and (tmp_path / "out" / "events.jsonl").read_bytes() == before


def test_bad_sources_fail_clearly(tmp_path):
    corrupt = tmp_path / "broken.avi"
    corrupt.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    for source in (str(tmp_path / "missing.mp4"), str(corrupt)):
        with pytest.raises(SourceError):
            with open_source(source) as frames:
                list(frames)
    run = subprocess.run([sys.executable, "-m", "facegate.cli", "stream", "--source", str(tmp_path / "missing.mp4"),
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and "missing.mp4" in run.stderr and "Traceback" not in run.stderr
    assert classify(0) is SourceKind.CAMERA and classify("rtsp://example/cam") is SourceKind.STREAM


def test_show_without_a_display_is_a_clear_usage_error(video, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    path, _, _ = video
    result = CliRunner().invoke(main, ["stream", "--source", str(path), "--show", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "needs a display" in result.output


def _per_frame(gate, frames, **options):
    """Every frame's faces (score, status, reasons) and the events, frames at 10 fps."""
    from facegate.sources import Frame

    streamer = StreamGate(gate, accept_frames=3, max_gap=0.3, **options)
    views, events = [], []
    for i, rgb in enumerate(frames):
        result = streamer.process(Frame(i, i / 10, rgb))
        views.append([(round(v.score, 3), v.status.value, v.reasons) for v in result.faces])
        events += [e.to_dict() for e in result.events]
    events += [e.to_dict() for e in streamer.finish()]
    return views, events


def test_the_orientation_is_asked_once_per_visit_and_again_for_the_next(video, stream_gate_threshold):
    """A camera turned between visits: every frame of the turned visit is seen turned (its
    face found on the upright copy, named rotated) and every frame of the upright visits
    upright, whether the orientation answer is reused within a visit (the default) or asked
    on every frame: a new visit asks again."""
    _, segments, frames = video
    sharp = [frames[i] for i in segments["sharp"][:6]]
    empty = [frames[i] for i in segments["gap1"]]
    turned = [np.ascontiguousarray(np.rot90(f, k=-1)) for f in sharp]  # the camera turned a quarter clockwise
    gate = Gate(detector="yunet", views="none", policy=Policy(min_score=stream_gate_threshold))
    clip = sharp + empty + turned + empty + sharp  # upright, then turned, then upright again
    reused, reused_events = _per_frame(gate, clip)
    asked, asked_events = _per_frame(gate, clip, orient_every=0)
    assert reused == asked and reused_events == asked_events
    n, gap = len(sharp), len(empty)
    upright = reused[:n] + reused[2 * (n + gap):]
    assert all(len(v) == 1 and "rotated" not in v[0][2] for v in upright), upright
    assert all(len(v) == 1 and "rotated" in v[0][2] and v[0][1] == "rejected" for v in reused[n + gap:2 * n + gap])
    assert [e["reason"] for e in reused_events if e["event"] == "rejected"] == ["rotated"]
