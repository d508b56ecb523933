"""Verdicts on real photos (issue: occlusion, the main face, rotation, every face): the
orientation stage, the occlusion components, the other detector's last look, on the fixtures
and, where ../shared is there, on evaluation people's photos no helper was trained on."""

from pathlib import Path

import numpy as np
import pytest

from facegate import Gate, Status
from facegate.capture import CaptureSettings, CaptureStage
from facegate.errors import WeightsError
from facegate.images import load_rgb
from facegate.orientation import OrientationModel
from train.studies.decisions import _iou, eyes_band, face_mask, skin_patch, sunglasses, with_bystander

PHOTOS = ("colin_powell_1", "colin_powell_2", "tony_blair_1")


@pytest.fixture(scope="module")
def enrol():
    return Gate(threads=2, profile="enrollment")


@pytest.fixture(scope="module")
def photos(fixtures):
    return {name: load_rgb(fixtures / f"{name}.jpg") for name in PHOTOS}


def _turned(rgb, turn):
    """``rgb`` turned counter-clockwise so that it needs ``turn`` degrees clockwise."""
    return np.ascontiguousarray(np.rot90(rgb, k=turn // 90))


def test_upright_photos_are_upright_and_turned_ones_name_the_turn_that_fixes_them(photos):
    model = OrientationModel()
    for rgb in photos.values():
        assert model(rgb).turn == 0
        for turn in (90, 180, 270):
            assert model(_turned(rgb, turn)).turn == turn


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_a_turned_photo_is_rejected_as_rotated_with_the_turn_and_assessed_upright(gate, photos, turn):
    for rgb in photos.values():
        result = gate.assess(_turned(rgb, turn), color_order="rgb")
        assert result.status is Status.REJECTED and "rotated" in result.reasons
        assert result.found_by == f"turned {turn}"
        assert f"turning {turn} degrees clockwise" in result.prompt
        upright = gate.assess(rgb, color_order="rgb")
        # the faces were searched on the upright copy: the same face, nearly the same score
        assert abs(result.score - upright.score) < 5


def _head_tilted(rgb, face, angle):
    """``rgb`` with the head turned ``angle`` degrees about its centre inside a soft ellipse,
    the shoulders and the scene left upright: a head tilt, not a turned photo."""
    import cv2

    h, w = rgb.shape[:2]
    centre = tuple(float(v) for v in np.mean(face.landmarks, 0))
    turned = cv2.warpAffine(rgb, cv2.getRotationMatrix2D(centre, angle, 1.0), (w, h), borderMode=cv2.BORDER_REFLECT)
    mask = np.zeros((h, w), np.float32)
    side = face.box[2] - face.box[0]
    cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (int(0.8 * side), int(0.95 * side)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.1 * side)[..., None]
    return (turned * mask + rgb * (1 - mask)).astype(np.uint8)


def test_a_tilted_head_in_an_upright_photo_is_not_a_turned_photo(gate, photos):
    """A head tilted 40 degrees either way, the shoulders and the scene upright: never
    ``rotated``; the roll says the tilt."""
    for rgb in photos.values():
        face = gate.assess(rgb, color_order="rgb").face
        for angle in (40, -40):
            result = gate.assess(_head_tilted(rgb, face, angle), color_order="rgb")
            assert "rotated" not in result.reasons
            assert result.face is not None and abs(abs(result.components.value("roll")) - abs(angle)) < 12


def test_without_the_orientation_stage_a_face_only_found_turned_still_reads_as_rotated(photos):
    gate = Gate(threads=2, capture=CaptureSettings(orientation=False))
    result = gate.assess(_turned(photos["colin_powell_1"], 90), color_order="rgb")
    assert "rotated" in result.reasons and result.found_by == "turned 90"


@pytest.mark.parametrize("draw,reason", [(eyes_band, "eyes_covered"), (sunglasses, "eyes_covered"),
                                         (skin_patch, "mouth_covered"), (face_mask, "mouth_covered")])
def test_covered_eyes_or_mouth_are_named_with_a_prompt_and_lower_the_score(gate, enrol, photos, draw, reason):
    rng = np.random.default_rng(0)
    for rgb in photos.values():
        clean = gate.assess(rgb, color_order="rgb")
        covered = draw(rgb, clean.face.landmarks, rng)
        result = enrol.assess(covered, color_order="rgb")
        assert reason in result.reasons, (draw.__name__, result.reasons)
        assert result.prompt is not None
        assert gate.assess(covered, color_order="rgb").score < clean.score


def test_the_prompts_say_what_to_uncover(photos, gate):
    """Under the default profile (the fixtures pass its framing), the first reason of a copy
    with its eyes or mouth covered is the occlusion, and its prompt says what to uncover."""
    rng = np.random.default_rng(1)
    rgb = photos["tony_blair_1"]
    face = gate.assess(rgb, color_order="rgb").face
    eyes = gate.assess(sunglasses(rgb, face.landmarks, rng), color_order="rgb")
    mouth = gate.assess(face_mask(rgb, face.landmarks, rng), color_order="rgb")
    assert "eyes_covered" in eyes.reasons and "sunglasses" in eyes.prompt
    assert "mouth_covered" in mouth.reasons and "mouth" in mouth.prompt


def test_clean_dark_and_blurred_photos_are_not_called_covered(enrol, photos):
    """Light and focus are not occlusion: the occlusion components stay high on the fixtures
    and on darkened and blurred copies of them."""
    import cv2

    for rgb in photos.values():
        for copy in (rgb, (255 * (rgb / 255.0) ** 2.2).astype(np.uint8), cv2.GaussianBlur(rgb, (0, 0), 2.0)):
            result = enrol.assess(copy, color_order="rgb")
            assert result.components is not None
            for name in ("eyes_visible", "mouth_visible"):
                assert result.components.value(name) > 0.6, (name, result.components.value(name))
            assert not {"eyes_covered", "mouth_covered", "face_occluded"} & set(result.reasons)


def test_the_occlusion_components_carry_units_and_iso_names(gate, photos):
    result = gate.assess(photos["colin_powell_1"], color_order="rgb")
    record = result.components.to_dict()
    assert record["eyes_visible"]["iso"] == "Eyes visible" and record["eyes_visible"]["unit"] == "share"
    assert record["mouth_visible"]["iso"] == "Mouth occlusion prevention"
    assert record["face_visible"]["iso"] == "Face occlusion prevention"
    assert all(0 <= record[n]["quality"] <= 100 for n in ("eyes_visible", "mouth_visible", "face_visible"))


def test_a_missing_helper_is_named(tmp_path):
    with pytest.raises(WeightsError, match="orientation.json"):
        OrientationModel(tmp_path)


def test_a_smaller_bystander_at_the_edge_keeps_the_main_person_and_the_decision(gate, photos):
    rng = np.random.default_rng(0)
    names = list(photos)
    for k, name in enumerate(names):
        rgb, other = photos[name], photos[names[(k + 1) % len(names)]]
        base = gate.assess(rgb, color_order="rgb")
        other_face = gate.assess(other, color_order="rgb").face
        for _ in range(3):
            after = gate.assess(with_bystander(rgb, base.face, other, other_face, rng), color_order="rgb")
            assert _iou(after.face.box, base.face.box) > 0.9
            assert after.status is base.status


# -- the photos the issue names, and evaluation people ------------------------------------------------
NAMED = {
    "celeba-subset/7249/008804.jpg": "an upright frontal face, once chosen as a 0.745 box and called rotated",
    "celeba-subset/7273/191365.jpg": "a drummer behind cymbals, once no_face",
    "celeba-subset/7422/018884.jpg": "a hand near the face, once no_face",
}


@pytest.mark.parametrize("photo", sorted(NAMED))
def test_the_named_photos(gate, shared, photo):
    result = gate.assess(shared / "data" / photo)
    assert result.status is not Status.NO_FACE, NAMED[photo]
    assert "rotated" not in result.reasons, NAMED[photo]
    if photo.endswith("008804.jpg"):
        assert result.status is Status.ACCEPTED


def test_turned_evaluation_photos_are_never_accepted_and_mostly_name_the_turn(gate, shared):
    """30 CelebA evaluation photos (identities no helper saw), each turned three ways."""
    from train.studies.decisions import evaluation_photos

    photos = evaluation_photos(shared, 30, seed=3)[30:]
    named = accepted = total = upright_rotated = 0
    for path in photos:
        rgb = load_rgb(path)
        upright_rotated += "rotated" in gate.assess(rgb, color_order="rgb").reasons
        for turn in (90, 180, 270):
            result = gate.assess(_turned(rgb, turn), color_order="rgb")
            total += 1
            accepted += result.status is Status.ACCEPTED
            named += result.found_by == f"turned {turn}" and "rotated" in result.reasons
    assert accepted <= 0.05 * total
    assert named >= 0.85 * total
    assert upright_rotated <= 1


def test_a_stage_without_components_loads_no_occlusion_helper():
    stage = CaptureStage(settings=CaptureSettings(components=False, orientation=False))
    assert stage.occlusion is None and stage.orienter is None
