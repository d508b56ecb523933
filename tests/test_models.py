import pytest
import torch
import torchvision

from facegate.errors import ConfigError, WeightsError
from facegate.models import QualityEnsemble, apply_views, build_member, list_members, load_backbone_weights, load_member
from facegate.scorer import create_scorer, default_weights_dir


@pytest.mark.parametrize("arch, features", [("mobilenet_v3_small", 576), ("shufflenet_v2_x1_0", 1024)])
def test_member_shapes_and_heads(arch, features):
    net = build_member(arch).eval()
    x = torch.randn(3, 3, 112, 112)
    assert net.forward_features(x).shape == (3, features)
    assert net(x).shape == (3,)
    linears = [m for m in net.head if isinstance(m, torch.nn.Linear)]
    widths = [linears[0].in_features] + [m.out_features for m in linears]
    assert widths == ([576, 288, 1] if arch == "mobilenet_v3_small" else [1024, 512, 256, 1])
    dropouts = [m.p for m in net.head if isinstance(m, torch.nn.Dropout)]
    assert dropouts and all(p == 0.2 for p in dropouts)


def test_unknown_member():
    with pytest.raises(ConfigError, match="choose from"):
        build_member("resnet50")


def test_views_average_in_one_pass():
    nets = [build_member(a).eval() for a in list_members()]
    x = torch.randn(2, 3, 64, 64)
    full = QualityEnsemble(nets, "full")
    with torch.inference_mode():
        per_member = full.forward_members(x)
        expected = torch.stack([(n(x) + n(x.flip(3)) + n(x.flip(2))) / 3 for n in nets])
    assert per_member.shape == (2, 2)
    assert torch.allclose(per_member, expected, atol=1e-5)
    assert apply_views(x, ("identity", "hflip")).shape == (4, 3, 64, 64)
    with pytest.raises(ConfigError):
        QualityEnsemble(nets, "sideways")


@pytest.mark.parametrize(
    "arch, builder",
    [("mobilenet_v3_small", torchvision.models.mobilenet_v3_small),
     ("shufflenet_v2_x1_0", torchvision.models.shufflenet_v2_x1_0)],
)
def test_pretrained_backbone_from_a_torchvision_checkpoint(tmp_path, arch, builder):
    reference = builder(weights=None)
    path = tmp_path / "imagenet.pth"
    torch.save(reference.state_dict(), path)
    net = build_member(arch)
    load_backbone_weights(net, str(path))
    ref_first = next(iter(reference.state_dict().values()))
    assert torch.equal(next(iter(net.features.state_dict().values())), ref_first)
    torch.save({"unrelated": torch.zeros(3)}, path)
    with pytest.raises(WeightsError):
        load_backbone_weights(build_member(arch), str(path))


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_shipped_weights_load_and_order_noise_below_a_face(backend, fixtures):
    scorer = create_scorer(backend=backend)
    assert scorer.backend == backend
    assert scorer.spec.members == ("mobilenet_v3_small", "shufflenet_v2_x1_0")
    assert scorer.spec.name.endswith("fg-utility-v2") and scorer.spec.score_calibration
    crops = torch.randint(0, 256, (4, scorer.spec.input_size, scorer.spec.input_size, 3), dtype=torch.uint8).numpy()
    scores = scorer.score(crops)
    assert scores.ensemble.shape == (4,) and set(scores.members) == set(scorer.spec.members)
    # random pixels are no face: every one scores below an aligned crop of a real face
    from facegate.capture import CaptureStage

    face = CaptureStage(scorer.spec).analyse(fixtures / "tony_blair_1.jpg").crop
    assert scores.ensemble.max() < scorer.score(face[None]).ensemble[0] - 20
    ckpt = torch.load(default_weights_dir() / "mobilenet_v3_small.pt", weights_only=True)
    assert ckpt["arch"] == "mobilenet_v3_small"


def test_wrong_weights_are_refused(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot load"):
        load_member(path)
    torch.save({"arch": "mobilenet_v3_small", "state_dict": {"x": torch.zeros(1)}}, path)
    with pytest.raises(WeightsError, match="do not fit"):
        load_member(path)
    for backend in ("onnx", "torch"):
        with pytest.raises(WeightsError, match="spec.json"):
            create_scorer(tmp_path, backend=backend)
