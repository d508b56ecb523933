"""The mistakes people make with the `facegate` command and the files they have (issue 34),
each as a case that sets up a folder, runs one command and says what the user must see.

`tests/test_field_reliability.py` runs every case (exit code, message, no Python traceback);
`python -m tests.bad_inputs --write docs/bad_inputs.md` writes the table of what a user sees
from the same cases, so the document cannot drift from the behaviour.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ROOT = FIXTURES.parents[1]
SHARED = ROOT.parent / "shared"
RECOGNIZER = SHARED / "models" / "mobilefacenet_casia.ckpt"


@dataclass
class Run:
    """What one command did."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def facegate(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300) -> Run:
    done = subprocess.run([sys.executable, "-m", "facegate.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return Run(done.returncode, done.stdout, done.stderr)


@dataclass
class Case:
    """``setup(tmp)`` prepares ``tmp`` (earlier runs included) and returns the command's
    arguments; the case passes when the command exits ``code`` and its output holds every
    ``says``. ``needs`` names what must exist (the shared recognizer)."""

    name: str
    what: str
    setup: Callable[[Path], list]
    code: int
    says: tuple[str, ...]
    cwd: str = "."
    env: dict = field(default_factory=dict)
    needs: Path | None = None
    check: Callable[[Path, Run], None] | None = None
    signal_after_records: int | None = None  # send SIGTERM once the manifest has this many records


def photos(tmp: Path, n: int = 5) -> Path:
    """A source folder with the fixture photos (and, given ``n`` > 5, LFW photos of shared)."""
    src = tmp / "src"
    src.mkdir(parents=True, exist_ok=True)
    for p in sorted(FIXTURES.glob("*.jpg")):
        (src / p.name).write_bytes(p.read_bytes())
    if n > 5:
        lfw = sorted((SHARED / "data" / "lfw-deepfunneled").glob("*/*_0001.jpg"))
        for p in lfw[:: max(1, len(lfw) // (n - 5))][: n - 5]:
            (src / p.name).write_bytes(p.read_bytes())
    return src


def filtered(tmp: Path, *extra) -> list:
    return ["filter", "src", "--accepted", "out/accepted", "--rejected", "out/rejected", *extra]


def manifest_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def outputs_agree_with_manifest(tmp: Path, run: Run) -> None:
    """The output folders hold exactly what the manifest's live records say, nothing more."""
    records = {}
    for record in manifest_records(tmp / "out" / "facegate-manifest.jsonl"):
        if record.get("removed"):
            records.pop(record["source_path"], None)
        else:
            records[record["source_path"]] = record
    expected = {f"{r['side']}/{r['destination']}" for r in records.values() if r.get("destination")}
    present = {p.relative_to(tmp / "out").as_posix() for p in (tmp / "out").rglob("*")
               if (p.is_file() or p.is_symlink()) and p.parent != tmp / "out"}
    assert present == expected, (present ^ expected)


def loop_recorded(tmp: Path, run: Run) -> None:
    errors = {r["file"]: r["error"] for r in manifest_records(tmp / "out" / "facegate-manifest.jsonl")}
    assert errors["loop"] == "symbolic link loop (-> loop)"
    assert errors["dangling.jpg"].startswith("dangling symbolic link")


def no_links_left(tmp: Path, run: Run) -> None:
    outputs_agree_with_manifest(tmp, run)
    assert not any(p.is_symlink() for p in (tmp / "out").rglob("*")), "links left after a copying run"


def notes_untouched(tmp: Path, run: Run) -> None:
    assert (tmp / "notes.txt").read_text() == "call the photographer on Tuesday\n"


# -- setups --------------------------------------------------------------------------------

def link_loop(tmp):
    src = photos(tmp)
    os.symlink("loop", src / "loop")
    os.symlink("gone.jpg", src / "dangling.jpg")
    return filtered(tmp)


def changed_source(tmp):
    src = photos(tmp)
    assert facegate(*filtered(tmp), cwd=tmp).code == 0
    blurred = Image.open(src / "tony_blair_1.jpg").filter(ImageFilter.GaussianBlur(6)).point(lambda v: v // 5)
    blurred.save(src / "tony_blair_1.jpg", quality=90)
    return filtered(tmp)


def deleted_source(tmp):
    src = photos(tmp)
    assert facegate(*filtered(tmp), cwd=tmp).code == 0
    (src / "colin_powell_2.jpg").unlink()
    return filtered(tmp)


def link_then_copies(tmp):
    photos(tmp)
    assert facegate(*filtered(tmp, "--link"), cwd=tmp).code == 0
    return filtered(tmp)


def copies_then_links(tmp):
    photos(tmp)
    assert facegate(*filtered(tmp), cwd=tmp).code == 0
    return filtered(tmp, "--link")


def text_manifest(tmp):
    photos(tmp)
    (tmp / "notes.txt").write_text("call the photographer on Tuesday\n")
    return filtered(tmp, "--manifest", "notes.txt")


def other_jsonl_manifest(tmp):
    photos(tmp)
    (tmp / "events.jsonl").write_text('{"event": "door opened", "at": "09:00"}\n')
    return filtered(tmp, "--manifest", "events.jsonl")


def manifest_in_use(tmp):
    """Another run holds the manifest: a process that locks it as a filter run does."""
    photos(tmp)
    (tmp / "out").mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from facegate.folder import Manifest; m = Manifest(sys.argv[1]); m.lock(); "
        "print('locked', flush=True); time.sleep(60)"), str(tmp / "out" / "facegate-manifest.jsonl")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "locked"
    (tmp / "holder.pid").write_text(str(holder.pid))
    return filtered(tmp)


def release_holder(tmp, run):
    pid = int((tmp / "holder.pid").read_text())
    assert f"pid {pid}" in run.err
    os.kill(pid, signal.SIGKILL)


def many_photos(tmp):
    photos(tmp, 40)
    return filtered(tmp)


def resume_after_sigterm(tmp, run):
    again = facegate(*filtered(tmp), cwd=tmp)
    assert again.code == 0, again.err
    records = manifest_records(tmp / "out" / "facegate-manifest.jsonl")
    assert len({r["file"] for r in records}) == len(records) == len(list((tmp / "src").iterdir()))


def phone_photo(tmp):
    """A 200-megapixel JPEG (16,320 x 12,240, the largest phone cameras) of a face."""
    face = np.asarray(Image.open(FIXTURES / "colin_powell_1.jpg").convert("RGB"))
    height, width = 12240, 16320
    canvas = np.full((height, width, 3), 120, np.uint8)
    big = np.asarray(Image.fromarray(face).resize((height, height), Image.BILINEAR))
    canvas[:, (width - height) // 2:(width - height) // 2 + height] = big
    Image.fromarray(canvas).save(tmp / "phone_200mp.jpg", quality=80)
    return ["score", "phone_200mp.jpg"]


def bomb_under_a_lower_limit(tmp):
    Image.new("RGB", (1600, 1200), (128, 128, 128)).save(tmp / "two_megapixels.png")
    return ["score", "two_megapixels.png", "--max-pixels", "1000000"]


def policy(tmp, body):
    (tmp / "policy.json").write_text(json.dumps({"facegate_policy": 1, **body}))
    return ["score", str(FIXTURES / "tony_blair_1.jpg"), "--policy", "policy.json"]


def recognizer_text(tmp):
    people = tmp / "people"
    for person, names in (("colin", ["colin_powell_1.jpg", "colin_powell_2.jpg"]), ("tony", ["tony_blair_1.jpg"])):
        (people / person).mkdir(parents=True)
        for name in names:
            (people / person / name).write_bytes((FIXTURES / name).read_bytes())
    (tmp / "notes.txt").write_text("not a network\n")
    return ["evaluate", "people", "--recognizer", "notes.txt"]


def recognizer_module(tmp):
    recognizer_text(tmp)
    return ["evaluate", "people", "--recognizer", "os:path"]


def evaluate_tiny(tmp):
    recognizer_text(tmp)
    return ["evaluate", "people", "--recognizer", str(RECOGNIZER)]


def calibrate_fnmr_tiny(tmp):
    recognizer_text(tmp)
    return ["calibrate", "people", "--target-fnmr", "0.05", "--recognizer", str(RECOGNIZER)]


def accepted_under_a_file(tmp):
    photos(tmp)
    (tmp / "afile").write_text("a file, not a folder\n")
    return ["filter", "src", "--accepted", "afile/acc", "--rejected", "out/rejected"]


def accepted_here(tmp):
    photos(tmp)
    (tmp / "here").mkdir()
    return ["filter", "../src", "--accepted", ".", "--rejected", "../rejected"]


def manifest_here(tmp, run):
    assert f"manifest: {tmp / 'here' / 'facegate-manifest.jsonl'}" in run.err
    assert (tmp / "here" / "facegate-manifest.jsonl").is_file()


def rerun_with(*options):
    def setup(tmp):
        photos(tmp)
        assert facegate(*filtered(tmp), cwd=tmp).code == 0
        return filtered(tmp, *options)

    return setup


def empty_folder(command):
    def setup(tmp):
        (tmp / "empty").mkdir()
        return [command, "empty"] + (["--accepted", "out/a", "--rejected", "out/r"] if command == "filter" else [])

    return setup


def missing_folder(command):
    def setup(tmp):
        return [command, "nonexistent"] + (["--accepted", "out/a", "--rejected", "out/r"] if command == "filter" else [])

    return setup


def bad_video(tmp):
    (tmp / "clip.mp4").write_text("this is not a video\n")
    return ["stream", "--source", "clip.mp4"]


def nothing_written_here(tmp, run):
    assert not (tmp / "facegate-stream").exists(), "a failed open writes no events folder"


def stream_show(tmp):
    return ["stream", "--source", str(FIXTURES), "--show"]


def one_photo(tmp):
    src = photos(tmp)
    return ["filter", str(src / "tony_blair_1.jpg"), "--accepted", "out/accepted", "--rejected", "out/rejected"]


CASES: list[Case] = [
    Case("link_loop", "a symbolic link loop (`src/loop -> loop`) and a dangling link in the source", link_loop, 1,
         ("2 unreadable", "manifest:"), check=loop_recorded),
    Case("changed_source", "an accepted source changed into a dark, blurred photo, filtered again", changed_source, 0,
         ("moved accepted -> rejected",), check=outputs_agree_with_manifest),
    Case("deleted_source", "a source deleted, filtered again", deleted_source, 0, ("1 removed (source gone)",),
         check=outputs_agree_with_manifest),
    Case("link_then_copies", "`--link` run, then the same command without it", link_then_copies, 0,
         ("made again as copies",), check=no_links_left),
    Case("copies_then_links", "a copying run, then the same command with `--link`", copies_then_links, 0,
         ("made again as links",), check=outputs_agree_with_manifest),
    Case("text_manifest", "`--manifest notes.txt`, a text file", text_manifest, 2,
         ("not a facegate manifest (line 1 is not JSON)", "left as it is"), check=notes_untouched),
    Case("other_jsonl_manifest", "`--manifest events.jsonl`, JSON lines of something else", other_jsonl_manifest, 2,
         ("not a facegate manifest (line 1 is not a filter record)",)),
    Case("manifest_in_use", "a second filter on a manifest another run is writing", manifest_in_use, 2,
         ("is in use by another facegate filter (pid",), check=release_holder),
    Case("sigterm", "SIGTERM (a service manager's stop) during `filter`", many_photos, 143,
         ("terminated:", "recorded in", "run the same command again to resume"), signal_after_records=1,
         needs=SHARED / "data" / "lfw-deepfunneled", check=resume_after_sigterm),
    Case("phone_200mp", "a 200-megapixel phone JPEG (16320x12240)", phone_photo, 0, ("accepted",)),
    Case("pixel_limit", "`--max-pixels 1000000` and a 1600x1200 photo", bomb_under_a_lower_limit, 1,
         ("over the 1,000,000 pixel limit", "--max-pixels"),),
    Case("policy_list", 'a policy file with `"requirements": [1, 2]`', lambda tmp: policy(tmp, {"requirements": [1, 2]}),
         2, ("requirements must be an object of components and their bounds", "policy.json")),
    Case("policy_min_above_max", 'a policy file with `{"yaw": {"min": 30, "max": 10}}`',
         lambda tmp: policy(tmp, {"requirements": {"yaw": {"min": 30, "max": 10}}}), 2,
         ("requirement on yaw: min 30 is above max 10, so no face could meet it",)),
    Case("policy_min_above_max_abs", 'a policy file with `{"yaw": {"min": 30, "max_abs": 20}}`',
         lambda tmp: policy(tmp, {"requirements": {"yaw": {"min": 30, "max_abs": 20}}}), 2,
         ("requirement on yaw: min 30 is above max_abs 20",)),
    Case("recognizer_text", "`evaluate --recognizer notes.txt`", recognizer_text, 1,
         ("notes.txt: not a recognizer checkpoint",)),
    Case("recognizer_module", "`evaluate --recognizer os:path` (a module, not a factory)", recognizer_module, 1,
         ("not callable", "module:factory must name a function or class")),
    Case("evaluate_tiny", "`evaluate` on 1 genuine comparison", evaluate_tiny, 0,
         ("1 genuine comparison", "95% interval", "warning:"), needs=RECOGNIZER),
    Case("calibrate_fnmr_tiny", "`calibrate --target-fnmr 0.05` on 1 genuine comparison", calibrate_fnmr_tiny, 2,
         ("too few to show an FNMR of 0.05", "at least 60"), needs=RECOGNIZER),
    Case("calibrate_one_face", "`calibrate --reject-rate 0.1` on one face",
         lambda tmp: ["calibrate", str(FIXTURES / "tony_blair_1.jpg"), "--reject-rate", "0.1"], 2,
         ("too few for a reject rate of 0.1", "at least 50 scored faces", "--allow-small-sample")),
    Case("accepted_proc", "`--accepted /proc/nope`", lambda tmp: (photos(tmp), filtered(tmp)[:2] + [
        "--accepted", "/proc/nope", "--rejected", "out/rejected"])[1], 2, ("--accepted /proc/nope: cannot create",)),
    Case("accepted_under_file", "`--accepted afile/acc` where `afile` is a file", accepted_under_a_file, 2,
         ("afile is a file",)),
    Case("accepted_here", "`--accepted .` (the current folder)", accepted_here, 0, ("manifest:",), cwd="here",
         check=manifest_here),
    Case("rerun_detector", "the same filter again with `--detector yunet`", rerun_with("--detector", "yunet"), 2,
         ("detector mtcnn -> yunet (and with it the policy's min_face_probability 0.9 -> 0.8)",)),
    Case("rerun_views", "the same filter again with `--views none`", rerun_with("--views", "none"), 2,
         ("views identity,hflip -> identity",)),
    Case("rerun_profile", "the same filter again with `--profile enrollment`", rerun_with("--profile", "enrollment"), 2,
         ("profile verification -> enrollment (and with it the policy's min_eye_distance, requirements on",)),
    Case("score_missing", "`score nonexistent`", missing_folder("score"), 2, ("does not exist",)),
    Case("filter_missing", "`filter nonexistent ...`", missing_folder("filter"), 2, ("does not exist",)),
    Case("score_empty", "`score empty/` (a folder with no images)", empty_folder("score"), 0, ("0 files",)),
    Case("filter_empty", "`filter empty/ ...`", empty_folder("filter"), 0, ("0 files",)),
    Case("bad_video", "`stream --source clip.mp4`, a text file named .mp4", bad_video, 1,
         ("cannot open video file", "no events written"), check=nothing_written_here),
    Case("show_without_x", "`stream --show` with DISPLAY set and no X server", stream_show, 2,
         ("no X server answers at DISPLAY=:97",), env={"DISPLAY": ":97"}),
    Case("one_file", "`filter` of one photo", one_photo, 0, ("1 file: 1 accepted",)),
]

#: What must never appear in a command's output: a Python traceback, or the chatter of the
#: libraries underneath (FFmpeg, OpenCV's logger, Pillow's or torch's advice).
FORBIDDEN = ("Traceback (most recent call last)", "moov atom", "[ERROR:", "weights_only=False", "RuntimeError",
             "KeyError", "AttributeError", "TypeError")


def run_case(case: Case, tmp: Path) -> Run:
    """Set up, run the command (signalled when the case says so), check its own extras."""
    args = case.setup(tmp)
    cwd = tmp / case.cwd
    if case.signal_after_records is None:
        run = facegate(*args, cwd=cwd, env=case.env)
    else:
        process = subprocess.Popen([sys.executable, "-m", "facegate.cli", *map(str, args)], cwd=cwd, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   env={**os.environ, **case.env})
        manifest = tmp / "out" / "facegate-manifest.jsonl"
        deadline = time.monotonic() + 120
        while not (manifest.exists() and len(manifest.read_text().splitlines()) >= case.signal_after_records):
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before the signal"
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
        run = Run(process.returncode, out, err)
    return run


def what_the_user_sees(run: Run) -> str:
    """The lines a user reads first (usage boilerplate left out), for the table."""
    lines = [line for line in run.err.splitlines() + run.out.splitlines()
             if line.strip() and not line.startswith(("Usage:", "Try '"))]
    return " / ".join(lines[:2])
