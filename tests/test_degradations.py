"""The training copies change what they claim to change, and only there."""

import numpy as np

from train.degradations import degrade
from train.labels import draw_degradation


def test_accessories_cover_part_of_the_face_and_leave_the_rest_of_the_photo(gate, face_rgb):
    landmarks = gate.assess(face_rgb, color_order="rgb").face.landmarks
    eyes = landmarks[:2].mean(0)
    ied = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    yy, xx = np.mgrid[: face_rgb.shape[0], : face_rgb.shape[1]]
    distance = np.hypot(xx - eyes[0], yy - eyes[1]) / ied
    changed_near, changed_far = [], []
    for seed in range(12):  # every kind (sunglasses, cap, hair, hand) at several severities
        out, moved = degrade(face_rgb, landmarks, "accessory", seed / 11, np.random.default_rng(seed))
        assert out.shape == face_rgb.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(moved, landmarks)
        diff = np.abs(out.astype(int) - face_rgb.astype(int)).max(-1) > 8
        changed_near.append(diff[distance < 2.0].mean())
        changed_far.append(diff[distance > 4.5].mean())
    assert min(changed_near) > 0.02, changed_near  # each copy hides a visible part of the face
    assert max(changed_far) < 0.01, changed_far  # and leaves the background alone


def test_training_copies_include_turned_photos_and_extreme_jpeg():
    rng = np.random.default_rng(0)
    alone = [recipe[0][0] for recipe in (draw_degradation(rng) for _ in range(2000)) if len(recipe) == 1]
    for kind, share in (("rotation", 0.12), ("jpeg_extreme", 0.06)):
        assert abs(alone.count(kind) / 2000 - share) < 0.03, (kind, alone.count(kind))


def test_greyscale_copies_are_grey_keep_the_face_where_it_was_and_the_ir_kind_differs(gate, face_rgb):
    """Grey and near-infrared-like copies: three equal channels, the landmarks unchanged, the
    face still found there; the IR-like rendering is not the plain luminance."""
    from train.recipe import SHIPPED

    landmarks = gate.assess(face_rgb, color_order="rgb").face.landmarks
    grey, moved = degrade(face_rgb, landmarks, "greyscale", 0.2, np.random.default_rng(0))
    infrared, _ = degrade(face_rgb, landmarks, "greyscale", 0.8, np.random.default_rng(0))
    for copy in (grey, infrared):
        assert copy.shape == face_rgb.shape and copy.dtype == np.uint8
        assert (copy[..., 0] == copy[..., 1]).all() and (copy[..., 1] == copy[..., 2]).all()
        found = gate.assess(copy, color_order="rgb").face
        assert found is not None and np.abs(found.landmarks - landmarks).max() < 6
    np.testing.assert_array_equal(moved, landmarks)
    assert np.abs(grey.astype(int) - infrared.astype(int)).mean() > 3
    # labelled apart, like the accessory copies, only when the recipe asks for them (the shipped one does)
    assert SHIPPED.labels.added_copies == {"greyscale": 1}
    assert SHIPPED.with_setting("labels.greyscale_copies", "0").labels.added_copies == {}
