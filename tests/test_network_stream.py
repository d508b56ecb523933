"""A real network stream on the loopback interface: an HTTP server sends MJPEG
(multipart/x-mixed-replace, what IP cameras serve), drops the connection, comes back once,
then goes away for good. The source must reconnect, the gate must keep what it found, and
the end must be a clear error with a non-zero exit code."""

import json
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facegate.cli import main
from facegate.errors import SourceError
from facegate.images import load_rgb
from facegate.sources import SourceKind, open_source


class FlakyCamera:
    """Serves ``frames_per_visit`` JPEG frames per connection for the first ``visits``
    connections (then closes the socket, a dropped stream) and answers 503 afterwards."""

    def __init__(self, frames_for_visit, visits=2, frames_per_visit=20, fps=25.0):
        self.connections = 0
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                camera.connections += 1
                visit = camera.connections
                if visit > visits:
                    self.send_error(503, "camera gone")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for bgr in frames_for_visit(visit, frames_per_visit):
                    ok, jpg = cv2.imencode(".jpg", bgr)
                    try:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                        self.wfile.write(b"Content-Length: %d\r\n\r\n" % len(jpg) + jpg.tobytes() + b"\r\n")
                    except (BrokenPipeError, ConnectionResetError):
                        return
                    time.sleep(1.0 / fps)

            def log_message(self, *args):
                pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.mjpg"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_camera():
    cameras = []

    def start(frames_for_visit, **options):
        cameras.append(FlakyCamera(frames_for_visit, **options))
        return cameras[-1]

    yield start
    for camera in cameras:
        camera.close()


def test_dropped_stream_is_reconnected_then_fails_clearly(flaky_camera):
    # each visit paints its frames a different grey, so frames after the reconnection are recognisable
    camera = flaky_camera(lambda visit, n: [np.full((120, 160, 3), 60 * visit, np.uint8)] * n)
    seen = []
    with open_source(camera.url, retries=2, retry_delay=0.05) as frames:
        assert frames.kind is SourceKind.STREAM
        with pytest.raises(SourceError, match="stream stopped delivering frames after 2 retries"):
            for frame in frames:
                seen.append(int(round(frame.rgb.mean() / 60)))
        assert frames.reconnects >= 1
    assert 1 in seen and 2 in seen, "frames from before and after the drop"
    assert seen == sorted(seen), "no frame of the first visit after the second began"
    assert camera.connections >= 4, "the source retried after the camera went away"


def test_cli_keeps_the_best_shot_when_the_stream_dies(flaky_camera, fixtures, tmp_path):
    face = load_rgb(fixtures / "colin_powell_2.jpg")[..., ::-1]
    frame = np.full((240, 320, 3), 90, np.uint8)
    frame[:, 35:285] = face[5:245]
    camera = flaky_camera(lambda visit, n: [frame] * n, frames_per_visit=25)
    out = tmp_path / "stream"
    run = CliRunner().invoke(main, ["stream", "--source", camera.url, "--out", str(out), "--retries", "1",
                                    "--threshold", "1", "--accept-frames", "2", "--detector", "yunet"])
    assert run.exit_code == 1, run.output
    assert "stream stopped delivering frames after 1 retries" in run.output
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    accepted = [e for e in events if e["event"] == "accepted"]
    assert accepted, events
    assert cv2.imread(accepted[0]["image"]) is not None, "the best shot was written before the stream died"
    assert json.loads((out / f"{accepted[0]['image'].rsplit('/', 1)[-1][:-4]}.json").read_text())["score"] > 1
