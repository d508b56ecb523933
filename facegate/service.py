"""``facegate serve``: the gate over HTTP for recognition pipelines, and a live capture page.

Routes (Starlette on uvicorn; needs the ``serve`` extra):

    GET  /              the live capture page (one self-contained HTML file, :mod:`facegate.capture_page`)
    GET  /v1/health     200 once the models are loaded, 503 before; never needs the token
    POST /v1/assess     an image as the body (or as multipart form data) -> the JSON record
                        ``facegate score --format jsonl`` prints for that file; query options
                        ``profile``, ``threshold``, ``allow_multiple_faces``, ``all_faces``
    WS   /v1/stream     JPEG frames in, one JSON message per frame out: faces with their box,
                        score and prompt, and the visit decisions of the stream gate (an
                        accepted visit carries its best shot)

Why it is built this way:

- **Models load once per worker process**, in a background thread started by the app's
  lifespan, so the socket is open (and health says 503) while they load; threads are chosen
  once per process (:func:`facegate.runtime.configure_threads` through :class:`Gate`).
- **One assessing thread per process** takes every request waiting (up to ``max_batch``) and
  assesses them together, so concurrent requests share forward passes; each request's
  result is handed back by its own future, so no request can see another's. The event loop
  never runs model code.
- **A bad request is a 4xx with a JSON body** ``{"error": code, "detail": words}``: never a
  stack trace, never the server's paths. Limits (body bytes, pixels, seconds per request)
  are :class:`ServiceSettings` fields with defaults that fit camera photos.
- **Security**: loopback by default; with a token (``--token`` or ``FACEGATE_TOKEN``) every
  route but health needs ``Authorization: Bearer <token>`` (browsers, which cannot set that
  header on a WebSocket, may pass ``?token=``); compared in constant time. A capture's
  ``source`` is reported as ``upload``, never a file name.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import io
import json
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, replace
from typing import Any

import cv2
import numpy as np

from .extras import require

require("serve", "facegate serve")

from starlette.applications import Starlette  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.formparsers import MultiPartParser  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import HTMLResponse, JSONResponse  # noqa: E402
from starlette.routing import Route, WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: E402

from .capture_page import PAGE  # noqa: E402
from .errors import ConfigError, FacegateError  # noqa: E402
from .images import MAX_PIXELS, EncodedImage  # noqa: E402
from .policy import PROFILE_NAMES, Policy, Status  # noqa: E402
from .stream import StreamOutputs, face_crop  # noqa: E402

__all__ = ["ServiceSettings", "create_app", "SETTINGS_ENV", "TOKEN_ENV"]

log = logging.getLogger("facegate.service")

#: Environment variable that carries the settings to each worker process (uvicorn imports the
#: app anew in every worker, so they travel as JSON), and the one for the bearer token.
SETTINGS_ENV = "FACEGATE_SERVE_SETTINGS"
TOKEN_ENV = "FACEGATE_TOKEN"

#: The source name every uploaded capture is reported by (never the client's file name).
UPLOAD_NAME = "upload"

#: Query options of POST /v1/assess, as the command line's.
ASSESS_OPTIONS = ("profile", "threshold", "allow_multiple_faces", "all_faces")


@dataclass(frozen=True)
class ServiceSettings:
    """Everything ``facegate serve`` is started with; one value, passed to every worker.

    Attributes:
        policy, profile: the default policy (a file, or a named profile) of POST /v1/assess;
            a request may name another profile.
        weights, views, detector: as for :class:`facegate.Gate`.
        stream_detector: the live page's detector (YuNet, as ``facegate stream``: frame rate).
        threads: the thread budget of each worker process (default: every available core,
            divided between workers).
        token: bearer token required on every route but health (None: no token).
        max_body_bytes: largest request body (413 above it).
        max_pixels: largest image, width x height (413 above it; the gate's own
            decompression-bomb guard is set to it too).
        request_timeout_s: a request still waiting or being assessed after this long gets 504.
        max_batch: requests assessed together at most (1: one at a time).
        accept_frames, best_window: the live page's stream gate (as ``facegate stream``).
    """

    policy: str | None = None
    profile: str | None = None
    weights: str | None = None
    views: str = "full"
    detector: str = "mtcnn"
    stream_detector: str = "yunet"
    threads: int | None = None
    token: str | None = None
    max_body_bytes: int = 20 * 1024 * 1024
    max_pixels: int = MAX_PIXELS
    request_timeout_s: float = 30.0
    max_batch: int = 8
    accept_frames: int = 3
    best_window: int | None = 15

    def __post_init__(self):
        if self.profile is not None and self.profile not in PROFILE_NAMES:
            raise ConfigError(f"unknown profile {self.profile!r}; choose from {', '.join(PROFILE_NAMES)}")
        if self.max_body_bytes < 1 or self.max_pixels < 1 or self.request_timeout_s <= 0 or self.max_batch < 1:
            raise ConfigError("max_body_bytes, max_pixels, max_batch and request_timeout_s must be positive")

    def to_env(self) -> str:
        """The settings as JSON for :data:`SETTINGS_ENV`, without the token (it travels in
        :data:`TOKEN_ENV`, so it never shows in a process listing's JSON)."""
        return json.dumps({**asdict(self), "token": None})

    @classmethod
    def from_env(cls) -> "ServiceSettings":
        data = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
        return cls(**{**data, "token": os.environ.get(TOKEN_ENV) or data.get("token")})


class RequestError(Exception):
    """A request the service refuses: its HTTP status, a stable code and words for people."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


# -- the models: loaded once per process, used by one assessing thread ----------------------

class Models:
    """The gates of one worker process, loaded in a background thread (health says 503
    until they are), and the assessing thread that batches concurrent requests."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.ready = threading.Event()
        self.failed: str | None = None
        self.gate = None
        self.stream_gate = None
        self._by_options: dict[tuple, Any] = {}
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._loader = threading.Thread(target=self._load, name="facegate-load", daemon=True)
        self._worker = threading.Thread(target=self._assess_loop, name="facegate-assess", daemon=True)

    def start(self) -> None:
        self._loader.start()

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(None)

    def _load(self) -> None:
        from .capture import CaptureSettings
        from .gate import Gate

        s = self.settings
        try:
            capture = CaptureSettings(detector=s.detector, max_pixels=s.max_pixels)
            self.gate = Gate(policy=s.policy, profile=s.profile, weights=s.weights, views=s.views, capture=capture,
                             threads=s.threads, batch_size=s.max_batch)
            self.stream_gate = Gate(policy=s.policy, profile=s.profile, weights=s.weights, views=s.views,
                                    capture=capture.with_(detector=s.stream_detector), threads=s.threads)
        except FacegateError as exc:
            self.failed = str(exc)
            log.error("facegate serve: the models could not be loaded: %s", exc)
            return
        self._worker.start()
        self.ready.set()

    def gate_for(self, options: tuple):
        """The gate of a request's policy options (profile, threshold, bystanders allowed):
        the default one, or one made once per option set over the same models."""
        if options == (None, None, False):
            return self.gate
        gate = self._by_options.get(options)
        if gate is None:
            profile, threshold, allow_multiple = options
            s = self.settings
            base = Policy.choose(s.policy if profile is None else None, profile or s.profile)
            gate = self.gate.with_policy(base.with_options(threshold=threshold, allow_multiple_faces=allow_multiple))
            self._by_options[options] = gate
        return gate

    def submit(self, options: tuple, data: bytes) -> Future:
        future: Future = Future()
        self._queue.put((options, data, future))
        return future

    def _assess_loop(self) -> None:
        """Take every request waiting (up to ``max_batch``), assess each option set's
        requests in one ``assess_many`` (their faces scored in one batch), and hand each
        result to its own future."""
        while not self._stop.is_set():
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.settings.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._stop.set()
                    break
                batch.append(item)
            batch = [item for item in batch if item[2].set_running_or_notify_cancel()]
            for options in dict.fromkeys(item[0] for item in batch):
                group = [item for item in batch if item[0] == options]
                try:
                    results = list(self.gate_for(options[:3]).assess_many(
                        [EncodedImage(UPLOAD_NAME, data) for _, data, _ in group], all_faces=options[3]))
                except Exception as exc:  # a bug, not a bad input: every request of the group hears of it
                    log.exception("facegate serve: assessing failed")
                    for _, _, future in group:
                        future.set_exception(exc)
                    continue
                for (_, _, future), result in zip(group, results):
                    future.set_result(result)


# -- requests ------------------------------------------------------------------------------

def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _authorised(settings: ServiceSettings, headers, query) -> bool:
    if not settings.token:
        return True
    given = ""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    elif "token" in query:
        given = query["token"]
    return hmac.compare_digest(given.encode(), settings.token.encode())


def _parse_options(query) -> tuple:
    unknown = sorted(set(query) - set(ASSESS_OPTIONS) - {"token"})
    if unknown:
        raise RequestError(400, "unknown_option", f"unknown query option {unknown[0]!r}; known: "
                           + ", ".join(ASSESS_OPTIONS))
    profile = query.get("profile") or None
    if profile is not None and profile not in PROFILE_NAMES:
        raise RequestError(400, "bad_option", f"profile {profile!r} is not one of {', '.join(PROFILE_NAMES)}")
    threshold = query.get("threshold")
    if threshold is not None:
        try:
            threshold = float(threshold)
        except ValueError:
            threshold = float("nan")
        if not 0 <= threshold <= 100:
            raise RequestError(400, "bad_option", f"threshold {query['threshold']!r} is not a number from 0 to 100")
    return profile, threshold, _flag(query, "allow_multiple_faces"), _flag(query, "all_faces")


def _flag(query, name: str) -> bool:
    value = query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no", ""):
        raise RequestError(400, "bad_option", f"{name} {query[name]!r} is not true or false")
    return value in ("true", "1", "yes", "")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (a declared length is
    checked before anything is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "too_large", f"the body is {int(declared)} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "too_large", f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _image_bytes(request: Request, body: bytes) -> bytes:
    """The image of the request: the body itself, or a multipart form's file (the field
    ``image``, or else its only file)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=16).parse()
    except Exception:  # a malformed form, one file too many, ...
        raise RequestError(400, "bad_form", "the multipart form could not be read, or holds more than one file")
    files = [v for _, v in form.multi_items() if hasattr(v, "read")]
    chosen = form.get("image") if hasattr(form.get("image"), "read") else (files[0] if files else None)
    if chosen is None:
        raise RequestError(400, "no_image", "the multipart form has no file (send it as the field 'image')")
    return await chosen.read()


def _check_image(data: bytes, max_pixels: int) -> None:
    """Refuse what is not an image, or too many pixels, from its header (nothing decoded)."""
    from PIL import Image

    if not data:
        raise RequestError(400, "empty_body", "the request has no image: send the image file as the body")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Image.DecompressionBombError:
        raise RequestError(413, "too_many_pixels", f"the image has too many pixels; the limit is {max_pixels}")
    except Exception:
        raise RequestError(415, "not_an_image", "the body is not an image in a format facegate reads "
                           "(JPEG, PNG, WebP, BMP, TIFF, ...)")
    if width * height > max_pixels:
        raise RequestError(413, "too_many_pixels", f"the image is {width}x{height} = {width * height} pixels; "
                           f"the limit is {max_pixels}")


def create_app(settings: ServiceSettings | None = None) -> Starlette:
    """The service as an ASGI app (for uvicorn, or any ASGI server); ``settings`` default
    to :meth:`ServiceSettings.from_env` (how ``facegate serve --workers N`` passes them)."""
    settings = settings or ServiceSettings.from_env()
    models = Models(settings)
    handlers = _Handlers(settings, models)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        models.start()
        try:
            yield
        finally:
            models.stop()

    routes = [Route("/", handlers.page), Route("/v1/health", handlers.health),
              Route("/v1/assess", handlers.assess, methods=["POST"]), WebSocketRoute("/v1/stream", handlers.stream)]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: _http_error, Exception: _internal_error})
    app.state.models = models
    return app


PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "img-src data: blob:; media-src blob: mediastream:; connect-src 'self'",
    "Cache-Control": "no-store"}


class _Handlers:
    """The routes of one app: each checks the token and whether the models are loaded, then
    hands the work to :class:`Models` (requests) or a :class:`LiveSession` (the live page)."""

    def __init__(self, settings: ServiceSettings, models: Models):
        self.settings, self.models = settings, models

    async def health(self, request: Request):
        models = self.models
        if models.failed:
            return _error(503, "not_loaded", "the models could not be loaded; see the server's log")
        if not models.ready.is_set():
            return _error(503, "loading", "the models are loading")
        gate = models.gate
        return JSONResponse({"status": "ok", "weights": gate.spec.name, "score_scale": gate.spec.score_scale,
                             "terms": gate.spec.terms, "profile": gate.policy.profile})

    async def assess(self, request: Request):
        settings, models = self.settings, self.models
        if not _authorised(settings, request.headers, request.query_params):
            return _error(401, "unauthorised", "this service needs a bearer token (Authorization: Bearer ...)")
        if not models.ready.is_set():
            return _error(503, "loading", "the models are loading; try again shortly")
        try:
            options = _parse_options(request.query_params)
            data = await _image_bytes(request, await _read_body(request, settings.max_body_bytes))
            _check_image(data, settings.max_pixels)
            future = models.submit(options, data)
            try:
                result = await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout_s)
            except asyncio.TimeoutError:
                future.cancel()
                raise RequestError(504, "timeout", f"the request took over {settings.request_timeout_s:g} s")
        except RequestError as exc:
            return _error(exc.status, exc.code, exc.detail)
        record = result.to_dict()
        if result.status is Status.UNREADABLE:
            return JSONResponse({"error": "unreadable", "detail": result.error.removeprefix(f"{UPLOAD_NAME}: "),
                                 "record": record}, status_code=422)
        return JSONResponse(record)

    async def page(self, request: Request):
        if not _authorised(self.settings, request.headers, request.query_params):
            return _error(401, "unauthorised", "this page needs the service's token: open /?token=...")
        return HTMLResponse(PAGE, headers=PAGE_HEADERS)

    async def stream(self, websocket: WebSocket):
        if not _authorised(self.settings, websocket.headers, websocket.query_params):
            await websocket.close(code=4401, reason="unauthorised")
            return
        await websocket.accept()
        if not self.models.ready.is_set():
            await websocket.send_json({"error": "loading", "detail": "the models are loading; try again shortly"})
            await websocket.close(code=1013)
            return
        session = LiveSession(self.models.stream_gate, self.settings)
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                reply = await self._frame_reply(session, message.get("bytes"))
                await websocket.send_json(reply)
        except WebSocketDisconnect:
            pass
        finally:
            await asyncio.to_thread(session.finish)

    async def _frame_reply(self, session: "LiveSession", data: bytes | None) -> dict:
        if data is None:
            return {"error": "bad_frame", "detail": "send each frame as a binary JPEG"}
        if len(data) > self.settings.max_body_bytes:
            return {"error": "too_large", "detail": "the frame is over the body limit"}
        return await asyncio.to_thread(session.process, data)


async def _http_error(request, exc: HTTPException):
    codes = {404: "not_found", 405: "method_not_allowed"}
    return _error(exc.status_code, codes.get(exc.status_code, "http_error"), str(exc.detail))


async def _internal_error(request, exc: Exception):
    log.exception("facegate serve: unexpected error", exc_info=exc)
    return _error(500, "internal", "the service failed on this request; it is still running")


# -- the live page's stream ----------------------------------------------------------------

class LiveSession:
    """One browser's camera: frames through the stream gate (visits, hysteresis, best shot),
    a reply per frame with the faces, the prompt to show and any decision; an accepted
    visit's best shot travels back as JPEG data."""

    def __init__(self, gate, settings: ServiceSettings):
        from .stream import StreamGate

        self.outputs = _BestShotsInMemory()
        self.stream = StreamGate(gate, accept_frames=settings.accept_frames, best_window=settings.best_window,
                                 outputs=self.outputs)
        self.start = time.monotonic()
        self.index = 0

    def process(self, jpeg: bytes) -> dict:
        from .sources import Frame

        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            return {"error": "bad_frame", "detail": "the frame is not a JPEG or PNG image"}
        frame = Frame(self.index, time.monotonic() - self.start, np.ascontiguousarray(bgr[..., ::-1]))
        self.index += 1
        try:
            result = self.stream.process(frame)
        except Exception:
            log.exception("facegate serve: a live frame failed")
            return {"error": "frame_failed", "detail": "this frame could not be assessed"}
        faces = [{"track": v.track, "box": [round(x, 1) for x in v.face.box], "score": round(v.score, 1),
                  "status": v.status.value, "reasons": list(v.reasons), "prompt": v.prompt, "state": v.track_state}
                 for v in result.faces]
        main = max(faces, key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]), default=None)
        if main is None:
            prompt = "look into the camera: no face was found"
        elif main["state"] == "accepted" or main["status"] == "accepted":
            prompt = "hold still" if main["state"] != "accepted" else "done: you may step away"
        else:
            prompt = main["prompt"] or "hold still"
        return {"frame": result.index, "size": [frame.rgb.shape[1], frame.rgb.shape[0]], "faces": faces,
                "prompt": prompt, "events": [e.to_dict() for e in result.events]}

    def finish(self) -> None:
        self.stream.finish()


class _BestShotsInMemory(StreamOutputs):
    """:class:`facegate.stream.StreamOutputs` for the live page: best shots as JPEG data
    in the event itself (nothing written on the server), no folder and no event log."""

    def best_shot(self, frame, face, event) -> dict:
        def jpeg(rgb):
            ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
            return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else None

        return {"image": jpeg(frame.rgb), "face_image": jpeg(face_crop(frame.rgb, face))}


def run(settings: ServiceSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        log_level: str = "info") -> None:
    """Serve until SIGTERM or Ctrl-C: uvicorn stops taking connections and finishes the
    requests in flight; then SIGTERM ends the process with status 0 (a service manager's
    stop is not a failure) and Ctrl-C raises KeyboardInterrupt (the command's 130)."""
    import signal

    import uvicorn

    def stopped(signum, frame):  # uvicorn raises the signal again once it has shut down
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stopped)
    if workers > 1 and settings.threads is None:
        from .runtime import available_cores

        settings = replace(settings, threads=max(1, available_cores() // workers))
    os.environ[SETTINGS_ENV] = settings.to_env()
    if settings.token:
        os.environ[TOKEN_ENV] = settings.token
    uvicorn.run("facegate.service:create_app", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, timeout_graceful_shutdown=max(5, int(settings.request_timeout_s) + 5),
                server_header=False, date_header=False)
