"""facegate serve: the same records as `facegate score`, bad requests as 4xx with a JSON
cause, concurrent clients each with their own answer, the token, SIGTERM, the live page's
stream, and the page itself in headless Chromium with a camera fed from a video file."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("starlette")
from starlette.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from facegate.cli import main  # noqa: E402
from facegate.service import ServiceSettings, create_app  # noqa: E402

from tests.bad_inputs import make_bad_inputs  # noqa: E402
from tests.conftest import FIXTURES, ROOT  # noqa: E402
from tests.review_run import browser_missing, open_browser  # noqa: E402


def cli_records(paths, *options) -> dict[str, dict]:
    """What `facegate score --format jsonl` prints for each path, by path."""
    out = CliRunner().invoke(main, ["score", "--format", "jsonl", *options, *map(str, paths)])
    return {r["source"]: r for r in map(json.loads, out.output.splitlines())}


def without_source(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "source"}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(ServiceSettings(threads=2))) as c:
        wait_until_ready(lambda: c.get("/v1/health").status_code)
        yield c


def wait_until_ready(status, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while status() != 200:
        assert time.monotonic() < deadline, "the service did not become healthy"
        time.sleep(0.05)


def test_health_is_503_until_the_models_are_loaded():
    app = create_app(ServiceSettings(threads=2))
    plain = TestClient(app)  # no lifespan: nothing loads
    response = plain.get("/v1/health")
    assert response.status_code == 503 and response.json()["error"] == "loading"
    assert plain.post("/v1/assess", content=(FIXTURES / "tony_blair_1.jpg").read_bytes()).status_code == 503


def test_assess_gives_the_records_facegate_score_prints(client, tmp_path):
    bad = tmp_path / "bad"
    make_bad_inputs(bad)
    paths = sorted(FIXTURES.glob("*.jpg")) + sorted(p for p in bad.iterdir() if p.is_file())
    expected = cli_records(paths)
    refused = 0
    for path in paths:
        data = path.read_bytes()
        response = client.post("/v1/assess", content=data)
        record = expected[str(path)]
        assert path.name not in response.text and str(tmp_path) not in response.text  # nothing of the server's
        if record["status"] == "unreadable":
            refused += 1
            assert 400 <= response.status_code < 500, (path.name, response.status_code)
            assert set(response.json()) >= {"error", "detail"}, path.name
            continue
        assert response.status_code == 200, (path.name, response.text)
        assert without_source(response.json()) == without_source(record), path.name
        assert response.json()["source"] == "upload"
    assert refused >= 3 and len(paths) - refused >= 5
    # multipart form data: the same record
    photo = FIXTURES / "multiface.jpg"
    form = client.post("/v1/assess", files={"image": ("group.jpg", photo.read_bytes(), "image/jpeg")})
    assert form.status_code == 200 and without_source(form.json()) == without_source(expected[str(photo)])


def test_query_options_are_the_command_lines(client):
    group, face = FIXTURES / "multiface.jpg", FIXTURES / "tony_blair_1.jpg"
    enrollment = client.post("/v1/assess?profile=enrollment", content=face.read_bytes()).json()
    assert without_source(enrollment) == without_source(cli_records([face], "--profile", "enrollment")[str(face)])
    allowed = client.post("/v1/assess?allow_multiple_faces=true", content=group.read_bytes()).json()
    assert without_source(allowed) == without_source(cli_records([group], "--allow-multiple-faces")[str(group)])
    assert "multiple_faces" not in allowed["reasons"]
    every = client.post("/v1/assess?all_faces=true", content=group.read_bytes()).json()
    assert without_source(every) == without_source(cli_records([group], "--all-faces")[str(group)])
    assert len(every["every_face"]) == len(every["faces"]) >= 2 and sum(f["primary"] for f in every["every_face"]) == 1
    strict = client.post("/v1/assess?threshold=99.9", content=face.read_bytes()).json()
    assert strict["status"] == "rejected" and "low_quality" in strict["reasons"]
    # and the default gate is untouched by them
    assert client.post("/v1/assess", content=face.read_bytes()).json()["status"] == "accepted"


def test_bad_requests_get_a_4xx_naming_the_cause_and_the_server_stays_up():
    face = (FIXTURES / "tony_blair_1.jpg").read_bytes()
    big = io.BytesIO()
    Image.new("RGB", (1200, 900), (120, 110, 100)).save(big, "PNG")
    settings = ServiceSettings(threads=2, max_body_bytes=len(face) + 10, max_pixels=1000 * 800)
    with TestClient(create_app(settings)) as c:
        wait_until_ready(lambda: c.get("/v1/health").status_code)
        cases = [
            (c.post("/v1/assess", content=b""), 400, "empty_body"),
            (c.post("/v1/assess", content=b"%PDF-1.4 not an image"), 415, "not_an_image"),
            (c.post("/v1/assess", content=face + b"\0" * 64), 413, "too_large"),
            (c.post("/v1/assess", content=big.getvalue()[: len(face)]), 413, "too_many_pixels"),
            (c.post("/v1/assess?colour=red", content=face), 400, "unknown_option"),
            (c.post("/v1/assess?profile=passport", content=face), 400, "bad_option"),
            (c.post("/v1/assess?threshold=abc", content=face), 400, "bad_option"),
            (c.post("/v1/assess", content=b"--x\r\n", headers={"content-type": "multipart/form-data; boundary=x"}),
             400, None),
            (c.post("/v1/assess", content=face[: len(face) // 3]), 422, "unreadable"),
            (c.get("/v1/nothing"), 404, "not_found"),
        ]
        for response, status, code in cases:
            assert response.status_code == status, (code, response.text)
            body = response.json()
            assert body["detail"] and "Traceback" not in response.text
            if code:
                assert body["error"] == code
        assert "413" not in cases[2][0].json()["detail"] and str(len(face) + 10) in cases[2][0].json()["detail"]
        assert c.get("/v1/health").status_code == 200
        assert c.post("/v1/assess", content=face).json()["status"] == "accepted"


def test_a_request_over_its_time_gets_504_and_the_next_one_is_answered():
    face = (FIXTURES / "tony_blair_1.jpg").read_bytes()
    with TestClient(create_app(ServiceSettings(threads=2, request_timeout_s=0.001))) as c:
        wait_until_ready(lambda: c.get("/v1/health").status_code)
        late = c.post("/v1/assess", content=camera_frame(FIXTURES / "tony_blair_1.jpg"))
        assert late.status_code == 504 and late.json()["error"] == "timeout"
    with TestClient(create_app(ServiceSettings(threads=2, request_timeout_s=60))) as c:
        wait_until_ready(lambda: c.get("/v1/health").status_code)
        assert c.post("/v1/assess", content=face).status_code == 200


def test_a_token_guards_every_route_but_health():
    face = (FIXTURES / "tony_blair_1.jpg").read_bytes()
    with TestClient(create_app(ServiceSettings(threads=2, token="s3cret"))) as c:
        wait_until_ready(lambda: c.get("/v1/health").status_code)
        assert c.post("/v1/assess", content=face).status_code == 401
        assert c.post("/v1/assess", content=face, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/assess", content=face, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/").status_code == 401 and c.get("/?token=s3cret").status_code == 200
        with pytest.raises(WebSocketDisconnect) as refused:
            with c.websocket_connect("/v1/stream"):
                pass
        assert refused.value.code == 4401
        with c.websocket_connect("/v1/stream?token=s3cret") as ws:
            ws.send_bytes(camera_frame(FIXTURES / "tony_blair_1.jpg"))
            assert "faces" in ws.receive_json()


def camera_frame(photo: Path, size=(640, 480)) -> bytes:
    """A camera-sized JPEG frame with the photo's face in the middle."""
    canvas = Image.new("RGB", size, (90, 90, 90))
    face = Image.open(photo).convert("RGB").resize((300, 300))
    canvas.paste(face, ((size[0] - 300) // 2, (size[1] - 300) // 2))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_the_live_stream_follows_a_visit_to_its_best_shot(client):
    empty = io.BytesIO()
    Image.new("RGB", (640, 480), (90, 90, 90)).save(empty, "JPEG")
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(empty.getvalue())
        first = ws.receive_json()
        assert first["faces"] == [] and "no face" in first["prompt"]
        accepted = None
        for _ in range(25):
            ws.send_bytes(camera_frame(FIXTURES / "tony_blair_1.jpg"))
            reply = ws.receive_json()
            assert reply["faces"], "the face is found in every frame"
            accepted = accepted or next((e for e in reply["events"] if e["event"] == "accepted"), None)
        assert accepted is not None, "a steady good face is accepted within the frames sent"
        assert accepted["image"].startswith("data:image/jpeg;base64,") and accepted["face_image"]
        ws.send_bytes(b"not a frame")
        assert ws.receive_json()["error"] == "bad_frame"


# -- a real server -------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server():
    """`facegate serve` in its own process; yields (base URL, process)."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([str(Path(sys.executable).parent / "facegate"), "serve", "--port", str(port),
                                "--threads", "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    import httpx

    url = f"http://127.0.0.1:{port}"

    def health():
        try:
            return httpx.get(url + "/v1/health", timeout=2).status_code
        except httpx.HTTPError:
            return None

    try:
        wait_until_ready(health)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_sixteen_concurrent_clients_each_get_their_own_answer(server, tmp_path):
    import httpx

    url, _ = server
    photos = sorted(FIXTURES.glob("*.jpg"))
    variants = []  # the fixtures and darker copies of them: 16 different captures
    for k in range(16):
        rgb = np.asarray(Image.open(photos[k % len(photos)]).convert("RGB"), dtype=np.float32)
        path = tmp_path / f"capture{k:02d}.jpg"
        Image.fromarray(np.clip(rgb * (1.0 - 0.045 * k), 0, 255).astype(np.uint8)).save(path, quality=92)
        variants.append(path)
    expected = cli_records(variants)
    barrier = threading.Barrier(16)

    def ask(path):
        data = path.read_bytes()
        with httpx.Client(timeout=120) as http:
            barrier.wait()
            return path, [http.post(url + "/v1/assess", content=data) for _ in range(3)]

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, variants))
    for path, responses in answers:
        for response in responses:
            assert response.status_code == 200, response.text
            assert without_source(response.json()) == without_source(expected[str(path)]), path.name
    assert len({json.dumps(without_source(r)) for r in expected.values()}) >= 10  # the answers do differ


def test_sigterm_finishes_the_request_in_flight_and_exits_0(server):
    url, process = server
    host, port = url.removeprefix("http://").split(":")
    data = camera_frame(FIXTURES / "tony_blair_1.jpg")
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        conn.sendall(f"POST /v1/assess HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/jpeg\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data[:1000])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        conn.sendall(data[1000:])  # the rest of the body, after the signal
        reply = b""
        while chunk := conn.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    record = json.loads(body)
    assert record["source"] == "upload" and record["face"] is not None  # the whole answer, not a refusal
    assert process.wait(30) == 0


# -- the page in Chromium ------------------------------------------------------------------

@pytest.mark.skipif(browser_missing() is not None, reason=f"needs a headless browser: {browser_missing()}")
def test_the_capture_page_in_chromium_shows_the_prompt_and_the_best_shot(server, tmp_path):
    url, _ = server
    video = tmp_path / "camera.mjpeg"  # Chromium's fake camera plays this file in a loop
    with video.open("wb") as fh:
        for k in range(40):
            fh.write(camera_frame(FIXTURES / "tony_blair_1.jpg"))
    try:
        browser = open_browser(1000, 900, extra_args=("--use-fake-ui-for-media-stream",
                                                      "--use-fake-device-for-media-stream",
                                                      f"--use-file-for-fake-video-capture={video}"))
    except Exception as exc:
        pytest.skip(f"headless Chromium would not start: {exc}")
    try:
        browser.get(url + "/")
        deadline = time.monotonic() + 90
        while not (browser.find_element("id", "best").get_attribute("src") or "").startswith("data:image/jpeg"):
            assert time.monotonic() < deadline, ("no best shot", browser.find_element("id", "status").text)
            time.sleep(0.2)
        assert browser.find_element("id", "result").is_displayed()
        assert browser.find_element("id", "save").get_attribute("href").startswith("data:image/jpeg")
        # the operator saves it: the file is the person of the video (every frame is the same photo)
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        browser.find_element("id", "save").click()
        deadline = time.monotonic() + 30
        while not [p for p in downloads.glob("facegate-visit*.jpg")]:
            assert time.monotonic() < deadline, f"nothing saved: {list(downloads.iterdir())}"
            time.sleep(0.1)
        time.sleep(0.3)
        saved = np.asarray(Image.open(next(downloads.glob("facegate-visit*.jpg"))).convert("RGB"), dtype=np.float32)
        frame = np.asarray(Image.open(io.BytesIO(camera_frame(FIXTURES / "tony_blair_1.jpg"))), dtype=np.float32)
        assert saved.shape == frame.shape and np.abs(saved - frame).mean() < 12
        assert browser.find_element("id", "prompt").text
        assert int(browser.find_element("tag name", "body").get_attribute("data-frames")) >= 3
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        # nothing but the page itself and its stream was fetched
        fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(name.startswith(url) or name.startswith("ws") for name in fetched), fetched
    finally:
        browser.quit()
