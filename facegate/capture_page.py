"""The live capture page of ``facegate serve`` (``GET /``): one self-contained HTML file.

It opens the browser's camera (getUserMedia), sends a JPEG of the current frame over the
WebSocket ``/v1/stream`` and sends the next only when the server has answered the last (so
the page never lags behind the camera: a slow server sees fewer frames, never stale ones),
draws each face's box (green: visit accepted, amber: this frame acceptable, red: not), shows
the prompt of the main face ("step closer to the camera", "more light on your face"), and
when a visit is accepted shows its best shot with a Save link (a download made in the
browser: nothing is stored on the server). No resource comes from the network: the style
and script are inline, the server's Content-Security-Policy forbids anything else.

Browsers give a page the camera only in a secure context: ``http://localhost`` (or
127.0.0.1) or HTTPS; behind a reverse proxy, serve it over HTTPS. A token the service
needs is given to the page as ``/?token=...``; the page passes it to the WebSocket.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>facegate capture</title>
<style>
  :root { font-family: system-ui, sans-serif; color: #1d2327; background: #f4f5f7; }
  body { margin: 0; }
  header { display: flex; gap: 1rem; align-items: baseline; padding: .6rem 1rem; background: #1d2327; color: #fff; }
  header h1 { font-size: 1.1rem; margin: 0; }
  #status { font-size: .9rem; opacity: .85; }
  main { display: flex; flex-wrap: wrap; gap: 1.5rem; padding: 1rem; align-items: flex-start; }
  #stage { position: relative; width: min(640px, 92vw); background: #000; border-radius: 6px; overflow: hidden; }
  #video, #overlay { display: block; width: 100%; height: auto; }
  #overlay { position: absolute; inset: 0; height: 100%; }
  #prompt { font-size: 1.5rem; font-weight: 600; margin: .8rem 0 0; min-height: 2.2rem; max-width: 640px; }
  #result { background: #fff; border-radius: 6px; padding: 1rem; box-shadow: 0 1px 3px #0002; max-width: 420px; }
  #result h2 { margin: 0 0 .6rem; font-size: 1.1rem; color: #2e7d32; }
  #result img { display: block; max-width: 100%; border-radius: 4px; margin-bottom: .5rem; }
  #best-face { max-height: 160px; }
  #result .actions { display: flex; gap: .8rem; align-items: center; margin-top: .6rem; }
  #save, #again { font: inherit; padding: .45rem 1rem; border-radius: 4px; border: 0; cursor: pointer; }
  #save { background: #2e7d32; color: #fff; text-decoration: none; }
  #again { background: #e0e3e7; }
</style>
</head>
<body>
<header><h1>facegate capture</h1><span id="status">starting the camera&hellip;</span></header>
<main>
  <section id="live">
    <div id="stage"><video id="video" autoplay playsinline muted></video><canvas id="overlay"></canvas></div>
    <p id="prompt" aria-live="polite"></p>
  </section>
  <section id="result" hidden>
    <h2>Accepted: best shot</h2>
    <img id="best" alt="the best frame of the accepted visit">
    <img id="best-face" alt="the face in the best frame">
    <div id="best-info"></div>
    <div class="actions"><a id="save" href="#" download="facegate-best.jpg">Save</a>
      <button id="again" type="button">Next person</button></div>
  </section>
</main>
<script>
(() => {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const video = $("video"), overlay = $("overlay"), promptEl = $("prompt"), statusEl = $("status");
  const token = new URLSearchParams(location.search).get("token");
  const grab = document.createElement("canvas");
  let socket = null, waiting = false, frames = 0;

  const say = (text) => { statusEl.textContent = text; };

  function streamUrl() {
    const url = new URL("/v1/stream", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (token) url.searchParams.set("token", token);
    return url.href;
  }

  async function start() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      say("this browser gives no camera to this page: open it over https, or on localhost");
      return;
    }
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia(
        { video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: false });
      await video.play();
    } catch (err) {
      say("no camera: " + err.name + (err.message ? " (" + err.message + ")" : ""));
      return;
    }
    connect();
  }

  function connect() {
    socket = new WebSocket(streamUrl());
    socket.binaryType = "arraybuffer";
    socket.onopen = () => { say("connected: look into the camera"); waiting = false; send(); };
    socket.onmessage = (message) => { waiting = false; handle(JSON.parse(message.data)); send(); };
    socket.onclose = (event) => {
      say(event.code === 4401 ? "the service needs its token: open this page as /?token=..."
                              : "disconnected (" + event.code + "): reconnecting");
      if (event.code !== 4401) setTimeout(connect, 2000);
    };
  }

  function send() {
    if (!socket || socket.readyState !== WebSocket.OPEN || waiting) return;
    if (!video.videoWidth) { setTimeout(send, 100); return; }
    grab.width = video.videoWidth; grab.height = video.videoHeight;
    grab.getContext("2d").drawImage(video, 0, 0);
    waiting = true;
    grab.toBlob((blob) => {
      if (!blob || socket.readyState !== WebSocket.OPEN) { waiting = false; return; }
      blob.arrayBuffer().then((buffer) => socket.send(buffer));
    }, "image/jpeg", 0.85);
  }

  function handle(reply) {
    if (reply.error) { say(reply.detail || reply.error); return; }
    frames += 1;
    document.body.dataset.frames = String(frames);
    draw(reply);
    promptEl.textContent = reply.prompt;
    for (const event of reply.events) if (event.event === "accepted" && event.image) showBest(event);
  }

  function draw(reply) {
    overlay.width = reply.size[0]; overlay.height = reply.size[1];
    const g = overlay.getContext("2d");
    g.clearRect(0, 0, overlay.width, overlay.height);
    g.lineWidth = Math.max(2, overlay.width / 200);
    g.font = Math.round(overlay.width / 32) + "px system-ui, sans-serif";
    for (const face of reply.faces) {
      const [x1, y1, x2, y2] = face.box;
      g.strokeStyle = g.fillStyle = face.state === "accepted" ? "#2e7d32"
                                  : face.status === "accepted" ? "#f9a825" : "#c62828";
      g.strokeRect(x1, y1, x2 - x1, y2 - y1);
      g.fillText(face.score.toFixed(0), x1, Math.max(16, y1 - 6));
    }
  }

  function showBest(event) {
    $("best").src = event.image;
    $("best-face").src = event.face_image;
    $("best-info").textContent = "visit " + event.track + ", frame " + event.frame + ", score " + event.score;
    const save = $("save");
    save.href = event.image;
    save.download = "facegate-visit" + event.track + "-frame" + event.frame + ".jpg";
    $("result").hidden = false;
  }

  $("again").addEventListener("click", () => { $("result").hidden = true; });
  start();
})();
</script>
</body>
</html>
"""
