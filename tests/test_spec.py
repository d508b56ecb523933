"""One owner binds weights to their use: the shipped spec. Nothing else may contradict it."""

from dataclasses import fields

import pytest

from facegate import SCORE_SCALE, ScorerSpec, Weights
from facegate.errors import ConfigError
from facegate.registry import default_weights_dir

#: What training and calibration decide, per set of weights: no default can stand for it.
DECIDED_BY_TRAINING = {"name", "terms", "member_sha256", "score_calibration", "default_threshold", "threshold_rule"}


def test_the_registry_names_the_shipped_weights_and_their_spec():
    assert Weights.DEFAULT is Weights.FG_UTILITY_V2
    assert Weights.DEFAULT.folder == default_weights_dir()
    spec = Weights.DEFAULT.spec
    assert spec == ScorerSpec.load(default_weights_dir() / "spec.json")
    assert spec.name == "facegate-ensemble.fg-utility-v2" and spec.terms == Weights.DEFAULT.terms


def test_spec_defaults_are_the_shipped_weights_framing_views_scale_and_detectors():
    shipped, default = Weights.DEFAULT.spec, ScorerSpec()
    compared = [f.name for f in fields(ScorerSpec) if f.name not in DECIDED_BY_TRAINING]
    assert {"margin", "views", "score_scale", "input_size", "template", "detectors", "members"} <= set(compared)
    differing = {k: (getattr(default, k), getattr(shipped, k)) for k in compared if getattr(default, k) != getattr(shipped, k)}
    assert not differing
    assert SCORE_SCALE == shipped.score_scale == "fg-utility-v2"


def test_the_shipped_recipe_trains_for_the_shipped_spec():
    from train.recipe import SHIPPED

    shipped = Weights.DEFAULT.spec
    made = SHIPPED.weights_spec()
    for name in ("name", "terms", "input_size", "margin", "template", "views", "score_scale", "members", "detectors",
                 "mean", "std"):
        assert getattr(made, name) == getattr(shipped, name), name


def test_train_fit_alone_trains_on_the_shipped_framing():
    from train.fit import FitConfig

    assert FitConfig(csv=None, arch="mobilenet_v3_small", out=None).margin == Weights.DEFAULT.spec.margin == 0.0


def test_weights_without_a_threshold_need_one_from_the_policy(tmp_path):
    import shutil

    from facegate import Gate, Policy

    folder = tmp_path / "uncalibrated"
    shutil.copytree(default_weights_dir(), folder, ignore=shutil.ignore_patterns("mtcnn", "*.md"))
    spec = ScorerSpec.load(folder / "spec.json")
    spec.with_(default_threshold=None).save(folder / "spec.json")
    with pytest.raises(ConfigError, match="no default threshold"):
        Gate(weights=folder, threads=1)
    gate = Gate(weights=folder, threads=1, policy=Policy(min_score=60))
    assert gate.policy.min_score == 60
