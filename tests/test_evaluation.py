"""EDC and FNMR calibration on small score sets whose answers are worked out by hand, and the
measurement behind them detecting as the gate does."""

import numpy as np
import pytest

from facegate.capture import CaptureSettings

from facegate.evaluation import (
    calibrate_for_fnmr,
    comparison_threshold,
    edc,
    pairwise_quality,
    perfect_edc,
    random_pauc,
)


def test_threshold_at_fmr_and_fnmr():
    impostor = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    # FMR 0.1 of 10 impostors: one may match, so the threshold is the second highest (0.9)
    assert comparison_threshold(impostor=impostor, fmr=0.1) == 0.9
    assert comparison_threshold(impostor=impostor, fmr=0.0) == 0.95  # nothing above the highest
    genuine = np.array([0.2, 0.4, 0.6, 0.8])
    t = comparison_threshold(genuine=genuine, fnmr=0.25)  # one of four may fail: just below 0.4
    assert 0.2 <= t < 0.4 and np.mean(genuine <= t) == 0.25
    with pytest.raises(ValueError):
        comparison_threshold(genuine, impostor, fmr=0.1, fnmr=0.1)


def test_edc_by_hand():
    # threshold 0.5: scores 0.1 and 0.2 are false non-matches; start FNMR 2/4
    genuine = np.array([0.1, 0.9, 0.8, 0.2])
    curve = edc(genuine, np.array([1.0, 2.0, 3.0, 4.0]), 0.5)
    assert curve.discard.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert np.allclose(curve.fnmr, [2 / 4, 1 / 3, 1 / 2, 1.0])
    # area to 0.5: 0.25 * 1/2 + 0.25 * 1/3
    assert curve.pauc(0.5) == pytest.approx(0.25 * 0.5 + 0.25 / 3)
    assert curve.pauc(0.1) == pytest.approx(0.1 * 0.5)
    assert curve.at(0.3) == pytest.approx(1 / 3)


def test_ties_are_discarded_together():
    genuine = np.array([0.1, 0.9, 0.8, 0.2])
    curve = edc(genuine, np.array([1.0, 1.0, 2.0, 2.0]), 0.5)
    assert curve.discard.tolist() == [0.0, 0.5]
    assert np.allclose(curve.fnmr, [0.5, 0.5])


def test_the_perfect_order_discards_equal_scores_one_at_a_time():
    # an unreadable capture (zero embedding) gives its three comparisons the same score 0
    genuine = np.array([0.0, 0.0, 0.0, 0.9, 0.8, 0.7])
    perfect = perfect_edc(genuine, 0.5)
    assert perfect.fnmr.tolist() == pytest.approx([0.5, 0.4, 0.25, 0.0, 0.0, 0.0])
    rng = np.random.default_rng(0)
    assert all(edc(genuine, rng.random(6), 0.5).pauc(0.5) >= perfect.pauc(0.5) for _ in range(100))


def test_perfect_and_random_references():
    rng = np.random.default_rng(0)
    genuine = rng.normal(0.6, 0.2, 2000)
    t = 0.4
    start = np.mean(genuine <= t)
    perfect = perfect_edc(genuine, t)
    # the perfect curve discards every false non-match first: (F - x) / (1 - x), then 0
    for x in (0.05, 0.1, 0.15):
        assert perfect.at(x) == pytest.approx(max(0.0, (start - x) / (1 - x)), abs=1e-3)
    assert perfect.at(start + 0.01) == 0.0
    mean, spread = random_pauc(genuine, t, limit=0.2, repeats=30)
    assert mean == pytest.approx(start * 0.2, rel=0.05) and spread < 0.01
    # a quality that tracks the score sits between the two
    noisy = edc(genuine, genuine + rng.normal(0, 0.2, len(genuine)), t).pauc(0.2)
    assert perfect.pauc(0.2) < noisy < mean


def test_ceiling_ties_the_comparisons_without_a_face_first():
    # 10 comparisons, 3 false non-matches at threshold 0.5; comparisons 0-2 lack a face
    genuine = np.array([0.1, 0.9, 0.8, 0.2, 0.3, 0.7, 0.6, 0.9, 0.8, 0.7])
    found = np.array([False, False, False] + [True] * 7)
    ceiling = perfect_edc(genuine, 0.5, found)
    # the tie of three goes first (FNMR holds at 0.3 until it is gone), then 0.2 and 0.3
    assert ceiling.discard.tolist() == pytest.approx([0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert ceiling.fnmr.tolist() == pytest.approx([0.3, 2 / 7, 1 / 6, 0, 0, 0, 0, 0])
    assert ceiling.pauc(0.2) > perfect_edc(genuine, 0.5).pauc(0.2)
    # no quality that puts the no-face comparisons first as a tie does better
    rng = np.random.default_rng(1)
    for _ in range(200):
        quality = np.where(found, rng.random(10), -np.inf)
        assert edc(genuine, quality, 0.5).pauc(0.2) >= ceiling.pauc(0.2) - 1e-12
    # with every face found it is the perfect order
    assert perfect_edc(genuine, 0.5, np.ones(10, bool)).pauc(0.2) == perfect_edc(genuine, 0.5).pauc(0.2)


def test_pairwise_quality_is_the_lower_one():
    q = np.array([5.0, 1.0, 3.0])
    assert pairwise_quality(q, np.array([[0, 1], [0, 2], [2, 1]])).tolist() == [1.0, 3.0, 1.0]


def test_calibration_for_fnmr_by_hand():
    # 4 captures; capture 3 is poor (quality 1) and in both failing genuine comparisons
    quality = np.array([9.0, 8.0, 7.0, 1.0])
    genuine_pairs = np.array([[0, 1], [1, 2], [0, 3], [2, 3]])
    genuine_scores = np.array([0.9, 0.8, 0.1, 0.2])
    impostor_pairs = np.array([[0, 2], [1, 3], [0, 3]])
    impostor_scores = np.array([0.3, 0.2, 0.1])
    # FMR 0 on 3 impostors: threshold 0.3; FNMR at no rejection is 2/4
    loose = calibrate_for_fnmr(quality, genuine_pairs, genuine_scores, impostor_pairs, impostor_scores,
                               target_fnmr=0.5, fmr=0.0)
    assert loose.reached and loose.reject_rate == 0.0 and loose.fnmr == 0.5
    strict = calibrate_for_fnmr(quality, genuine_pairs, genuine_scores, impostor_pairs, impostor_scores,
                                target_fnmr=0.0, fmr=0.0)
    # rejecting capture 3 (the lowest threshold above 1, i.e. 7) removes both failures
    assert strict.reached and strict.quality_threshold == 7.0 and strict.fnmr == 0.0
    assert strict.reject_rate == 0.25 and strict.genuine_kept == 2 and strict.fmr == 0.0
    capped = calibrate_for_fnmr(quality, genuine_pairs, genuine_scores, impostor_pairs, impostor_scores,
                                target_fnmr=0.0, fmr=0.0, max_reject_rate=0.1)
    assert not capped.reached and capped.reject_rate == 0.0


def test_paired_bootstrap_separates_a_good_order_from_a_random_one():
    """The bootstrap behind docs/results.md's comparison of two weights: the perfect order
    closes the whole gap, a random one about none, and their difference is far from zero;
    the same order twice differs by exactly nothing."""
    from facegate.evaluation.metrics import paired_bootstrap

    rng = np.random.default_rng(0)
    genuine = rng.normal(0.6, 0.15, 600)
    threshold = 0.4
    informed = genuine + rng.normal(0, 0.05, 600)  # mostly knows which comparisons fail
    noise = rng.random(600)
    out = paired_bootstrap(genuine, [informed, noise, informed], threshold, resamples=60)
    good, random_order, same = out["share_of_gap"]
    assert good > 0.6 and abs(random_order) < 0.2 and same == good
    (good_low, good_high), (random_low, random_high), _ = out["share_of_gap_95"]
    assert good_low <= good <= good_high and random_low <= 0 <= random_high and good_low > random_high
    low, high = out["first_minus_other_95"][0]
    assert low > 0.3 and high > low
    assert out["first_minus_other_95"][1] == [0.0, 0.0]


def test_the_bootstrap_resamples_people_whose_comparisons_go_together():
    """CelebA and validation people give many comparisons each: two orders that err person by
    person differ by less than a comparison-level bootstrap claims; resampling people shows it."""
    from facegate.evaluation.metrics import paired_bootstrap

    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(30), 20)
    genuine = rng.normal(0.6, 0.1, 30)[people] + rng.normal(0, 0.05, 600)
    first, second = (genuine + rng.normal(0, 0.15, 30)[people] for _ in range(2))
    width = {}
    for unit, clusters in (("comparison", None), ("person", people)):
        out = paired_bootstrap(genuine, [first, second], 0.45, resamples=60, clusters=clusters)
        low, high = out["first_minus_other_95"][0]
        width[unit] = high - low
    assert width["person"] > 1.8 * width["comparison"]


def test_the_bootstrap_says_what_it_lacks_before_loading_anything(tmp_path, capsys):
    import pytest

    from train.studies.gap_bootstrap import main

    with pytest.raises(SystemExit):
        main([str(tmp_path), str(tmp_path), "--sets", "validation"])
    assert "--sets validation needs --labels" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere"), str(tmp_path)])
    assert "nowhere: not a train.edc measurement folder" in capsys.readouterr().err


def test_misses_by_kind_counts_the_failures_a_quality_leaves_in():
    """train.studies.edc_misses' table: a quality that knows the comparison scores takes out only
    failures, one that ranks a kind's matching pairs lowest wastes its discards on them."""
    from train.studies.edc_misses import misses_by_kind

    rng = np.random.default_rng(1)
    kinds = np.array(["blur", "noise"] * 100)
    genuine = rng.uniform(0, 1, 200)
    threshold = 0.3
    failed = genuine < threshold
    noise_first = np.where(kinds == "noise", -1.0 + genuine, genuine)  # every noisy pair lowest
    out = misses_by_kind(kinds, genuine, threshold, {"knows": genuine, "noise first": noise_first}, discard=0.2)
    assert out["all"]["pairs"] == 200 and out["all"]["failed"] == failed.sum()
    assert out["blur"]["failed"] + out["noise"]["failed"] == out["all"]["failed"]
    assert out["all"]["knows"] == {"caught": min(40, int(failed.sum())), "wasted": max(0, 40 - int(failed.sum()))}
    noisy_failed = int((failed & (kinds == "noise")).sum())
    assert out["noise"]["noise first"]["caught"] == min(noisy_failed, 40)
    assert out["blur"]["noise first"] == {"caught": 0, "wasted": 0}
    assert out["noise"]["noise first"]["wasted"] == 40 - out["noise"]["noise first"]["caught"]
    assert "failed_clean_too" not in out["all"]
    # the failures that fail with clean photos as well: counted within the failures of each kind
    clean_fails = genuine < 0.1
    counted = misses_by_kind(kinds, genuine, threshold, {"knows": genuine}, failed_clean=clean_fails)
    assert counted["all"]["failed_clean_too"] == int(clean_fails.sum())
    assert counted["blur"]["failed_clean_too"] == int((clean_fails & (kinds == "blur")).sum())


def test_the_evaluation_looks_again_as_the_gate_does(fixtures, shared):
    """A washed-out face the first look misses is found on a darkened copy, as the gate finds
    it, and scored (low) instead of being counted as no face."""
    from facegate.evaluation import Method, measure_captures
    from facegate.images import load_rgb
    from facegate.recognition import MobileFaceNetRecognizer
    from facegate.scorer import create_scorer
    from train.degradations import gamma

    washed = gamma(load_rgb(fixtures / "tony_blair_1.jpg"), 1 / 4.5, gain=1.5)
    options = dict(recognizer=MobileFaceNetRecognizer(str(shared / "models" / "mobilefacenet_casia.ckpt")),
                   views=("none",), baselines=False)
    first_look = measure_captures([washed], ["tb"], capture=CaptureSettings(look_again=False), **options)
    as_the_gate = measure_captures([washed], ["tb"], **options)
    assert not first_look.found[0] and first_look.quality[Method("ensemble", "none")][0] == -np.inf
    assert as_the_gate.found[0]
    score = as_the_gate.quality[Method("ensemble", "none")][0]
    assert np.isfinite(score) and score < create_scorer(None).spec.default_threshold


def test_caught_by_one_only_lists_the_failures_only_that_method_takes_out_with_the_worse_photo():
    """Of four pairs, two fail; the first method's lowest pair is one failure, the second's the
    other: each method lists its own catch, naming the photo it found worse, with percentiles."""
    from train.studies.edc_misses import caught_by_one_only

    names = [f"p{i}.jpg" for i in range(8)]
    pairs = np.array([[0, 1], [2, 3], [4, 5], [6, 7]])
    genuine = np.array([0.1, 0.2, 0.8, 0.9])  # pairs 0 and 1 fail at 0.5
    first = np.array([9, 0, 9, 8, 9, 7, 9, 6], float)   # pair 0 lowest (photo 1)
    second = np.array([9, 8, 0, 9, 9, 7, 9, 6], float)  # pair 1 lowest (photo 2)
    out = caught_by_one_only(genuine, 0.5, pairs, names, {"first": first, "second": second}, discard=0.25)
    assert [r["photo"] for r in out["first"]] == ["p1.jpg"]
    assert [r["photo"] for r in out["second"]] == ["p2.jpg"]
    # photo 1: the lowest of 8 for the first method, the fourth lowest (3 of 7 steps up) for the second
    assert out["first"][0]["percentile first"] == 0.0 and out["first"][0]["percentile second"] == round(3 / 7, 3)
    # both take out the same failure: neither lists it
    both = caught_by_one_only(genuine, 0.5, pairs, names, {"first": first, "same": first}, discard=0.25)
    assert both == {"first": [], "same": []}
