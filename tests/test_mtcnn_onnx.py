"""facegate.mtcnn.OnnxMTCNN (onnxruntime + numpy) against facenet-pytorch's MTCNN.

Tolerances (facenet_pytorch.MTCNN(keep_all=True, post_process=False).detect(rgb,
landmarks=True) as reference, min_face_size 20 and 40):

* the same number of faces, on every photo; no face on the no-face photo in either;
* boxes and landmarks within BOX_TOL = 0.01 px, probabilities within PROB_TOL = 1e-5.

The resampling and box arithmetic reproduce facenet-pytorch's float32 computation bit for
bit; what is left is the networks' float32 rounding in onnxruntime against torch (outputs
differ by ~1e-7 relative). Over 1,386 photo/size pairs (LFW, CelebA, camera photos scaled
to 1600 px, 333x177 to 1920x1080 frames; 1,666 faces) the counts always agreed and the
largest differences were 2.4e-4 px for boxes and landmarks and 1.0e-6 for probabilities, so
the tolerances leave a wide margin and still catch any real divergence (a one-pixel shift
anywhere in the pipeline moves boxes by far more).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
LFW = ROOT.parent / "shared" / "data" / "lfw-deepfunneled"
SHIPPED = ROOT / "facegate" / "weights" / "mtcnn"

BOX_TOL = 0.01
PROB_TOL = 1e-5
MIN_FACE_SIZES = (20, 40)
THRESHOLDS = (0.6, 0.7, 0.7)
LFW_PHOTOS = 40
RESCALED = 3  # the first RESCALED LFW photos also at 640x480 and 1280x720


def _rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.fixture(scope="module")
def onnx_mtcnn():
    from facegate.mtcnn import OnnxMTCNN

    return OnnxMTCNN(thresholds=THRESHOLDS, threads=2)


@pytest.fixture(scope="module")
def reference():
    """facenet-pytorch's MTCNN per min_face_size (the nets are shared)."""
    pytest.importorskip("facenet_pytorch")
    import copy

    import torch
    from facenet_pytorch import MTCNN

    base = MTCNN(min_face_size=MIN_FACE_SIZES[0], thresholds=list(THRESHOLDS), keep_all=True,
                 post_process=False)
    base.eval()
    models = {}
    for size in MIN_FACE_SIZES:
        models[size] = copy.copy(base)
        models[size].min_face_size = size

    def detect(rgb: np.ndarray, size: int):
        with torch.inference_mode():
            boxes, probs, points = models[size].detect(rgb, landmarks=True)
        if boxes is None:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        return (np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(probs, np.float64).reshape(-1),
                np.asarray(points, np.float64).reshape(-1, 5, 2))

    return detect


def _compare(onnx_mtcnn, reference, rgb: np.ndarray, name: str) -> int:
    """Asserts agreement at every min_face_size; returns the number of faces found."""
    found = 0
    for size in MIN_FACE_SIZES:
        boxes, probs, points = onnx_mtcnn.detect(rgb, min_face_size=size)
        ref_boxes, ref_probs, ref_points = reference(rgb, size)
        where = f"{name} {rgb.shape[1]}x{rgb.shape[0]} min_face_size={size}"
        assert boxes.shape == (len(ref_boxes), 4), \
            f"{where}: {len(boxes)} faces, facenet-pytorch {len(ref_boxes)}"
        assert probs.shape == (len(ref_boxes),) and points.shape == (len(ref_boxes), 5, 2), where
        assert boxes.dtype == probs.dtype == points.dtype == np.float64, where
        # Same order (largest box first) unless two areas tie to float32 rounding: match each
        # reference face to its nearest face.
        for ref_box, ref_prob, ref_pts in zip(ref_boxes, ref_probs, ref_points):
            k = int(np.argmin(np.abs(boxes - ref_box).max(axis=1)))
            close = np.testing.assert_allclose
            close(boxes[k], ref_box, rtol=0, atol=BOX_TOL, err_msg=f"{where}: box")
            close(points[k], ref_pts, rtol=0, atol=BOX_TOL, err_msg=f"{where}: landmarks")
            close(probs[k], ref_prob, rtol=0, atol=PROB_TOL, err_msg=f"{where}: probability")
        found += len(boxes)
    return found


@pytest.mark.parametrize("name", ["colin_powell_1", "colin_powell_2", "tony_blair_1", "multiface", "no_face"])
def test_matches_facenet_pytorch_on_fixtures(onnx_mtcnn, reference, name):
    rgb = _rgb(FIXTURES / f"{name}.jpg")
    found = _compare(onnx_mtcnn, reference, rgb, name)
    if name == "no_face":
        assert found == 0
    elif name == "multiface":
        assert len(onnx_mtcnn.detect(rgb)[0]) >= 4
    else:
        assert found >= len(MIN_FACE_SIZES)


def _lfw_photos() -> list[Path]:
    """LFW_PHOTOS photos spread evenly over the sorted list of all LFW photos."""
    photos = sorted(LFW.glob("*/*.jpg"))
    step = max(1, len(photos) // LFW_PHOTOS)
    return photos[step // 2::step][:LFW_PHOTOS]


@pytest.mark.skipif(not LFW.is_dir(), reason=f"needs the shared LFW photos in {LFW}")
def test_matches_facenet_pytorch_on_lfw(onnx_mtcnn, reference):
    photos = _lfw_photos()
    assert len(photos) == LFW_PHOTOS
    faces = 0
    for k, path in enumerate(photos):
        rgb = _rgb(path)
        faces += _compare(onnx_mtcnn, reference, rgb, path.name)
        if k < RESCALED:
            for size in ((640, 480), (1280, 720)):
                resized = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
                _compare(onnx_mtcnn, reference, resized, path.name)
    assert faces >= len(photos)  # nearly every LFW photo holds a face; the comparison saw them


def test_outputs_and_arguments(onnx_mtcnn):
    boxes, probs, points = onnx_mtcnn.detect(np.zeros((10, 10, 3), np.uint8))  # below min_face_size
    assert boxes.shape == (0, 4) and probs.shape == (0,) and points.shape == (0, 5, 2)
    boxes, probs, points = onnx_mtcnn.detect(np.full((120, 160, 3), 128, np.uint8))
    assert boxes.shape == (0, 4) and probs.shape == (0,) and points.shape == (0, 5, 2)
    rgb = _rgb(FIXTURES / "colin_powell_1.jpg")
    boxes, probs, points = onnx_mtcnn.detect(rgb[::2, ::2])  # not contiguous
    assert boxes.shape == (1, 4)
    left_eye, right_eye = points[0, 0], points[0, 1]
    assert left_eye[0] < right_eye[0]  # facenet-pytorch's order: the image's left eye first

    from facegate.errors import ConfigError, WeightsError
    from facegate.mtcnn import OnnxMTCNN

    with pytest.raises(ConfigError):
        onnx_mtcnn.detect(rgb.astype(np.float32))
    with pytest.raises(ConfigError):
        onnx_mtcnn.detect(rgb[:, :, 0])
    with pytest.raises(ConfigError):
        onnx_mtcnn.detect(rgb, min_face_size=0)
    with pytest.raises(WeightsError):
        OnnxMTCNN(ROOT / "no-such-folder")


def test_shipped_graphs_metadata():
    pytest.importorskip("facenet_pytorch")
    import hashlib

    from facegate.mtcnn import OnnxMTCNN
    from facegate.mtcnn_export import facenet_version, weights_file

    sources = OnnxMTCNN().sources
    for stem, cls in (("pnet", "PNet"), ("rnet", "RNet"), ("onet", "ONet")):
        assert sources[stem]["facegate_source"] == f"facenet-pytorch {facenet_version()} {cls}"
        digest = hashlib.sha256(weights_file(stem).read_bytes()).hexdigest()
        assert sources[stem]["facegate_weights_sha256"] == digest


def test_export_reproduces_shipped_graphs(tmp_path):
    """export_mtcnn regenerates graphs equal to the shipped ones: same metadata, same outputs
    on random inputs (byte-identical files too with the torch/onnxscript they were made with)."""
    pytest.importorskip("facenet_pytorch")
    pytest.importorskip("onnxscript")
    from facegate.mtcnn_export import export_mtcnn
    from facegate.runtime import load_onnx

    paths = export_mtcnn(tmp_path)
    assert [p.name for p in paths] == ["pnet.onnx", "rnet.onnx", "onet.onnx"]
    rng = np.random.default_rng(0)
    shapes = {"pnet": [(1, 3, 12, 12), (2, 3, 37, 53), (1, 3, 151, 200)],
              "rnet": [(1, 3, 24, 24), (9, 3, 24, 24)],
              "onet": [(1, 3, 48, 48), (5, 3, 48, 48)]}
    for path in paths:
        new, shipped = load_onnx(path), load_onnx(SHIPPED / path.name)
        assert new.get_modelmeta().custom_metadata_map == shipped.get_modelmeta().custom_metadata_map
        assert [o.name for o in new.get_outputs()] == [o.name for o in shipped.get_outputs()]
        for shape in shapes[path.stem]:
            x = rng.uniform(-1.0, 1.0, shape).astype(np.float32)
            for a, b in zip(new.run(None, {"image": x}), shipped.run(None, {"image": x})):
                assert a.shape == b.shape
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


_PROBE = r"""
import importlib, importlib.util, sys, types
from pathlib import Path
root = Path(sys.argv[1])
# facegate/__init__.py imports torch (through the torch-based modules); load facegate's
# errors, runtime and mtcnn modules under a stand-in package instead, so that only what
# facegate.mtcnn itself imports is imported.
package = types.ModuleType("_fg_probe")
package.__path__ = [str(root / "facegate")]
sys.modules["_fg_probe"] = package
mtcnn = importlib.import_module("_fg_probe.mtcnn")
import cv2
rgb = cv2.imread(str(root / "tests" / "fixtures" / "colin_powell_1.jpg"))[:, :, ::-1].copy()
boxes, probs, points = mtcnn.OnnxMTCNN().detect(rgb)
assert boxes.shape == (1, 4), boxes.shape
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "facenet_pytorch"))
assert not loaded, loaded
print("ok")
"""


def test_runtime_imports_no_torch():
    result = subprocess.run([sys.executable, "-c", _PROBE, str(ROOT)], check=False, capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
