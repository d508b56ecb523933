"""The ImageNet start for MobileNetV3-Small (train.imagenet): the TFLite model read into
torchvision's architecture, checked against a TFLite interpreter, the input scaling folded in,
batch norms refitted without changing the network, and a release's distillation started from it."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tflite", reason="train.imagenet reads the TFLite file with the tflite package (the train extra)")

from facegate.models import build_member, load_backbone_weights, to_tensor  # noqa: E402
from facegate.spec import ScorerSpec  # noqa: E402
from train import imagenet  # noqa: E402


@pytest.fixture(scope="module")
def tflite_file(shared):
    path = shared / "models" / imagenet.TFLITE_FILE
    if not path.exists():
        pytest.skip(f"{path} is not there (../shared/models holds it)")
    return path


def _lfw_photos(shared, n):
    return sorted((shared / "data" / "lfw-deepfunneled").rglob("*.jpg"))[::97][:n]


def test_the_mapping_gives_the_interpreters_classes_and_tf_padding_matters(tflite_file, shared):
    pytest.importorskip("ai_edge_litert", reason="the interpreter check needs ai-edge-litert (the dev extra)")
    photos = _lfw_photos(shared, 12)
    same = imagenet.check(tflite_file, photos, tf_pad=True)
    symmetric = imagenet.check(tflite_file, photos, tf_pad=False)
    # the interpreter computes in uint8: its own answer moves under 2 grey levels of noise, so
    # exact agreement is not expected; a wrong mapping (a transposed kernel, a shifted class
    # index, a missing bias) gives chance-level agreement and correlation near 0
    assert same["top1_in_tflite_top5"] >= 0.75
    assert same["probability_correlation"] >= 0.75
    assert same["probability_correlation"] > symmetric["probability_correlation"]


def test_the_spec_input_scaling_is_folded_into_the_first_convolution(tflite_file):
    spec = ScorerSpec()
    plain, folded = imagenet.from_tflite(tflite_file), imagenet.from_tflite(tflite_file)
    imagenet.fold_input_scaling(folded, spec.mean, spec.std)
    pixels = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 255
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        expected = plain((pixels - 128) / 127)
        got = folded((pixels / 255 - mean) / std)
    # exact away from the border; the zero padding of the first convolution differs there
    assert np.corrcoef(expected.flatten(), got.flatten())[0, 1] > 0.999


def test_refitted_batch_norms_keep_the_network_and_make_train_mode_agree(tflite_file, fixtures):
    from facegate.detection import MTCNNDetector, choose_primary
    from facegate.images import load_rgb

    spec = ScorerSpec()
    det = MTCNNDetector()
    crops = []
    for name in ("colin_powell_1", "colin_powell_2", "tony_blair_1"):
        rgb = load_rgb(fixtures / f"{name}.jpg")
        crops.append(spec.crop(rgb, choose_primary(det.detect(rgb), rgb.shape).landmarks, spec.input_size))
    x = to_tensor(spec, np.stack(crops * 4))
    net = imagenet.from_tflite(tflite_file)
    features = net.features
    with torch.inference_mode():
        before = features.eval()(x).clone()
        identity_train = copy.deepcopy(features).train()(x)  # train mode also moves the running statistics
    assert imagenet.refit_batch_norm(features, [x]) == 34
    with torch.inference_mode():
        after = features.eval()(x)
        train_mode = copy.deepcopy(features).train()(x)
    assert torch.allclose(after, before, atol=1e-3)
    # with identity statistics, train mode is another network; refitted, it is this one
    assert (identity_train - before).abs().mean() > 10 * (train_mode - before).abs().mean()


@pytest.mark.training
def test_a_release_distills_mobilenet_from_the_imagenet_start(tmp_path, fixtures, shared, tflite_file):
    """``distillation.imagenet``: the release writes the ImageNet backbone once, MobileNetV3-Small's
    distillation starts from it (recorded), ShuffleNetV2 from scratch, and the terms name ImageNet."""
    from test_training import make_dataset

    from train.distill import DistillConfig, distill
    from train.recipe import IMAGENET_TERMS, SHIPPED
    from train.release import LABELS, Release

    recipe = SHIPPED.with_settings(["members.stages=48:1:1", "resolution.stages=48:1:1", "distillation.imagenet=true"])
    release = Release(recipe, shared, tmp_path / "work", tmp_path / "out")
    (tmp_path / "work" / LABELS).mkdir(parents=True)
    make_dataset(tmp_path / "work" / LABELS, fixtures)
    starts = release.imagenet_starts()
    assert set(starts) == {"mobilenet_v3_small"}
    start = starts["mobilenet_v3_small"]
    made = start.stat().st_mtime_ns
    assert release.imagenet_starts()["mobilenet_v3_small"].stat().st_mtime_ns == made  # made once
    assert IMAGENET_TERMS in recipe.weights_spec().terms
    assert IMAGENET_TERMS not in SHIPPED.with_setting("distillation.imagenet", "false").weights_spec().terms

    net, scratch = build_member("mobilenet_v3_small"), build_member("mobilenet_v3_small")
    load_backbone_weights(net, str(start))
    first = net.features[0][0].weight
    assert not torch.allclose(first, scratch.features[0][0].weight)
    cfg = DistillConfig(csv=release.csv, recognizer=release.teacher_checkpoint, arch="mobilenet_v3_small",
                        out=tmp_path / "distilled", size=48, epochs=1, batch_size=8, val_fraction=0.34, start=start)
    distill(cfg, log=lambda *_: None)
    record = (tmp_path / "distilled" / "mobilenet_v3_small.distill.json").read_text()
    assert str(start) in record
