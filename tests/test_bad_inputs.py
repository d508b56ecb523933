"""Every hostile input ends in the manifest with the documented status; nothing crashes."""

import json
import os
import subprocess
import sys

from tests.bad_inputs import make_bad_inputs


def test_every_bad_input_gets_its_status(tmp_path):
    src = tmp_path / "src"
    cases = make_bad_inputs(src)
    manifest = tmp_path / "manifest.jsonl"
    run = subprocess.run(
        [sys.executable, "-m", "facegate.cli", "filter", str(src), "--accepted", str(tmp_path / "a"),
         "--rejected", str(tmp_path / "r"), "--manifest", str(manifest), "--views", "none"],
        capture_output=True, text=True, timeout=600,
    )
    os.chmod(src / "no_permission.jpg", 0o600)
    assert run.returncode == 1, run.stderr  # some inputs unreadable
    assert "Traceback" not in run.stderr and "Traceback" not in run.stdout
    records = {r["file"]: r for r in map(json.loads, manifest.read_text().splitlines())}
    for name, what, expected in cases:
        if expected == "not followed":
            assert not any(f.startswith(name) for f in records), what
            continue
        assert name in records, what
        rec = records[name]
        if expected == "accepted":
            # a real face that decoded: it is scored (the decision itself is the policy's)
            assert rec["status"] in ("accepted", "rejected") and rec["score"] is not None, (what, rec)
        else:
            assert rec["status"] == expected, (what, rec)
        if rec["status"] == "unreadable":
            assert rec["error"], what
    assert "first frame" in " ".join(records["animated.gif"]["notes"])
    assert "EXIF orientation 8" in " ".join(records["exif_rotated.jpg"]["notes"])
    assert "decompression bomb" in records["bomb.png"]["error"]
    assert set(os.listdir(src)) >= {"zero_bytes.jpg", "bomb.png"}  # sources left in place
