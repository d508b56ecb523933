"""ONNX export: onnxruntime's scores match PyTorch's on real faces."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facegate.cli import main
from facegate.images import load_rgb
from facegate.scorer import Scorer
from train.degradations import gaussian_blur

ort = pytest.importorskip("onnxruntime", reason="ONNX export is tested with the [onnx] extra installed")


def test_onnx_matches_pytorch_on_real_faces(tmp_path, gate, fixtures):
    crops = []
    for path in sorted(fixtures.glob("*.jpg")):
        rgb = load_rgb(path)
        face = gate.assess(rgb, color_order="rgb").face
        if face is not None:
            crops += [gate.spec.crop(rgb, face.landmarks), gate.spec.crop(gaussian_blur(rgb, 3.0), face.landmarks)]
    crops = np.stack(crops)
    out = tmp_path / "facegate.onnx"
    result = CliRunner().invoke(main, ["export", "--format", "onnx", "--out", str(out), "--views", "full"])
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    utility, score = session.run(None, {"crops": crops})
    scorer = Scorer(views="full")
    with torch.inference_mode():
        raw = scorer.ensemble(scorer.spec.to_tensor(crops)).numpy()
    expected, _ = scorer.score(crops)
    assert np.abs(utility - raw).max() < 1e-4
    assert np.abs(score - expected).max() < 1e-2  # the same 1e-4 on the 0-100 scale
    again = CliRunner().invoke(main, ["export", "--out", str(out)])
    assert again.exit_code == 2  # never overwrites
    # the gate can score through the graph: same decisions, same scores
    from facegate import Gate

    via_onnx = Gate(onnx=out)
    for path in sorted(fixtures.glob("*.jpg")):
        a, b = gate.assess(path), via_onnx.assess(path)
        assert a.status == b.status and a.reasons == b.reasons
        assert (a.score is None and b.score is None) or abs(a.score - b.score) < 1e-2


def test_shipped_graph_holds_the_shipped_weights(tmp_path, fixtures, gate):
    """The stream's default graph must score exactly as PyTorch does with the shipped
    weights (a stale graph would silently score with old weights), and a graph is refused
    for any other weights."""
    import shutil

    from facegate.errors import ConfigError
    from facegate.export import OnnxScorer, shipped_graph
    from facegate.scorer import default_weights_dir

    graph = shipped_graph("none")
    assert graph is not None, "facegate/weights/ensemble_none.onnx is missing (python -m train.release writes it)"
    rgb = load_rgb(fixtures / "colin_powell_1.jpg")
    crop = gate.spec.crop(rgb, gate.assess(rgb, color_order="rgb").face.landmarks)[None]
    assert abs(OnnxScorer(graph).score(crop)[0][0] - Scorer(views="none").score(crop)[0][0]) < 1e-2
    other = tmp_path / "weights"
    shutil.copytree(default_weights_dir(), other)
    ckpt = torch.load(other / "mobilenet_v3_small.pt", weights_only=True)
    ckpt["state_dict"] = {k: v + 0.01 if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, other / "mobilenet_v3_small.pt")
    with pytest.raises(ConfigError, match="other weights"):
        OnnxScorer(graph, weights=other)
