import json

import numpy as np
import pytest

from facegate.detection import Face
from facegate.errors import ConfigError
from facegate.policy import REASONS, Policy, Status, decide


def face(side, prob=0.99, x=0.0, eye=None):
    eye = side * 0.4 if eye is None else eye
    lm = np.array([[x + 10, 40], [x + 10 + eye, 40], [x + 30, 60], [x + 15, 80], [x + 45, 80]], float)
    return Face((x, 0.0, x + side, side), prob, lm)


P = Policy(min_score=50.0)
BIG = face(100)


@pytest.mark.parametrize(
    "policy, faces, primary, score, status, reasons",
    [
        (P, [BIG], BIG, 80.0, Status.ACCEPTED, ()),
        (P, [BIG], BIG, 50.0, Status.ACCEPTED, ()),
        (P, [BIG], BIG, 49.9, Status.REJECTED, ("low_quality",)),
        (P, [], None, None, Status.NO_FACE, ()),
        (P, [face(30, eye=10)], None, 80.0, Status.NO_FACE, ()),
        (P, [f := face(30, eye=10)], f, 80.0, Status.REJECTED, ("face_too_small",)),
        (P, [g := face(100, prob=0.5)], g, 80.0, Status.REJECTED, ("low_confidence",)),
        (P, [BIG, face(60, x=300)], BIG, 80.0, Status.REJECTED, ("multiple_faces",)),
        (P, [BIG, face(40, x=300)], BIG, 80.0, Status.ACCEPTED, ()),  # small background face
        (P, [BIG, face(60, prob=0.6, x=300)], BIG, 80.0, Status.ACCEPTED, ()),  # unsure second face
        (Policy(min_score=50.0, reject_multiple_faces=False), [BIG, face(90, x=300)], BIG, 80.0, Status.ACCEPTED, ()),
        (P, [h := face(30, eye=10), face(30, x=300)], h, 10.0, Status.REJECTED,
         ("low_quality", "face_too_small", "multiple_faces")),
    ],
)
def test_decision_table(policy, faces, primary, score, status, reasons):
    assert decide(policy, faces, primary, score) == (status, reasons)
    assert set(reasons) <= set(REASONS)


def test_policy_file_round_trip(tmp_path):
    path = tmp_path / "policy.json"
    Policy(min_score=42.5, min_eye_distance=20).save(path)
    assert Policy.load(path) == Policy(min_score=42.5, min_eye_distance=20)
    path.write_text(json.dumps({"facegate_policy": 1, "min_scor": 3}))
    with pytest.raises(ConfigError, match="unknown policy settings"):
        Policy.load(path)
    path.write_text("{}")
    with pytest.raises(ConfigError, match="not a facegate policy"):
        Policy.load(path)


def test_invalid_settings():
    with pytest.raises(ConfigError):
        Policy(min_score=150)
    with pytest.raises(ConfigError):
        Policy(secondary_face_ratio=0)


def test_a_threshold_is_refused_for_weights_on_another_scale(tmp_path):
    """A min_score chosen on one score scale means something else on another: a gate with
    weights on another scale refuses it (files from before the field: read from made_by)."""
    from facegate import Gate

    scale = Gate(threads=1).spec.score_scale
    path = tmp_path / "policy.json"
    Policy(min_score=40.0, score_scale="fg-utility-v0").save(path)
    with pytest.raises(ConfigError, match="fg-utility-v0 scale"):
        Gate(policy=path, threads=1)
    older = {"facegate_policy": 1, "min_score": 40.0, "made_by": {"score_scale": "fg-utility-v0"}}
    path.write_text(json.dumps(older))
    assert Policy.load(path).score_scale == "fg-utility-v0"
    with pytest.raises(ConfigError, match="calibrate again"):
        Gate(policy=path, threads=1)
    Policy(min_score=40.0, score_scale=scale).save(path)
    assert Gate(policy=path, threads=1).policy.min_score == 40.0
    Policy(score_scale="fg-utility-v0").save(path)  # no threshold of its own: the weights' default serves
    assert Gate(policy=path, threads=1).policy.min_score == Gate(threads=1).spec.default_threshold
