"""Issue 34: what new users got wrong, and what it did to their folders. Every case of
`tests/field_cases.py` (the table in docs/bad_inputs.md) runs as a user runs it: the exit
code, the message, and never a Python traceback or a library's chatter; the cases with a
lasting effect check the folders too. Below them, the behaviours a single command cannot
show (two runs at once, the table's columns, the pixel limit in the API)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.field_cases import CASES, FORBIDDEN, SHARED, facegate, manifest_records, photos, run_case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_user_mistake_is_told_plainly(case, tmp_path):
    if case.needs is not None and not case.needs.exists():
        pytest.skip(f"needs {case.needs}")
    run = run_case(case, tmp_path)
    for forbidden in FORBIDDEN:
        assert forbidden not in run.text, (forbidden, run.text[-2000:])
    assert run.code == case.code, run.text[-2000:]
    for words in case.says:
        assert words in run.text, (words, run.text[-2000:])
    if case.check is not None:
        case.check(tmp_path, run)


@pytest.mark.skipif(not (SHARED / "data" / "lfw-deepfunneled").is_dir(), reason=f"needs LFW photos in {SHARED}")
def test_two_filters_on_one_manifest_record_each_file_once(tmp_path):
    """Started together on one manifest: one runs, the other is refused naming it, and
    every file is recorded once (on main this wrote 472 records for 236 files)."""
    photos(tmp_path, 40)
    args = [sys.executable, "-m", "facegate.cli", "filter", "src", "--accepted", "out/accepted", "--rejected",
            "out/rejected"]
    first = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = tmp_path / "out" / "facegate-manifest.jsonl"
    deadline = time.monotonic() + 120
    while not (manifest.exists() and manifest.read_text().strip()):
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    second = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 2 and f"pid {first.pid}" in second.stderr, second.stderr
    first.communicate(timeout=300)
    assert first.returncode == 0
    records = manifest_records(manifest)
    assert len(records) == len({r["file"] for r in records}) == 40
    third = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and "(40 already done)" in third.stderr  # the lock is released at the end


def test_table_columns_stay_straight_whatever_the_reasons_and_errors(tmp_path):
    """Long prompts, error text and long names: every row's last column starts where the
    header's does."""
    src = photos(tmp_path)
    (src / "a_rather_long_file_name_from_the_enrollment_desk_0001.jpg").write_bytes(b"not a photo at all")
    run = facegate("score", "src", cwd=tmp_path)
    lines = run.out.splitlines()
    start = lines[0].index("reasons: prompt")
    for line in lines[1:]:
        assert line[start - 2:start] == "  " and line[start] != " " or len(line) <= start, line
    assert any("multiple_faces: only one person" in line for line in lines)


def test_the_pixel_limit_is_the_callers_to_set(tmp_path):
    from PIL import Image

    from facegate import Gate

    Image.new("RGB", (1600, 1200), (128, 128, 128)).save(tmp_path / "two_megapixels.png")
    assert Gate(threads=2).assess(tmp_path / "two_megapixels.png").status.value == "no_face"
    limited = Gate(threads=2, max_pixels=1_000_000).assess(tmp_path / "two_megapixels.png")
    assert limited.status.value == "unreadable" and "1,000,000 pixel limit" in limited.error
    from facegate.errors import ConfigError

    with pytest.raises(ConfigError, match="max_pixels"):
        Gate(threads=2, max_pixels=0)


def test_a_half_written_last_line_is_tolerated_but_a_foreign_line_is_not(tmp_path):
    from facegate.errors import ConfigError
    from facegate.folder import Manifest

    good = {"file": "a.jpg", "source_path": "/x/a.jpg", "status": "accepted"}
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(good) + "\n" + '{"file": "b.jpg", "sour')
    assert set(Manifest(path).done) == {"/x/a.jpg"}
    path.write_text("not json\n" + json.dumps(good) + "\n")
    with pytest.raises(ConfigError, match="line 1 is not JSON"):
        Manifest(path)
