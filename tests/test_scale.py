"""The fg-utility-v2 scale: isotonic knots follow the observed chance and read back true."""

from pathlib import Path

import numpy as np
import pytest

from facegate.spec import ScorerSpec
from facegate.scale import isotonic_knots, reliability_table


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


def _people_measurement(seed=0, people=60, photos=6):
    """Captures whose recognizer success is a step in the weights' score (at about 60): the
    weights' scale (s% chance at s) is off for this recognizer, as for a user's own."""
    from facegate.calibration import PeopleMeasurement
    from facegate.evaluation import MeasuredCaptures, Method

    rng = np.random.default_rng(seed)
    dim = 64
    direction = rng.normal(size=(people, dim))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    identities = np.repeat(np.arange(people), photos).astype(str)
    closeness = np.where(np.arange(people * photos) % photos < 2, 0.97, rng.uniform(0.2, 0.99, people * photos))
    noise = rng.normal(size=(people * photos, dim))
    noise -= (noise * direction[np.repeat(np.arange(people), photos)]).sum(1, keepdims=True) * \
        direction[np.repeat(np.arange(people), photos)]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    emb = closeness[:, None] * direction[np.repeat(np.arange(people), photos)] + \
        np.sqrt(1 - closeness[:, None] ** 2) * noise
    method = Method("ensemble", "full")
    n = people * photos
    measured = MeasuredCaptures([f"p{i}.jpg" for i in range(n)], identities, np.ones(n, bool), emb,
                                np.zeros((n, 5, 2)), {method: 100.0 * closeness}, {})
    pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n) if identities[i] == identities[j]])
    return PeopleMeasurement([f"p{i}.jpg" for i in range(n)], pairs, measured, method)


def test_a_refit_scale_reads_true_for_the_users_recognizer_on_people_it_did_not_see():
    """facegate calibrate --refit-scale: on people the fit did not see, the refit scale's
    calibration error is a fraction of the weights' own; the map rises, keeps order beyond
    the fitted range, and a gate with the policy reports its scores through it."""
    from facegate import Gate
    from facegate.calibration import refit_scale
    from facegate.scale import calibration_error, observed_success

    gate = Gate(threads=1)
    fit_on = _people_measurement(seed=0)
    policy, report = refit_scale(gate, "people", None, measurement=fit_on)
    assert report.error_after < 0.5 * report.error_before and report.error_before > 0.1
    xs, ys = np.array(report.knots).T
    assert np.all(np.diff(xs) > 0) and np.all(np.diff(ys) >= 0) and xs[0] == 0 and xs[-1] == 100
    assert policy.score_map == report.knots and policy.score_scale == gate.spec.score_scale
    # other people of the same recognizer: the saved map reads true on them too
    other = _people_measurement(seed=1)
    threshold = report.comparison_threshold
    idx, observed, weight = observed_success(other.measured, threshold)
    scores = other.quality[idx]
    assert calibration_error(policy.rescore(scores), observed, weight) < 0.5 * calibration_error(scores, observed,
                                                                                                 weight)
    face = Path(__file__).parent / "fixtures" / "colin_powell_1.jpg"
    refit, plain = gate.with_policy(policy).assess(face), gate.assess(face)
    assert refit.score == pytest.approx(policy.rescore(plain.score)) and refit.score != pytest.approx(plain.score)
    assert refit.member_scores == pytest.approx({k: policy.rescore(v) for k, v in plain.member_scores.items()})


def test_a_refit_policy_is_refused_by_weights_of_another_scale(tmp_path):
    from facegate import Gate
    from facegate.errors import ConfigError
    from facegate.policy import Policy

    path = tmp_path / "policy.json"
    Policy(score_scale="fg-utility-v0", score_map=((0, 0), (50, 20), (100, 100))).save(path)
    with pytest.raises(ConfigError, match="refit from the fg-utility-v0 scale"):
        Gate(policy=path, threads=1)
    with pytest.raises(ConfigError, match="needs the score_scale"):
        Policy(score_map=((0, 0), (100, 100)))
    with pytest.raises(ConfigError, match="must rise"):
        Policy(score_scale="fg-utility-v2", score_map=((0, 50), (100, 10)))
    scale = Gate(threads=1).spec.score_scale
    Policy(score_scale=scale, score_map=((0, 0), (50, 20), (100, 100))).save(path)
    assert Policy.load(path).rescore(75.0) == pytest.approx(60.0)
