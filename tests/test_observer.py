"""Observer quality scorer (facegate/observer.py): pseudo-labels, calibration, scoring.

Tests marked ``needs_shared`` use the real MobileFaceNet checkpoint and LFW; the others run
a randomly initialised MobileFaceNet saved as a checkpoint, so they need nothing outside.
"""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from facegate.errors import ConfigError, WeightsError
from facegate.observer import FEATURE_KINDS, LAYERS, ObserverCalibration, ObserverScorer, default_calibration_path
from facegate.recognition import MobileFaceNet, MobileFaceNetRecognizer
from tests.conftest import needs_shared
from train.observer import calibrate, extract_features, pseudo_quality

FIXTURE_NAMES = ("colin_powell_1.jpg", "colin_powell_2.jpg", "tony_blair_1.jpg")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Keep these tests to one core (the machines running them are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def random_recognizer(tmp_path_factory) -> MobileFaceNetRecognizer:
    torch.manual_seed(0)
    net = MobileFaceNet()
    for module in net.modules():  # non-trivial BN statistics, as a trained net has
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("mfn") / "random.ckpt"
    torch.save({"net_state_dict": net.state_dict()}, path)
    return MobileFaceNetRecognizer(str(path), batch_size=8)


@pytest.fixture(scope="module")
def random_crops() -> np.ndarray:
    """Smooth random 'faces' (uint8, 112x96) of varying contrast."""
    rng = np.random.default_rng(0)
    crops = []
    for k in range(24):
        small = rng.uniform(0, 255, (14, 12, 3)).astype(np.float32)
        big = cv2.resize(small, (96, 112), interpolation=cv2.INTER_CUBIC)
        crops.append(np.clip((big - 127.5) * (0.2 + k / 24) + 127.5, 0, 255).astype(np.uint8))
    return np.stack(crops)


def _calibration(**changes) -> ObserverCalibration:
    base = dict(
        layer="embedding", feature="norm", mean=(5.0,), std=(1.5,), weights=(0.02,), bias=0.9, alpha=1.0,
        srcc=0.5, candidates=({"layer": "embedding", "feature": "norm", "srcc": 0.5, "alpha": 1.0},),
        calibration_crops=10, recognizer="test",
    )
    return ObserverCalibration(**{**base, **changes})


# --------------------------------------------------------------------------- no shared data needed


def test_calibration_round_trips_through_json(tmp_path):
    cal = _calibration()
    assert ObserverCalibration.load(cal.save(tmp_path / "cal.json")) == cal


def test_broken_calibration_files_raise_weights_error(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        ObserverCalibration.load(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(WeightsError, match="cannot read"):
        ObserverCalibration.load(tmp_path / "junk.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(WeightsError, match="not a facegate observer"):
        ObserverCalibration.load(tmp_path / "other.json")
    good = json.loads(_calibration().save(tmp_path / "good.json").read_text())
    (tmp_path / "short.json").write_text(json.dumps({**good, "layer": "conv2", "feature": "pooled"}))
    with pytest.raises(WeightsError, match="needs 512 weights"):
        ObserverCalibration.load(tmp_path / "short.json")
    del good["bias"]
    (tmp_path / "nobias.json").write_text(json.dumps(good))
    with pytest.raises(WeightsError, match="malformed"):
        ObserverCalibration.load(tmp_path / "nobias.json")


def test_the_shipped_calibration_loads():
    cal = ObserverCalibration.load(default_calibration_path())
    assert cal.layer in LAYERS and cal.feature in FEATURE_KINDS
    assert np.isfinite(cal.srcc) and cal.calibration_crops >= 1000
    assert cal.recognizer == "mobilefacenet_casia"


def test_early_stopping_forward_matches_the_network(random_recognizer, random_crops):
    """The feature extractor mirrors MobileFaceNet.forward: its embedding tap is the net's output."""
    feats = extract_features(random_recognizer, random_crops[:4], layers=("blocks.3", "embedding"))
    x = (torch.from_numpy(random_crops[:4]).permute(0, 3, 1, 2).float() - 127.5) / 128.0
    with torch.inference_mode():
        emb = random_recognizer.net(x).double().numpy()
    np.testing.assert_allclose(feats["embedding"].pooled, emb, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(feats["embedding"].norm, np.linalg.norm(emb, axis=1), rtol=1e-4)
    assert feats["blocks.3"].pooled.shape == (4, 64) and feats["blocks.3"].mean_abs.shape == (4,)


def test_calibration_finds_the_statistic_that_made_the_labels(random_recognizer, random_crops, tmp_path):
    pytest.importorskip("scipy")
    target = extract_features(random_recognizer, random_crops, layers=("blocks.8",))["blocks.8"].mean_abs
    cal = calibrate(random_recognizer, random_crops, target, seed=0, recognizer_name="random")
    assert cal.srcc > 0.95
    assert len(cal.candidates) == 12 * len(FEATURE_KINDS)
    scorer = ObserverScorer(random_recognizer, ObserverCalibration.load(cal.save(tmp_path / "c.json")))
    scores = scorer.score_aligned(random_crops)
    assert np.corrcoef(scores, target)[0, 1] > 0.95


def test_scorer_shapes_batching_and_errors(random_recognizer, random_crops):
    scorer = ObserverScorer(random_recognizer, _calibration(layer="blocks.5", feature="mean_abs"))
    scores = scorer.score_aligned(random_crops)  # 3 batches of 8
    assert scores.shape == (24,) and np.isfinite(scores).all()
    one_by_one = np.concatenate([scorer.score_aligned(random_crops[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(one_by_one, scores[:3], rtol=1e-5)
    assert scorer.score_aligned(np.zeros((0, 112, 96, 3), np.uint8)).shape == (0,)
    with pytest.raises(ConfigError):
        scorer.score_aligned(random_crops[..., 0])
    with pytest.raises(ConfigError):
        scorer.score_aligned(random_crops.astype(np.float32))
    with pytest.raises(ConfigError):
        scorer.score([random_crops[0]], [])


def test_pseudo_quality_shape_and_range(random_recognizer, random_crops):
    q = pseudo_quality(random_recognizer, random_crops[:5], perturbations=3)
    assert q.shape == (5,) and np.isfinite(q).all() and (q <= 1 + 1e-6).all() and (q >= -1 - 1e-6).all()
    np.testing.assert_allclose(pseudo_quality(random_recognizer, random_crops[:2], perturbations=3), q[:2], rtol=1e-5)
    with pytest.raises(ConfigError):
        pseudo_quality(random_recognizer, random_crops[:2], perturbations=1, anchor="pairwise")


# --------------------------------------------------------------------------- with the real recognizer


@pytest.fixture(scope="module")
def recognizer(shared) -> MobileFaceNetRecognizer:
    return MobileFaceNetRecognizer(str(shared / "models" / "mobilefacenet_casia.ckpt"), batch_size=16)


@pytest.fixture(scope="module")
def fixture_faces(fixtures) -> list[tuple[np.ndarray, np.ndarray]]:
    from facegate.capture import CaptureStage

    stage = CaptureStage()
    faces = []
    for name in FIXTURE_NAMES:
        capture = stage.analyse(fixtures / name)
        assert capture.primary is not None, name
        faces.append((capture.rgb, capture.primary.landmarks))
    return faces


@needs_shared
def test_pseudo_quality_of_a_blurred_crop_is_lower(recognizer, fixture_faces):
    sharp = np.stack([recognizer.align(rgb, lm) for rgb, lm in fixture_faces])
    blurred = np.stack([cv2.GaussianBlur(c, (0, 0), 3.0) for c in sharp])
    q = pseudo_quality(recognizer, np.concatenate([sharp, blurred]))
    assert (q[3:] < q[:3]).all(), q


@needs_shared
def test_calibration_on_a_small_lfw_set(shared, recognizer, tmp_path):
    pytest.importorskip("scipy")
    from train.observer import calibration_captures

    crops, groups, labels = calibration_captures(shared, recognizer, photos=20, seed=1)
    assert crops.shape == (40, 112, 96, 3) and labels.count("none") == 20
    pseudo = pseudo_quality(recognizer, crops, perturbations=4)
    cal = calibrate(recognizer, crops, pseudo, seed=0, groups=groups, perturbations=4)
    assert np.isfinite(cal.srcc) and cal.calibration_crops == 40
    chosen = [r for r in cal.candidates if (r["layer"], r["feature"]) == (cal.layer, cal.feature)]
    assert chosen[0]["srcc"] == cal.srcc == max(r["srcc"] for r in cal.candidates if r["srcc"] is not None)
    loaded = ObserverCalibration.load(cal.save(tmp_path / "small.json"))
    assert loaded == cal
    assert dataclasses.asdict(loaded)["weights"] == cal.weights
    assert np.isfinite(ObserverScorer(recognizer, loaded).score_aligned(crops)).all()


@needs_shared
def test_shipped_scorer_ranks_blurred_faces_below_sharp(recognizer, fixture_faces):
    scorer = ObserverScorer(recognizer, default_calibration_path())
    images = [rgb for rgb, _ in fixture_faces]
    blurred = [cv2.GaussianBlur(rgb, (0, 0), 3.0) for rgb in images]
    landmarks = [lm for _, lm in fixture_faces]
    sharp_scores = scorer.score(images, landmarks)
    blurred_scores = scorer.score(blurred, landmarks)
    assert np.isfinite(sharp_scores).all() and np.isfinite(blurred_scores).all()
    assert (blurred_scores < sharp_scores).all(), (sharp_scores, blurred_scores)
