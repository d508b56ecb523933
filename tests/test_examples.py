"""The examples run as a user would run them."""

import subprocess
import sys
from pathlib import Path

from tests.conftest import SHARED, shared_available

ROOT = Path(__file__).resolve().parents[1]


def test_gate_before_recognition_example(fixtures):
    cmd = [sys.executable, str(ROOT / "examples" / "gate_before_recognition.py"), "--threshold", "0"]
    cmd += [str(p) for p in sorted(fixtures.glob("*.jpg"))]
    if shared_available():
        cmd += ["--recognizer", str(SHARED / "models" / "mobilefacenet_casia.ckpt")]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "refused" in run.stdout and "another sizeable face is in view" in run.stdout  # the group photo
    assert "accepted" in run.stdout
    if shared_available():
        # two photos of the same person are more alike than photos of different people
        sims = {}
        for line in run.stdout.splitlines():
            if line.startswith("  ") and line.strip()[0] in "+-":
                value, a, b = line.split()
                sims[(Path(a).stem, Path(b).stem)] = float(value)
        same = sims[("colin_powell_1", "colin_powell_2")]
        assert all(same > v for k, v in sims.items() if k != ("colin_powell_1", "colin_powell_2"))


def test_calibrate_for_fnmr_example(enrollment, shared, tmp_path):
    policy = tmp_path / "policy.json"
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "calibrate_for_fnmr.py"), str(enrollment),
                          "--recognizer", str(shared / "models" / "mobilefacenet_casia.ckpt"), "--target-fnmr", "0.0",
                          "--fmr", "0.05", "--policy-out", str(policy)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "calibrated on" in run.stdout and "held out" in run.stdout and "target 0.0000 +-" in run.stdout
    from facegate import Policy

    chosen = Policy.load(policy)
    assert chosen.min_score is not None and chosen.score_scale == "fg-utility-v2"
