"""One capture pipeline, a torch-free default runtime, and result types with value semantics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facegate import Capture, CaptureResult, CaptureSettings, CaptureStage, Face, Gate, analyse
from facegate.spec import ScorerSpec
from tests.conftest import ROOT, needs_shared

HEAVY = ("torch", "torchvision", "facenet_pytorch")


def _heavy_modules_after(code: str) -> list[str]:
    script = code + "\nimport sys, json\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & %r)))" % (
        set(HEAVY),)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_default_paths_never_import_torch(fixtures):
    """`import facegate`, the Gate API with each detector, and the score, filter and
    calibrate --reject-rate commands run without torch, torchvision or facenet-pytorch."""
    photo = fixtures / "colin_powell_1.jpg"
    assert _heavy_modules_after("import facegate") == []
    assert _heavy_modules_after(
        f"from facegate import Gate\n"
        f"for d in ('mtcnn', 'yunet'):\n"
        f"    r = Gate(detector=d, threads=1).assess({str(photo)!r})\n"
        f"    assert r.score is not None, r") == []
    cli = ("from facegate.cli import main\n"
           "def run(args):\n"
           "    try:\n"
           "        main(args, standalone_mode=False)\n"
           "    except SystemExit as exc:\n"
           "        assert exc.code in (0, None), exc\n")
    assert _heavy_modules_after(cli + f"run(['score', {str(fixtures)!r}, '--threads', '1'])") == []


def test_cli_filter_and_calibrate_never_import_torch(fixtures, tmp_path):
    code = ("from facegate.cli import main\n"
            "for args in ([%r, %r, '--accepted', %r, '--rejected', %r, '--threads', '1'],"
            " ['calibrate', %r, '--reject-rate', '0.2', '--out', %r, '--threads', '1', '--allow-small-sample']):\n"
            "    try:\n"
            "        main(args, standalone_mode=False)\n"
            "    except SystemExit as exc:\n"
            "        assert exc.code in (0, None), (args, exc)\n") % (
        "filter", str(fixtures), str(tmp_path / "a"), str(tmp_path / "r"), str(fixtures), str(tmp_path / "p.json"))
    assert _heavy_modules_after(code) == []
    assert (tmp_path / "p.json").is_file() and any((tmp_path / "a").iterdir())


def test_every_public_name_resolves():
    import facegate

    for name in facegate.__all__:
        assert getattr(facegate, name) is not None, name
    assert set(facegate.__all__) - {"__version__"} == set(facegate._EXPORTS)
    with pytest.raises(AttributeError):
        facegate.NoSuchThing


def test_gate_is_the_capture_stage_then_score_then_decide(gate, fixtures):
    """The gate's faces and crops are exactly what the public capture stage gives."""
    for path in sorted(fixtures.glob("*.jpg")):
        capture = analyse(path)
        result = gate.assess(path)
        assert result.faces == capture.faces and result.face == capture.primary
        assert result.image_size == capture.image_size
        if capture.crop is not None:
            assert result.score == pytest.approx(float(gate.scorer.score(capture.crop[None]).ensemble[0]), abs=1e-9)
        else:
            assert result.score is None


def test_bad_input_gives_a_capture_with_the_cause(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    capture = CaptureStage().analyse(bad)
    assert capture.rgb is None and capture.crop is None and "cannot decode" in capture.error
    assert capture.source == str(bad)


def test_detector_settings_come_from_the_spec(tmp_path):
    spec = ScorerSpec.load(Path(__file__).resolve().parents[1] / "facegate" / "weights" / "spec.json")
    for name in ("mtcnn", "yunet"):
        stage = CaptureStage(spec, CaptureSettings(detector=name))
        assert stage.detector_name == name
        assert stage.detector_settings == spec.detector_settings(name)
        gate_policy = Gate(detector=name, threads=1).policy
        assert gate_policy.min_face_probability == spec.detector_settings(name)["min_face_probability"]
    stricter = spec.with_(detectors={**spec.detectors, "mtcnn": {**spec.detectors["mtcnn"], "thresholds": [0.6, 0.7, 0.99]}})
    assert CaptureStage(stricter).detector.thresholds == (0.6, 0.7, 0.99)


def test_results_compare_and_hash_by_value(gate, fixtures):
    path = fixtures / "multiface.jpg"
    a, b = gate.assess(path), gate.assess(path)
    assert a is not b and a == b and hash(a) == hash(b)
    assert a.face in a.faces and len(set(a.faces)) == len(a.faces) == 6
    other = gate.assess(fixtures / "colin_powell_1.jpg")
    assert a != other and other in [a, other] and len({a, b, other}) == 2
    face = a.faces[0]
    moved = Face(face.box, face.probability, face.landmarks + 1.0)
    assert moved != face and Face(face.box, face.probability, face.landmarks.copy()) == face
    with pytest.raises(ValueError):
        face.landmarks[0, 0] = 0.0  # frozen all the way down
    c1, c2 = analyse(path), analyse(path)
    assert isinstance(c1, Capture) and c1 == c2 and hash(c1) == hash(c2)


def test_to_dict_agrees_with_the_attributes(gate, fixtures):
    result = gate.assess(fixtures / "multiface.jpg")
    d = result.to_dict()
    assert d["faces"] == [f.to_dict() for f in result.faces] and len(d["faces"]) == len(result.faces)
    assert d["face"] == result.face.to_dict() and d["status"] == result.status.value
    assert set(d) == {f for f in CaptureResult.__dataclass_fields__} - {"every_face"}  # only when asked for
    assert d["image_size"] == list(result.image_size)
    every = gate.assess(fixtures / "multiface.jpg", all_faces=True).to_dict()
    assert set(every) == set(CaptureResult.__dataclass_fields__) and len(every["every_face"]) == len(d["faces"])


def test_threads_are_chosen_once_and_shared_among_workers(fixtures):
    import cv2

    gate = Gate(threads=2, workers=1)
    assert cv2.getNumThreads() == 2
    for session in gate.scorer._sessions:  # caller and worker may each run one at a time
        assert session.get_session_options().intra_op_num_threads == 1
    results = list(gate.assess_many(sorted(fixtures.glob("*.jpg"))))
    assert [r.status for r in results] == [Gate(threads=2).assess(p).status for p in sorted(fixtures.glob("*.jpg"))]


@needs_shared
def test_torch_and_default_paths_decide_alike_on_lfw_test_photos(shared):
    """The same decisions from backend='torch' (facenet-pytorch, PyTorch) and the default
    (onnxruntime) on LFW photos of evaluation people, scores within 0.1 points."""
    from train.lfw import evaluation_people

    lfw = shared / "data" / "lfw-deepfunneled"
    photos = [sorted((lfw / name).glob("*.jpg"))[0] for name in sorted(evaluation_people(shared))[::50]]
    assert len(photos) >= 30
    onnx, torch_ = Gate(threads=2), Gate(threads=2, backend="torch")
    for a, b in zip(onnx.assess_many(photos), torch_.assess_many(photos)):
        assert a.status == b.status and a.reasons == b.reasons, (a.source, a.reasons, b.reasons)
        assert len(a.faces) == len(b.faces), a.source
        if a.score is not None:
            assert abs(a.score - b.score) < 0.1, (a.source, a.score, b.score)
            assert np.abs(a.face.landmarks - b.face.landmarks).max() < 0.02 * a.face.eye_distance
