"""`facegate evaluate` and `facegate calibrate --target-fnmr` on a small real enrollment set:
LFW people (never trained on) in identity folders, some photos degraded, one corrupt file,
compared by the shared MobileFaceNet."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from facegate.cli import main
from facegate.evaluation import labelled_captures
from facegate.policy import Policy
from facegate.recognition import load_recognizer
from facegate.errors import WeightsError
from tests.conftest import ENROLLMENT_PEOPLE as PEOPLE


def test_identity_folders_give_genuine_pairs(enrollment):
    paths, identities, genuine = labelled_captures(enrollment)
    assert len(paths) == PEOPLE * 3 + 1
    assert all(identities[i] == identities[j] for i, j in genuine)
    # three photos per person (plus the corrupt file in the first): 3 pairs each, 6 for the first
    assert len(genuine) == 3 * PEOPLE + 3


def test_evaluate_reports_every_method(enrollment, shared, tmp_path):
    report = tmp_path / "report.json"
    # over half the comparisons: the captures with no face go first for every method and fill
    # the first 20% of these 21 genuine pairs, where no method can differ from another
    run = CliRunner().invoke(main, ["evaluate", str(enrollment), "--recognizer",
                                    str(shared / "models" / "mobilefacenet_casia.ckpt"), "--fnmr", "0.3",
                                    "--discard-limit", "0.5", "--report", str(report)])
    assert run.exit_code == 0, run.output
    data = json.loads(report.read_text())
    methods = {r["method"] for r in data["rows"]}
    assert {"ensemble (full)", "ensemble (none)", "Laplacian variance", "MTCNN probability", "face size (px)",
            "perfect (reference)"} <= methods
    rows = {r["method"]: r for r in data["rows"]}
    assert rows["perfect (reference)"]["pauc"] <= min(r["pauc"] for r in data["rows"]) + 1e-12
    random_row = next(r for r in data["rows"] if r["method"].startswith("random"))
    # the hard-degraded photos are the ones that fail to match, and the ensemble sets them aside first
    assert rows["ensemble (full)"]["pauc"] < 0.9 * random_row["pauc"]
    assert all(np.isfinite(r["pauc"]) for r in data["rows"])
    assert "corrupt.jpg" in run.output or data["captures"] == PEOPLE * 3 + 1


def test_calibrate_for_a_target_fnmr_writes_a_policy_that_reaches_it(enrollment, shared, tmp_path):
    out = tmp_path / "policy.json"
    ckpt = str(shared / "models" / "mobilefacenet_casia.ckpt")
    run = CliRunner().invoke(main, ["calibrate", str(enrollment), "--target-fnmr", "0.0", "--fmr", "0.05",
                                    "--recognizer", ckpt, "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert "expected FNMR 0.0000" in run.output and "reject rate" in run.output
    policy = Policy.load(out)
    # the degraded photos are what fail to match; the threshold must set at least one aside
    assert 0.0 < policy.min_score <= 100.0
    again = CliRunner().invoke(main, ["calibrate", str(enrollment), "--target-fnmr", "0.0", "--recognizer", ckpt,
                                      "--out", str(out)])
    assert again.exit_code == 2 and "exists" in again.output  # never overwrites without --force
    neither = CliRunner().invoke(main, ["calibrate", str(enrollment), "--out", str(tmp_path / "p2.json")])
    assert neither.exit_code == 2
    made_by = json.loads(out.read_text())["made_by"]
    assert made_by["target_fnmr"] == 0.0 and made_by["score_scale"] == "fg-utility-v2" and made_by["captures"] > 0
    assert made_by["recognizer"] == ckpt and made_by["reached"] is True


def test_an_unreachable_target_writes_nothing_unless_asked(enrollment, shared, tmp_path):
    """Rejecting at most 1% cannot bring FNMR to 0 on captures with degraded photos: say so,
    write nothing and fail; --best-effort writes the best policy found and says it."""
    out = tmp_path / "policy.json"
    args = ["calibrate", str(enrollment), "--target-fnmr", "0.0", "--fmr", "0.05", "--max-reject-rate", "0.01",
            "--recognizer", str(shared / "models" / "mobilefacenet_casia.ckpt"), "--out", str(out)]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 1 and "cannot be reached" in run.output and not out.exists()
    best = CliRunner().invoke(main, [*args, "--best-effort"])
    assert best.exit_code == 0 and out.is_file() and json.loads(out.read_text())["made_by"]["reached"] is False


def test_recognizer_spec_errors_are_clear(tmp_path):
    with pytest.raises(WeightsError, match="neither a checkpoint"):
        load_recognizer(str(tmp_path / "missing.ckpt"))
    with pytest.raises(WeightsError, match="cannot import"):
        load_recognizer("no_such_module:factory")


def test_calibrate_refits_the_scale_and_chooses_the_threshold_on_it(enrollment, shared, tmp_path):
    """--refit-scale with --target-fnmr: the policy carries the map and a threshold on the
    refit scale, says what it was refit for, and a gate reading it reports scores through the
    map; too few people are refused unless --allow-small-sample."""
    from facegate import Gate

    out = tmp_path / "policy.json"
    ckpt = str(shared / "models" / "mobilefacenet_casia.ckpt")
    args = ["calibrate", str(enrollment), "--refit-scale", "--recognizer", ckpt, "--fmr", "0.05", "--out", str(out)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code != 0 and "too few to refit the scale" in refused.output and not out.exists()
    run = CliRunner().invoke(main, [*args, "--target-fnmr", "0.0", "--allow-small-sample"])
    assert run.exit_code == 0, run.output
    assert "score scale refit for" in run.output and "calibration error on people each fit did not see" in run.output
    policy = Policy.load(out)
    assert policy.score_map and policy.score_scale == "fg-utility-v2" and "mobilefacenet_casia" in policy.score_map_for
    made_by = json.loads(out.read_text())["made_by"]
    assert made_by["refit_scale"]["people"] >= 4 and made_by["target_fnmr"] == 0.0
    photo = next(p for p in sorted(enrollment.rglob("*.jpg")) if "corrupt" not in p.name)
    gate, plain = Gate(policy=out, threads=1), Gate(threads=1)
    assert gate.assess(photo).score == pytest.approx(policy.rescore(plain.assess(photo).score))
