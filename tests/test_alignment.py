import numpy as np

from facegate.alignment import ARCFACE_112, quality_template, similarity_transform, warp_to_template


def test_similarity_transform_recovers_a_known_transform():
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = ARCFACE_112 @ rot.T + shift
    m = similarity_transform(ARCFACE_112, dst)
    assert np.allclose(m[:, :2], rot, atol=1e-9) and np.allclose(m[:, 2], shift, atol=1e-9)


def test_warp_puts_landmarks_on_the_template():
    img = np.zeros((300, 300, 3), np.uint8)
    landmarks = ARCFACE_112 * 1.5 + 40
    for x, y in landmarks:
        img[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2] = 255
    template = quality_template(112, 0.2)
    crop = warp_to_template(img, landmarks, template, (112, 112))
    for x, y in template:
        assert crop[int(round(y)), int(round(x))].max() > 100


def test_small_face_is_not_sharpened(face_rgb):
    """The same face from a 4x smaller photo is enlarged by plain interpolation and stays
    soft, so the model sees the lost detail."""
    import cv2

    landmarks = np.array([[107.5, 114.4], [145.1, 112.8], [130.5, 132.8], [113.7, 159.6], [143.8, 158.5]])
    small = cv2.resize(face_rgb, (62, 62), interpolation=cv2.INTER_AREA)
    template = quality_template(112, 0.2)
    crop_full = warp_to_template(face_rgb, landmarks, template, (112, 112))
    crop_small = warp_to_template(small, landmarks * 62 / 250, template, (112, 112))
    energy = lambda c: np.abs(np.diff(c.astype(float), axis=1)).mean()
    assert energy(crop_small) < 0.7 * energy(crop_full)
