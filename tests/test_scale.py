"""The fg-utility-v2 scale: isotonic knots follow the observed chance and read back true."""

import numpy as np

from facegate.spec import ScorerSpec
from train.scale import isotonic_knots, reliability_table


def test_knots_map_raw_output_to_the_observed_chance():
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, 4000)
    chance = 1 / (1 + np.exp(-(raw - 0.6) * 12))  # what the networks' output really predicts
    success = (rng.uniform(size=raw.size) < chance).astype(float)
    knots = isotonic_knots(raw, success, min_weight=100)
    xs, ys = np.array(knots).T
    assert np.all(np.diff(xs) > 0) and np.all(np.diff(ys) >= 0)  # a monotone map
    spec = ScorerSpec(score_calibration=knots)
    scores = spec.to_score(raw)
    assert np.abs(scores / 100 - chance).mean() < 0.05  # near the true chance everywhere
    for row in reliability_table(scores, success):
        if row["captures"] >= 200:  # bins with enough captures read true within noise
            assert abs(row["predicted"] - row["observed"]) < 8, row
    assert np.all(np.diff(ys) > 0) and 0 < ys[0] and ys[-1] < 1
    # beyond the knots the map bends towards 0 and 100 instead of going flat: captures past
    # the last knot keep their order (a flat end would tie most of a good set)
    beyond = np.array([-5.0, xs[0] - 0.2, xs[0] - 0.01, xs[0], xs[-1], xs[-1] + 0.01, xs[-1] + 0.2, 5.0])
    ends = spec.to_score(beyond)
    assert np.all(np.diff(ends) > 0) and 0 <= ends[0] < 100 * ys[0] and 100 * ys[-1] < ends[-1] <= 100, ends
    assert np.allclose(ends[[3, 4]], 100 * ys[[0, -1]])
    # continuous at the knots, with the end segments' slopes
    eps = 1e-6
    for x in (xs[0], xs[-1]):
        left, mid, right = spec.to_score([x - eps, x, x + eps])
        assert abs((mid - left) - (right - mid)) < 1e-6 * 100
    assert spec.to_score([np.nan]).tolist() == spec.to_score([0.0]).tolist()


def test_weights_count_comparisons_and_light_blocks_are_merged():
    raw = np.array([0.1, 0.2, 0.3, 0.4])
    observed = np.array([0.0, 1.0, 0.0, 1.0])
    # the heavy middle capture (many comparisons) dominates its pooled block
    knots = isotonic_knots(raw, observed, np.array([1.0, 1.0, 50.0, 1.0]))
    assert knots[0][1] < 0.1 and knots[-1][1] == 0.999  # never a certainty
    assert len(isotonic_knots(raw, observed, min_weight=3)) < len(isotonic_knots(raw, observed))
    table = reliability_table(np.array([5.0, 15.0, 15.0]), np.array([0.0, 1.0, 0.5]), np.array([1, 2, 2]))
    assert table[0]["comparisons"] == 1 and table[1] == {"bin": "10-20", "captures": 2, "comparisons": 4,
                                                        "predicted": 15.0, "observed": 75.0}
