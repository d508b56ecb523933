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
