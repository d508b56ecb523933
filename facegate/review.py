"""A review page for a filter run: one self-contained HTML file built from the manifest.

    facegate report facegate-manifest.jsonl --out review.html

What an operator asks after ``facegate filter``: how many passed, why the others failed,
and whether the threshold is right. The page shows counts per status and reason, the score
histogram with a threshold slider (how many captures a different threshold would accept),
rejected captures grouped by reason with their failing components, accepted captures best
first, and, for one folder per person, each person's best captures and the people left
with none. Thumbnails are embedded (JPEG, data URIs); there is no script, font or image
from anywhere else, so the file opens offline. Grids are paged (``page_size`` thumbnails
at a time) so a run of 10,000 captures stays responsive.
"""

from __future__ import annotations

import base64
import html
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from .errors import ConfigError, ImageError
from .folder import Manifest
from .images import load_image

__all__ = ["load_run", "write_review", "accepted_at", "THUMB_SIDE"]

#: Longest side of a thumbnail, pixels; about 3-5 kB each as JPEG quality 70.
THUMB_SIDE = 112


def load_run(manifest: str | Path) -> list[dict]:
    """The manifest's records, one per source file (the last record of each), in file order."""
    path = Path(manifest)
    if not path.is_file():
        raise ConfigError(f"{path}: no such manifest (facegate filter writes one)")
    records = list(Manifest(path).done.values())
    if not records:
        raise ConfigError(f"{path}: the manifest holds no records")
    return sorted(records, key=lambda r: r.get("file", ""))


def accepted_at(records: list[dict], threshold: float) -> int:
    """How many captures a threshold would accept, all else equal: those with a score at
    or above it and no reason other than ``low_quality``. The page's slider computes the
    same."""
    return sum(1 for r in records if _acceptable_but_for_score(r) and r["score"] >= threshold)


def _acceptable_but_for_score(record: dict) -> bool:
    return (record.get("status") in ("accepted", "rejected") and record.get("score") is not None
            and not [x for x in record.get("reasons", []) if x != "low_quality"])


def _thumbnail(record: dict) -> tuple[str | None, str | None]:
    """A JPEG data URI of the original with the face box drawn, or None and why."""
    source = record.get("source_path")
    if not source:
        return None, "the manifest does not say where the original is"
    try:
        rgb = load_image(source).rgb
    except ImageError as exc:
        return None, exc.cause
    h, w = rgb.shape[:2]
    scale = THUMB_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    thumb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    bgr = np.ascontiguousarray(thumb[..., ::-1])
    for face in record.get("faces") or []:
        primary = record.get("face") is not None and face.get("box") == record["face"].get("box")
        x1, y1, x2, y2 = (int(round(v * scale)) for v in face["box"])
        colour = ((60, 200, 60) if record.get("status") == "accepted" else (40, 40, 230)) if primary else (0, 200, 255)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, 1)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 70])
    if not ok:
        return None, "could not encode a thumbnail"
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode("ascii"), None


def _failing(record: dict) -> list[str]:
    """Each component requirement the capture failed, as 'name value unit (bound)'."""
    components = record.get("components") or {}
    requirements = (record.get("policy") or {}).get("requirements") or {}
    out = []
    for name, bounds in requirements.items():
        c = components.get(name)
        if not c or c.get("value") is None:
            continue
        v = c["value"]
        failed = (("min" in bounds and v < bounds["min"]) or ("max" in bounds and v > bounds["max"])
                  or ("max_abs" in bounds and abs(v) > bounds["max_abs"]))
        if failed:
            bound = ", ".join(f"{'|x| ' if k == 'max_abs' else ''}{'>=' if k == 'min' else '<='} {b:g}"
                              for k, b in bounds.items())
            out.append(f"{name} {v:.3g} {c.get('unit', '')} ({bound})")
    return out


def _person(file: str) -> str | None:
    parts = Path(file).parts
    return parts[0] if len(parts) > 1 else None


def write_review(manifest: str | Path, out: str | Path, *, page_size: int = 60, best_per_person: int = 3,
                 title: str | None = None) -> dict:
    """Write the review page of a filter run; returns the counts it shows.

    Args:
        manifest: the run's JSON-lines manifest.
        out: the HTML file to write (an existing file is replaced only if it is a review
            page this function wrote; anything else raises ``ConfigError``).
        page_size: thumbnails per page of each grid.
        best_per_person: captures shown per person, best first.
    """
    if page_size < 1 or best_per_person < 1:
        raise ConfigError("page_size and best_per_person must be >= 1")
    out = Path(out)
    if out.exists() and _MARKER not in out.read_text(errors="replace")[:2000]:
        raise ConfigError(f"{out} exists and is not a facegate review page; choose another --out")
    records = load_run(manifest)
    items = []
    for k, r in enumerate(records):
        thumb, missing = _thumbnail(r)
        items.append({
            "id": k, "file": r.get("file", ""), "status": r.get("status"), "reasons": r.get("reasons", []),
            "score": r.get("score"), "prompt": r.get("prompt"), "error": r.get("error"),
            "failing": _failing(r), "person": _person(r.get("file", "")), "thumb": thumb, "missing": missing,
            "eligible": _acceptable_but_for_score(r),
        })
    status_counts = Counter(i["status"] for i in items)
    reason_counts = Counter(x for i in items for x in i["reasons"])
    policy = next((r.get("policy") for r in records if r.get("policy")), {}) or {}
    threshold = policy.get("min_score")
    summary = {"captures": len(items), "status": dict(status_counts), "reasons": dict(reason_counts),
               "threshold": threshold, "missing_originals": sum(i["thumb"] is None for i in items),
               "people": len({i["person"] for i in items if i["person"]})}
    data = {"items": items, "summary": summary, "pageSize": page_size, "bestPerPerson": best_per_person,
            "profile": policy.get("profile")}
    page = _TEMPLATE.replace("__TITLE__", html.escape(title or f"facegate review: {Path(manifest).name}"))
    page = page.replace("__DATA__", json.dumps(data, ensure_ascii=True).replace("</", "<\\/"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return summary


_MARKER = "<!-- facegate review page -->"

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
""" + _MARKER + """
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:12px 20px}
header h1{font-size:18px;margin:0}
main{padding:12px 20px;max-width:1400px}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;margin:12px 0;padding:10px 14px}
h2{font-size:16px;margin:4px 0 8px}
h3{font-size:14px;margin:12px 0 6px}
table{border-collapse:collapse}
td,th{padding:2px 10px 2px 0;text-align:left}
.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:8px}
.card{width:132px;font-size:11px;background:#fafbfc;border:1px solid #e3e6ea;border-radius:4px;padding:4px}
.card img,.card .noimg{width:124px;height:124px;object-fit:contain;background:#222;display:block}
.card .noimg{color:#f5c2c7;font-size:11px;display:flex;align-items:center;justify-content:center;text-align:center;padding:4px;box-sizing:border-box;overflow:hidden;overflow-wrap:anywhere}
.card div{overflow-wrap:anywhere}
.card .name{white-space:nowrap;overflow:hidden}
.fail{color:#b02a37}
.pager{margin:6px 0;font-size:12px}
.pager button{margin-right:6px}
#hist{width:100%;max-width:820px;height:170px;display:block}
.muted{color:#5c6670}
</style></head>
<body>
<header><h1>__TITLE__</h1><div id="subtitle" class="muted" style="color:#cfd8e3"></div></header>
<main>
<section id="counts"><h2>Counts</h2><div id="count-tables"></div></section>
<section id="threshold"><h2>Score and threshold</h2>
<svg id="hist" viewBox="0 0 820 170" role="img" aria-label="score histogram"></svg>
<label>threshold <input id="slider" type="range" min="0" max="100" step="0.1" style="width:420px"></label>
<span id="threshold-value" class="num"></span>:
<b><span id="accepted-at-threshold"></span></b> captures accepted
(<span id="accepted-change"></span> against the run's threshold <span id="run-threshold"></span>);
only the score threshold moves, every other requirement stays.
</section>
<section id="rejected"><h2>Rejected, by reason</h2><p class="muted">A capture with several reasons appears under each.</p><div id="by-reason"></div></section>
<section id="accepted"><h2>Accepted, best first</h2><div id="accepted-grid"></div></section>
<section id="others"><h2>No face and unreadable</h2><div id="other-grid"></div></section>
<section id="people" hidden><h2>People</h2><div id="people-body"></div></section>
</main>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const S = D.summary, items = D.items;
const esc = s => String(s == null ? "" : s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;","\\"":"&quot;"}[c]));
document.getElementById("subtitle").textContent =
  `${S.captures} captures` + (D.profile ? `, profile ${D.profile}` : "") +
  (S.threshold != null ? `, threshold ${S.threshold}` : "") +
  (S.missing_originals ? `, ${S.missing_originals} originals missing or unreadable` : "");

function table(rows, id, head) {
  return `<table id="${id}"><tr><th>${head}</th><th class="num">captures</th></tr>` +
    rows.map(([k, v]) => `<tr data-key="${esc(k)}"><td>${esc(k)}</td><td class="num">${v}</td></tr>`).join("") + "</table>";
}
const byCount = o => Object.entries(o).sort((a, b) => b[1] - a[1]);
document.getElementById("count-tables").innerHTML =
  `<div style="display:flex;gap:40px;flex-wrap:wrap"><div><h3>Status</h3>${table(byCount(S.status), "status-counts", "status")}</div>` +
  `<div><h3>Reason</h3>${table(byCount(S.reasons), "reason-counts", "reason")}</div></div>`;

// A long name keeps its start and its end (the person and the file number), cut in the middle.
function shortName(name) {
  return name.length <= 22 ? name : name.slice(0, 7) + "\u2026" + name.slice(-14);
}
function card(it) {
  const img = it.thumb ? `<img loading="lazy" alt="" src="${it.thumb}">`
                       : `<div class="noimg">original ${esc(it.missing || "missing")}</div>`;
  const lines = [`<div class="name" title="${esc(it.file)}">${esc(shortName(it.file))}</div>`,
    `<div>${esc(it.status)}${it.score != null ? " · " + it.score.toFixed(1) : ""}</div>`];
  if (it.reasons.length) lines.push(`<div class="fail">${esc(it.reasons.join(", "))}</div>`);
  for (const f of it.failing) lines.push(`<div class="fail">${esc(f)}</div>`);
  if (it.prompt) lines.push(`<div class="muted">${esc(it.prompt)}</div>`);
  if (it.error) lines.push(`<div class="fail">${esc(it.error)}</div>`);
  return `<div class="card" data-id="${it.id}" data-status="${esc(it.status)}">${img}${lines.join("")}</div>`;
}
function pagedGrid(el, list, label) {
  let page = 0;
  const pages = Math.max(1, Math.ceil(list.length / D.pageSize));
  function draw() {
    const start = page * D.pageSize, shown = list.slice(start, start + D.pageSize);
    const pager = pages > 1 ? `<div class="pager"><button data-go="-1" ${page ? "" : "disabled"}>previous</button>` +
      `<button data-go="1" ${page < pages - 1 ? "" : "disabled"}>next</button> page ${page + 1} of ${pages}` +
      ` (${list.length} ${label})</div>` : `<div class="pager">${list.length} ${label}</div>`;
    el.innerHTML = pager + `<div class="grid">${shown.map(card).join("")}</div>`;
    el.querySelectorAll("button[data-go]").forEach(b => b.onclick = () => { page += +b.dataset.go; draw(); });
  }
  draw();
}
const rejectedByReason = {};
for (const it of items) for (const r of it.reasons) (rejectedByReason[r] = rejectedByReason[r] || []).push(it);
const reasonsEl = document.getElementById("by-reason");
for (const [reason, list] of Object.entries(rejectedByReason).sort((a, b) => b[1].length - a[1].length)) {
  const box = document.createElement("div");
  box.className = "reason"; box.dataset.reason = reason;
  box.innerHTML = `<h3>${esc(reason)}</h3><div class="body"></div>`;
  reasonsEl.appendChild(box);
  pagedGrid(box.querySelector(".body"), list.slice().sort((a, b) => (a.score ?? -1) - (b.score ?? -1)), "captures");
}
const byScore = (a, b) => (b.score ?? -1) - (a.score ?? -1);
pagedGrid(document.getElementById("accepted-grid"), items.filter(i => i.status === "accepted").sort(byScore), "captures");
pagedGrid(document.getElementById("other-grid"), items.filter(i => i.status === "no_face" || i.status === "unreadable"), "captures");

const people = {};
for (const it of items) if (it.person) (people[it.person] = people[it.person] || []).push(it);
if (Object.keys(people).length) {
  document.getElementById("people").hidden = false;
  const none = Object.keys(people).filter(p => !people[p].some(i => i.status === "accepted")).sort();
  const body = document.getElementById("people-body");
  body.innerHTML = `<h3>People with no accepted capture: <span id="people-without">${none.length}</span> of ${Object.keys(people).length}</h3>` +
    `<div id="people-none">${none.map(esc).join(", ") || "none"}</div><h3>Best ${D.bestPerPerson} accepted per person</h3><div id="people-best"></div>`;
  const best = [];
  for (const p of Object.keys(people).sort()) best.push(...people[p].filter(i => i.status === "accepted").sort(byScore).slice(0, D.bestPerPerson));
  pagedGrid(document.getElementById("people-best"), best, "captures");
}

// histogram of scores (2-point bins) with the threshold marked; the slider recounts
const scored = items.filter(i => i.score != null), bins = new Array(50).fill(0);
for (const it of scored) bins[Math.min(49, Math.floor(it.score / 2))]++;
const svg = document.getElementById("hist"), tallest = Math.max(1, ...bins);
let bars = "";
bins.forEach((n, k) => {
  const h = 140 * n / tallest;
  bars += `<rect x="${10 + k * 16}" y="${150 - h}" width="14" height="${h}" fill="#6c8ebf"><title>${k * 2}-${k * 2 + 2}: ${n}</title></rect>`;
});
for (let t = 0; t <= 100; t += 20) bars += `<text x="${10 + t * 8}" y="166" font-size="10" text-anchor="middle">${t}</text>`;
svg.innerHTML = bars + `<line id="threshold-line" y1="4" y2="150" stroke="#b02a37" stroke-width="2"></line>`;
const slider = document.getElementById("slider");
const runThreshold = S.threshold == null ? 50 : S.threshold;
const eligible = items.filter(i => i.eligible);
const acceptedAt = t => eligible.filter(i => i.score >= t).length;
const runAccepted = acceptedAt(runThreshold);
document.getElementById("run-threshold").textContent = runThreshold;
function update() {
  const t = +slider.value, n = acceptedAt(t), line = document.getElementById("threshold-line");
  line.setAttribute("x1", 10 + t * 8); line.setAttribute("x2", 10 + t * 8);
  document.getElementById("threshold-value").textContent = t.toFixed(1);
  document.getElementById("accepted-at-threshold").textContent = n;
  const d = n - runAccepted;
  document.getElementById("accepted-change").textContent = (d > 0 ? "+" : "") + d;
}
slider.value = runThreshold;
slider.addEventListener("input", update);
update();
</script>
</body></html>
"""
