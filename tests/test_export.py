"""ONNX: the shipped member graphs hold the shipped weights and score as PyTorch does; the
one-graph export for other runtimes matches too."""

import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facegate.cli import main
from facegate.errors import WeightsError
from facegate.scorer import create_scorer, default_weights_dir
from facegate.spec import ScorerSpec, file_sha256
from train.degradations import gaussian_blur

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def real_crops(gate, fixtures):
    crops = []
    for path in sorted(fixtures.glob("*.jpg")):
        capture = gate.capture.analyse(path)
        if capture.primary is not None:
            crops += [capture.crop, gate.spec.crop(gaussian_blur(capture.rgb, 3.0), capture.primary.landmarks)]
    return np.stack(crops)


@pytest.mark.parametrize("views", ["none", "flip", "full"])
def test_onnx_backend_matches_torch_with_member_scores(real_crops, views):
    """Both backends through the one interface: ensemble and every member, every view setting."""
    onnx, torch_ = create_scorer(views=views), create_scorer(views=views, backend="torch")
    a, b = onnx.score(real_crops), torch_.score(real_crops)
    assert np.ptp(a.ensemble) > 5  # real and blurred faces: the comparison is not between constants
    assert np.abs(a.ensemble - b.ensemble).max() < 0.01
    assert set(a.members) == set(b.members) == set(onnx.spec.members)
    for name in a.members:
        assert np.abs(a.members[name] - b.members[name]).max() < 0.01


def test_shipped_member_graphs_regenerate_and_carry_the_weights_digest(tmp_path, real_crops):
    """A test of the shipped files themselves: the spec's digests are those of the .pt files,
    each graph carries its member's digest, and regenerating the graphs gives the same scores."""
    from facegate.export import export_member_graphs

    shipped = default_weights_dir()
    spec = ScorerSpec.load(shipped / "spec.json")
    for name in spec.members:
        assert spec.member_sha256[name] == file_sha256(shipped / f"{name}.pt")
        meta = ort.InferenceSession(str(shipped / f"{name}.onnx")).get_modelmeta().custom_metadata_map
        assert meta["facegate_weights_sha256"] == spec.member_sha256[name]
    paths = export_member_graphs(shipped, out=tmp_path)
    for path in paths:
        fresh = ort.InferenceSession(str(path)).run(None, {"crops": real_crops})[0]
        old = ort.InferenceSession(str(shipped / path.name)).run(None, {"crops": real_crops})[0]
        assert np.abs(fresh - old).max() < 1e-5


def test_graphs_are_refused_for_other_weights(tmp_path):
    other = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), other)
    ckpt = torch.load(other / "mobilenet_v3_small.pt", weights_only=True)
    ckpt["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, other / "mobilenet_v3_small.pt")
    with pytest.raises(WeightsError, match="sha256"):  # the torch backend checks the file
        create_scorer(other, backend="torch")
    spec = ScorerSpec.load(other / "spec.json")
    spec.with_(member_sha256={**spec.member_sha256, "mobilenet_v3_small": file_sha256(other / "mobilenet_v3_small.pt")}
               ).save(other / "spec.json")
    with pytest.raises(WeightsError, match="other weights"):  # the old graph no longer belongs
        create_scorer(other)
    create_scorer(other, backend="torch")  # the spec now matches the file


def test_one_graph_export_matches_torch(tmp_path, real_crops):
    out = tmp_path / "facegate.onnx"
    result = CliRunner().invoke(main, ["export", "--format", "onnx", "--out", str(out), "--views", "full"])
    assert result.exit_code == 0, result.output
    utility, score = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"crops": real_crops})
    torch_scorer = create_scorer(views="full", backend="torch")
    expected = torch_scorer.score(real_crops).ensemble
    assert np.abs(score - expected).max() < 1e-2
    # utility: the networks' raw output, which the spec's scale maps to the score
    assert np.abs(torch_scorer.spec.to_score(utility) - expected).max() < 1e-2
    again = CliRunner().invoke(main, ["export", "--out", str(out)])
    assert again.exit_code == 2  # never overwrites


def test_a_calibrated_scale_and_the_specs_views_hold_in_every_backend_and_export(tmp_path, real_crops):
    """A spec with a score calibration (monotone knots) and views without the vertical flip:
    onnx and torch backends and the one-graph export give the same calibrated scores, and
    "full" means the spec's views."""
    from facegate.export import export_onnx
    from facegate.models import TorchScorer

    other = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), other)
    spec = ScorerSpec.load(other / "spec.json")
    from facegate.models import to_tensor

    with torch.inference_mode():  # the networks' raw output with the same views, before any scale
        raw = TorchScorer(other, views="flip").ensemble.forward_members(to_tensor(spec, real_crops)).mean(0).numpy()
    # knots inside the crops' range, so that some crops fall on each tail beyond them
    knots = tuple((float(x), y) for x, y in zip(np.quantile(raw, [0.25, 0.5, 0.75]), (0.2, 0.5, 0.9)))
    assert (raw < knots[0][0]).any() and (raw > knots[-1][0]).any()
    spec.with_(views=("identity", "hflip"), score_calibration=knots).save(other / "spec.json")
    onnx_, torch_ = create_scorer(other), create_scorer(other, backend="torch")
    assert onnx_.views == ("identity", "hflip") and torch_.ensemble.views == ("identity", "hflip")
    expected = ScorerSpec(score_calibration=knots).to_score(raw)  # tests/test_scale.py checks this map itself
    a, b = onnx_.score(real_crops).ensemble, torch_.score(real_crops).ensemble
    assert np.ptp(expected) > 5
    assert np.abs(a - expected).max() < 0.05 and np.abs(b - expected).max() < 0.05
    _, score = ort.InferenceSession(str(export_onnx(TorchScorer(other), tmp_path / "one.onnx"))).run(
        None, {"crops": real_crops})
    assert np.abs(score - expected).max() < 0.05
