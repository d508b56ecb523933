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
