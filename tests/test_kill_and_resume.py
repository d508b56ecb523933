"""Kill a real `facegate filter` process at random moments, re-run it, and check that every
source file is untouched and appears exactly once in the outputs and the manifest."""

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_folder(src: Path, fixtures: Path, count: int) -> None:
    photos = sorted(fixtures.glob("*.jpg"))
    photos = [p for p in photos if p.name != "multiface.jpg"]  # keep each file quick to detect
    for i in range(count):
        folder = src / f"desk{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        if i % 25 == 7:
            (folder / f"capture_{i:03d}.jpg").write_bytes(b"\xff\xd8\xff broken")
        else:
            shutil.copy(photos[i % len(photos)], folder / f"capture_{i:03d}.jpg")


def test_killed_runs_resume_without_loss_or_duplicates(tmp_path, fixtures):
    src, acc, rej = tmp_path / "src", tmp_path / "accepted", tmp_path / "rejected"
    manifest = tmp_path / "manifest.jsonl"
    make_folder(src, fixtures, 240)
    before = {p.relative_to(src).as_posix(): sha(p) for p in src.rglob("*") if p.is_file()}
    cmd = [sys.executable, "-m", "facegate.cli", "filter", str(src), "--accepted", str(acc),
           "--rejected", str(rej), "--manifest", str(manifest), "--views", "none", "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = random.Random(7)
    progress = []
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        # wait until this run has processed a few more files (or a time cap), then kill hard
        start_lines = len(manifest.read_bytes().splitlines()) if manifest.exists() else 0
        target = start_lines + rng.randint(3, 25)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if manifest.exists() and len(manifest.read_bytes().splitlines()) >= target:
                break
            time.sleep(rng.uniform(0.01, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        progress.append(len(manifest.read_bytes().splitlines()) if manifest.exists() else 0)
    assert progress[-1] < len(before), "the kills should have interrupted the run"
    final = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert final.returncode == 1, final.stderr  # the broken files are unreadable

    after = {p.relative_to(src).as_posix(): sha(p) for p in src.rglob("*") if p.is_file()}
    assert after == before  # sources untouched
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    files = [r["file"] for r in records]
    assert sorted(files) == sorted(before)  # every file once, none twice
    outputs = {}
    for root in (acc, rej):
        for p in root.rglob("*"):
            if p.is_file():
                assert not p.name.endswith(".facegate-tmp")
                outputs.setdefault(sha(p), []).append(p)
    assert sum(len(v) for v in outputs.values()) == len(before)  # one copy each, no extras
    for r in records:
        copy = (acc if r["side"] == "accepted" else rej) / r["destination"]
        assert sha(copy) == before[r["file"]]
