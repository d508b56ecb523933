"""Behaviour of the whole gate on real photos with the shipped weights."""

import math

import cv2
import numpy as np
import pytest
from PIL import Image

from facegate import Gate, Policy, Status
from train.degradations import downscale, gamma, gaussian_blur


def test_sharp_face_scores_higher_than_its_degraded_copies(gate, face_rgb):
    sharp = gate.assess(face_rgb, color_order="rgb")
    assert sharp.status in (Status.ACCEPTED, Status.REJECTED) and sharp.face is not None
    for degraded in (gaussian_blur(face_rgb, 3.0), gamma(face_rgb, 3.0),
                     downscale(face_rgb, 24.0 / sharp.face.eye_distance)):
        result = gate.assess(degraded, color_order="rgb")
        assert result.score is None or result.score < sharp.score


def test_a_clean_studio_like_face_is_accepted(gate, fixtures):
    result = gate.assess(fixtures / "tony_blair_1.jpg")
    assert result.status is Status.ACCEPTED, result
    assert result.score >= gate.policy.min_score and set(result.member_scores) == set(gate.spec.members)


def test_group_photo_is_rejected_for_multiple_faces(gate, fixtures):
    result = gate.assess(fixtures / "multiface.jpg")
    assert result.status is Status.REJECTED and "multiple_faces" in result.reasons
    assert len(result.faces) == 6


def test_no_face(gate, fixtures):
    result = gate.assess(fixtures / "no_face.jpg")
    assert result.status is Status.NO_FACE and result.score is None and result.face is None


def test_batch_goes_on_past_bad_inputs_and_keeps_order(gate, fixtures, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff" + b"garbage" * 10)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    inputs = [fixtures / "colin_powell_1.jpg", corrupt, empty, fixtures / "no_face.jpg", fixtures / "colin_powell_2.jpg"]
    results = list(Gate(batch_size=2).assess_many(inputs))  # chunks split across bad inputs
    assert [r.source for r in results] == [str(p) for p in inputs]
    assert [r.status for r in results][1:4] == [Status.UNREADABLE, Status.UNREADABLE, Status.NO_FACE]
    assert "empty file" in results[2].error and results[1].error
    for r in results:
        assert r.score is None or math.isfinite(r.score)
        assert isinstance(r.to_dict()["status"], str)


def test_same_result_from_path_pil_and_bgr_array(gate, fixtures):
    path = fixtures / "colin_powell_2.jpg"
    a = gate.assess(path)
    b = gate.assess(Image.open(path))
    c = gate.assess(cv2.imread(str(path)), color_order="bgr")
    assert a.score == pytest.approx(b.score, abs=1e-4) == pytest.approx(c.score, abs=1e-4)


def test_batched_and_single_scores_agree(gate, fixtures):
    paths = [fixtures / n for n in ("colin_powell_1.jpg", "colin_powell_2.jpg", "tony_blair_1.jpg")]
    batched = [r.score for r in gate.assess_many(paths)]
    single = [gate.assess(p).score for p in paths]
    assert np.allclose(batched, single, atol=1e-3)


def test_aligned_crops_score_without_detection(gate, fixtures, face_rgb):
    face = gate.assess(face_rgb, color_order="rgb").face
    crop = gate.spec.crop(face_rgb, face.landmarks)
    scores = gate.score_crops([crop, gaussian_blur(crop, 3.0)], color_order="rgb")
    assert scores.shape == (2,) and scores[1] < scores[0]
    assert scores[0] == pytest.approx(gate.assess(face_rgb, color_order="rgb").score, abs=1e-3)


def test_policy_threshold_changes_the_decision(fixtures):
    path = fixtures / "colin_powell_1.jpg"
    strict = Gate(policy=Policy(min_score=100.0), views="none").assess(path)
    lenient = Gate(policy=Policy(min_score=0.0), views="none").assess(path)
    assert strict.status is Status.REJECTED and "low_quality" in strict.reasons
    assert lenient.status is Status.ACCEPTED


def test_views_are_configurable(fixtures):
    path = fixtures / "colin_powell_1.jpg"
    scores = {v: Gate(views=v).assess(path).score for v in ("none", "flip", "full")}
    assert len({round(s, 4) for s in scores.values()}) > 1


def test_yunet_backend_end_to_end(fixtures):
    yunet = Gate(detector="yunet")
    result = yunet.assess(fixtures / "colin_powell_1.jpg")
    assert result.face is not None and result.score is not None
    assert yunet.assess(fixtures / "no_face.jpg").status is Status.NO_FACE


def test_prefetch_workers_keep_order_and_results(gate, fixtures, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"x")
    paths = sorted(fixtures.glob("*.jpg")) + [bad] + sorted(fixtures.glob("*.jpg"))
    serial = list(gate.assess_many(paths))
    overlapped = list(Gate(workers=2, batch_size=3).assess_many(paths))
    assert [r.source for r in overlapped] == [str(p) for p in paths]
    for a, b in zip(serial, overlapped):
        assert a.status == b.status
        assert (a.score is None and b.score is None) or a.score == pytest.approx(b.score, abs=1e-3)


def test_crops_aligned_as_recognition_pipelines_hold_them_score_as_from_the_photo(gate, fixtures):
    """A 112 x 112 crop on the ArcFace five-point template (what a recognition pipeline
    already holds) scores as the gate scores the same face from the whole photo, for
    weights trained on that framing (spec margin 0)."""
    from facegate.alignment import ARCFACE_112, warp_to_template

    if gate.spec.margin != 0:
        pytest.skip(f"the shipped weights ({gate.spec.name}) use margin {gate.spec.margin}, not the ArcFace framing")
    from facegate.images import load_rgb

    full, crops = [], []
    for path in sorted(fixtures.glob("*.jpg")):
        result = gate.assess(path)
        if result.face is None:
            continue
        full.append(result.score)
        crops.append(warp_to_template(load_rgb(path), result.face.landmarks, ARCFACE_112, (112, 112)))
    assert len(crops) >= 4
    aligned = gate.score_crops(crops, color_order="rgb")
    assert np.abs(aligned - np.array(full)).max() < 5.0, (aligned, full)


def test_every_face_of_a_group_photo_is_decided_alone(gate, fixtures, tmp_path):
    """all_faces=True: a decision per face, the main one marked, none rejected for the
    others being there; a face blurred in the photo is the one rejected; the capture's own
    decision is what it is without all_faces."""
    import cv2

    group = fixtures / "multiface.jpg"
    plain, every = gate.assess(group), gate.assess(group, all_faces=True)
    assert plain.every_face is None and "every_face" not in plain.to_dict()
    assert (every.status, every.reasons, every.score) == (plain.status, plain.reasons, plain.score)
    assert len(every.every_face) == len(every.faces) >= 4
    assert [f.face.box for f in every.every_face] == [f.box for f in every.faces]
    assert sum(f.primary for f in every.every_face) == 1
    main = next(f for f in every.every_face if f.primary)
    assert main.face.box == every.face.box and abs(main.score - every.score) < 0.05
    assert all("multiple_faces" not in f.reasons for f in every.every_face)
    assert all(f.status.value == "accepted" for f in every.every_face)
    # blur one face (not the main one) hard: that face alone is rejected
    bgr = cv2.imread(str(group))
    victim = next(f for f in every.every_face if not f.primary).face
    x1, y1, x2, y2 = (int(round(v)) for v in victim.box)
    bgr[y1:y2, x1:x2] = cv2.GaussianBlur(bgr[y1:y2, x1:x2], (0, 0), 6)
    cv2.imwrite(str(tmp_path / "group.jpg"), bgr)
    blurred = gate.assess(tmp_path / "group.jpg", all_faces=True)
    by_box = {tuple(round(v) for v in f.face.box): f for f in blurred.every_face}
    hit = min(by_box, key=lambda b: sum(abs(p - q) for p, q in zip(b, (x1, y1, x2, y2))))
    assert by_box[hit].status.value == "rejected" and by_box[hit].prompt
    assert sum(f.status.value == "rejected" for f in blurred.every_face) == 1
    # no face, or no image: an empty list, not a missing one
    assert gate.assess(fixtures / "no_face.jpg", all_faces=True).every_face == ()
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    assert gate.assess(tmp_path / "broken.jpg", all_faces=True).every_face == ()
