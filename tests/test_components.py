"""Quality components on real photos with known manipulations, profiles, reasons and
prompts, and looking again when the first detection finds no face."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np

from facegate.capture import CaptureSettings
import pytest
from click.testing import CliRunner
from PIL import Image

from facegate import Gate, Policy, Status
from facegate.capture import CaptureStage
from facegate.cli import main
from facegate.components import COMPONENTS, measure_components
from facegate.errors import ConfigError
from facegate.images import load_rgb
from facegate.policy import PROFILES, PROMPTS, REASONS, Requirement, explain

from tests.conftest import needs_shared


@pytest.fixture(scope="module")
def stage():
    return CaptureStage(threads=2)


@pytest.fixture(scope="module")
def photo(fixtures):
    return load_rgb(fixtures / "colin_powell_1.jpg")


def components_of(stage, rgb):
    capture = stage.analyse_rgb(np.ascontiguousarray(rgb))
    assert capture.primary is not None, "the detector must find the face for this check"
    return capture.components


def test_every_component_has_a_value_in_range_and_an_iso_name(stage, photo):
    components = components_of(stage, photo)
    assert [c.name for c in components] == list(COMPONENTS)
    for c in components:
        assert c.value is not None and math.isfinite(c.value), c
        assert 0.0 <= c.quality <= 100.0, c
    assert sum(c.iso is not None for c in components) >= 17
    record = components.to_dict()
    assert record["yaw"]["unit"] == "degrees" and record["yaw"]["iso"] == "Head pose yaw"


def test_in_plane_rotation_reads_as_roll(stage, photo):
    upright = components_of(stage, photo).value("roll")
    turned = components_of(stage, Image.fromarray(photo).rotate(20, resample=Image.BILINEAR))
    assert turned.value("roll") - upright == pytest.approx(20.0, abs=4.0)


def test_a_mirrored_photo_flips_the_sign_of_yaw(stage, fixtures):
    rgb = load_rgb(fixtures / "tony_blair_1.jpg")  # head visibly turned
    yaw = components_of(stage, rgb).value("yaw")
    mirrored = components_of(stage, rgb[:, ::-1]).value("yaw")
    assert abs(yaw) > 15
    assert np.sign(mirrored) == -np.sign(yaw) and abs(mirrored + yaw) < 6


@needs_shared
def test_pose_on_photos_with_visibly_turned_heads(shared, stage):
    """Photos checked by eye: heads turned towards the image's left or right, chin up,
    head down, and a frontal one."""
    lfw = shared / "data" / "lfw-deepfunneled"
    pose = lambda name: components_of(stage, load_rgb(lfw / name.rsplit("_", 1)[0] / f"{name}.jpg"))  # noqa: E731
    assert pose("Alastair_Campbell_0002").value("yaw") < -25  # turned towards the image's left
    assert pose("Donald_Rumsfeld_0005").value("yaw") < -25
    assert pose("Colin_Montgomerie_0004").value("yaw") > 25  # turned towards the image's right
    assert pose("Will_Ofenheusle_0001").value("pitch") > 15  # chin up
    assert pose("Nathan_Lane_0002").value("pitch") < -15  # head down
    frontal = pose("George_W_Bush_0010")
    assert abs(frontal.value("yaw")) < 20 and abs(frontal.value("pitch")) < 10


def test_a_chin_out_of_the_frame_is_cut_off(stage, photo):
    whole = components_of(stage, photo)
    cut = components_of(stage, photo[:150])
    assert whole.value("margin_bottom") > 0.5 and cut.value("margin_bottom") < 0
    assert cut["margin_bottom"].quality < 50 < whole["margin_bottom"].quality
    assert cut.value("margin_top") > 0  # the other sides are untouched


def test_exposure_uniformity_compression_and_sharpness_follow_the_manipulation(stage, photo):
    base = components_of(stage, photo)
    dark = components_of(stage, (255 * (photo / 255.0) ** 3).astype(np.uint8))
    assert dark.value("under_exposure") > base.value("under_exposure") + 0.1
    assert dark["under_exposure"].quality < base["under_exposure"].quality

    uneven = components_of(stage, _left_half_shaded(photo, stage))
    assert uneven.value("illumination_uniformity") < 0.5 < base.value("illumination_uniformity")
    assert uneven["illumination_uniformity"].detail.startswith("left")

    _, data = cv2.imencode(".jpg", photo[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 5])
    blocky = components_of(stage, cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])
    assert blocky.value("compression") > 2.0 > base.value("compression") + 0.5

    blurred = components_of(stage, cv2.GaussianBlur(photo, (0, 0), 3))
    assert blurred.value("sharpness") < base.value("sharpness") - 0.5

    burnt = components_of(stage, np.clip(photo.astype(int) * 2.2, 0, 255).astype(np.uint8))
    assert burnt.value("over_exposure") > 0.3 > base.value("over_exposure")


def _left_half_shaded(rgb, stage, factor=0.3):
    """The image left of the face's centre line at ``factor`` of its brightness."""
    centre = int(stage.analyse_rgb(rgb).primary.landmarks[:, 0].mean())
    shaded = rgb.copy()
    shaded[:, :centre] = (shaded[:, :centre] * factor).astype(np.uint8)
    return shaded


def test_what_cannot_be_measured_is_none_with_a_cause_never_nan(stage, photo):
    capture = stage.analyse_rgb(photo)
    face = capture.primary
    # a face mostly outside the image: image measures cannot be taken
    x_shift = face.landmarks[:, 0].max() + 5
    moved = type(face)((face.box[0] - x_shift, face.box[1], face.box[2] - x_shift, face.box[3]), face.probability,
                       face.landmarks - np.array([x_shift, 0.0]))
    components = measure_components(photo, moved)
    assert components["sharpness"].value is None and "inside the image" in components["sharpness"].cause
    assert components["compression"].value is None and components["compression"].cause
    for c in components:
        assert c.value is None or math.isfinite(c.value)
        assert (c.quality is None) == (c.value is None)
    assert json.dumps(components.to_dict())  # JSON without NaN


def test_profiles_decide_on_components(fixtures):
    path = fixtures / "colin_powell_1.jpg"  # 250 px LFW photo, about 45 px between the eyes
    default = Gate(threads=2, views="none")
    verification = default.assess(path)
    enrollment = Gate(threads=2, views="none", profile="enrollment").assess(path)
    assert default.policy.profile == "verification" and verification.status is Status.ACCEPTED
    assert enrollment.status is Status.REJECTED and "face_too_small" in enrollment.reasons
    assert enrollment.prompt == PROMPTS["face_too_small"]
    assert set(enrollment.reasons) <= set(REASONS)
    assert enrollment.to_dict()["components"]["inter_eye_distance"]["value"] < 90


def test_every_failed_requirement_is_a_reason_with_one_prompt(fixtures, stage):
    shaded = _left_half_shaded(load_rgb(fixtures / "colin_powell_2.jpg"), stage)  # yaw about 9 degrees
    policy = Policy(min_score=0.0, requirements={"illumination_uniformity": {"min": 0.6}, "yaw": {"max_abs": 5.0},
                                                 "inter_eye_distance": {"min": 20.0}})
    result = Gate(threads=2, views="none", policy=policy).assess(shaded, color_order="rgb")
    assert result.status is Status.REJECTED
    assert set(result.reasons) == {"uneven_light", "head_turned"}
    assert result.prompt.startswith("more light on the left side")  # light before pose


def test_a_low_score_with_no_weak_component_says_so():
    good = measure_components(np.full((200, 200, 3), 128, np.uint8), _frontal_face())
    cause, prompt = explain(("low_quality",), None)
    assert cause == "low_quality" and "none of the measured components" in prompt
    assert explain((), good) is None


def _frontal_face():
    from facegate.detection import Face

    lm = np.array([[80, 90], [120, 90], [100, 112], [84, 134], [116, 134]], float)
    return Face((60, 50, 140, 160), 0.99, lm)


def test_a_policy_file_changes_a_profile(tmp_path):
    path = tmp_path / "site.json"
    path.write_text(json.dumps({"facegate_policy": 1, "profile": "enrollment", "min_eye_distance": 60,
                                "requirements": {"yaw": {"max_abs": 20}}}))
    policy = Policy.load(path)
    assert policy.profile == "enrollment" and policy.min_eye_distance == 60
    assert policy.requirement("yaw") == Requirement("yaw", max_abs=20)
    assert policy.requirement("pitch") == PROFILES["enrollment"].requirement("pitch")  # the rest kept
    saved = tmp_path / "saved.json"
    policy.save(saved)
    assert Policy.load(saved) == policy
    with pytest.raises(ConfigError, match="profile"):
        Policy.load(path, profile="surveillance")
    path.write_text(json.dumps({"facegate_policy": 1, "requirements": {"yawn": {"max": 1}}}))
    with pytest.raises(ConfigError, match="unknown component"):
        Policy.load(path)


def test_look_again_reports_rotated_and_dark_photos_instead_of_no_face(photo):
    gate = Gate(threads=2, views="none")
    plain = Gate(threads=2, views="none", capture=CaptureSettings(look_again=False, orientation=False))
    turned = np.ascontiguousarray(np.rot90(photo, 1))  # on its side: turn 90 degrees clockwise to fix
    assert plain.assess(turned, color_order="rgb").status is Status.NO_FACE
    result = gate.assess(turned, color_order="rgb")
    assert result.status is Status.REJECTED and "rotated" in result.reasons
    assert result.found_by == "turned 90" and "90 degrees clockwise" in result.prompt
    assert abs(abs(result.components.value("roll")) - 90) < 20  # landmarks in the image's own coordinates

    dark = (0.08 * 255 * (photo / 255.0) ** 2).astype(np.uint8)
    assert plain.assess(dark, color_order="rgb").status is Status.NO_FACE
    result = gate.assess(dark, color_order="rgb")
    assert result.status is Status.REJECTED and "too_dark" in result.reasons and result.found_by == "brightened"
    assert result.prompt == PROMPTS["too_dark"]
    assert gate.assess(np.full((120, 160, 3), 90, np.uint8), color_order="rgb").status is Status.NO_FACE


def test_cli_profile_and_components_in_the_output(fixtures):
    runner = CliRunner()
    out = runner.invoke(main, ["score", str(fixtures / "colin_powell_1.jpg"), "--profile", "enrollment",
                               "--views", "none", "--format", "jsonl"])
    assert out.exit_code == 0, out.output
    record = json.loads(out.output.splitlines()[-1])
    assert record["status"] == "rejected" and record["prompt"]
    assert set(record["components"]) == set(COMPONENTS)
    table = runner.invoke(main, ["score", str(fixtures / "colin_powell_1.jpg"), "--profile", "enrollment",
                                 "--views", "none"])
    assert PROMPTS["face_too_small"] in table.output
