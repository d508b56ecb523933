"""One Gate shared by concurrent callers gives the same results as a serial run."""

from concurrent.futures import ThreadPoolExecutor

import pytest


def test_concurrent_callers_match_serial(gate, fixtures):
    paths = sorted(fixtures.glob("*.jpg")) * 3
    serial = [gate.assess(p) for p in paths]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(gate.assess, paths))
    for a, b in zip(serial, concurrent):
        assert a.status == b.status and a.reasons == b.reasons and len(a.faces) == len(b.faces)
        assert (a.score is None and b.score is None) or a.score == pytest.approx(b.score, abs=1e-3)


def test_threads_are_chosen_once_per_process_not_by_each_gate(fixtures):
    """The first gate of a process sizes OpenCV's and torch's pools; a second gate with
    another number sizes only its own sessions (each gate's ONNX sessions keep their own
    intra-op count), and the first gate's results are unchanged by it. In a fresh process, so
    no earlier test has chosen the budget."""
    import subprocess
    import sys

    code = (
        "import cv2, torch\n"
        "from facegate import Gate\n"
        "from facegate.runtime import process_threads\n"
        f"photo = {str(fixtures / 'tony_blair_1.jpg')!r}\n"
        "one = Gate(threads=1, backend='onnx')\n"
        "before = one.assess(photo).score\n"
        "pools = (cv2.getNumThreads(), torch.get_num_threads())\n"
        "two = Gate(threads=2)\n"
        "assert (cv2.getNumThreads(), torch.get_num_threads()) == pools == (1, 1), pools\n"
        "sessions = lambda g: {s.get_session_options().intra_op_num_threads for s in g.scorer._sessions}\n"
        "assert sessions(one) == {1} and sessions(two) == {2}, (sessions(one), sessions(two))\n"
        "assert one.assess(photo).score == before\n"
        "assert process_threads() == 1\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
