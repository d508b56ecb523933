import numpy as np
import pytest

from facegate.detection import Face, MTCNNDetector, choose_primary
from facegate.images import load_rgb


@pytest.fixture(scope="module")
def detector():
    return MTCNNDetector()


def test_one_face_with_landmarks_in_order(detector, face_rgb):
    faces = detector.detect(face_rgb)
    assert len(faces) == 1
    face = faces[0]
    assert face.probability > 0.95
    lm = face.landmarks
    assert lm.shape == (5, 2)
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # left before right
    assert lm[0, 1] < lm[2, 1] < lm[3, 1]  # eyes above nose above mouth
    x1, y1, x2, y2 = face.box
    assert x1 < lm[:, 0].min() and lm[:, 0].max() < x2
    assert 25 < face.eye_distance < 60


def test_every_face_in_a_group_photo(detector, fixtures):
    rgb = load_rgb(fixtures / "multiface.jpg")
    faces = detector.detect(rgb)
    assert len(faces) == 6
    primary = choose_primary(faces, rgb.shape)
    assert primary.side >= 0.8 * max(f.side for f in faces)


def test_no_face_and_tiny_images(detector, fixtures):
    assert detector.detect(load_rgb(fixtures / "no_face.jpg")) == []
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []
    assert detector.detect(np.full((200, 200, 3), 128, np.uint8)) == []


def _face(x, y, side, prob=0.99):
    lm = np.array([[x + 0.3 * side, y + 0.4 * side], [x + 0.7 * side, y + 0.4 * side],
                   [x + 0.5 * side, y + 0.6 * side], [x + 0.35 * side, y + 0.8 * side],
                   [x + 0.65 * side, y + 0.8 * side]])
    return Face((x, y, x + side, y + side), prob, lm)


@pytest.mark.parametrize(
    "faces, expected",
    [
        ([_face(0, 0, 100), _face(400, 300, 50)], 0),  # clearly larger wins, even off-centre
        ([_face(0, 0, 90), _face(450, 350, 100)], 1),  # similar size: nearer the centre wins
        ([_face(450, 350, 85), _face(0, 0, 100)], 0),  # within 80%: centre beats size
        ([_face(0, 0, 70), _face(450, 350, 100)], 1),
    ],
)
def test_primary_face_rule(faces, expected):
    assert choose_primary(faces, (800, 1000, 3)) is faces[expected]


def test_a_face_mostly_outside_the_frame_never_displaces_one_inside_it():
    """LFW George_W_Bush_0020: a bystander's box [-93, 51, 37, 193] is larger than the
    centred subject's but mostly outside the 250 px photo."""
    bystander, subject = Face((-93, 51, 37, 193), 0.995, np.zeros((5, 2))), Face((94, 68, 185, 196), 0.999,
                                                                                 np.zeros((5, 2)))
    assert choose_primary([bystander, subject], (250, 250, 3)) is subject
    assert choose_primary([bystander], (250, 250, 3)) is bystander  # alone, it is the face there is


def test_an_unsure_box_never_displaces_a_sure_face():
    """CelebA 7249/008804: the face at p = 1.0 and a larger overlapping box at p = 0.745."""
    sure, unsure = _face(100, 100, 80, prob=1.0), _face(90, 90, 100, prob=0.745)
    assert choose_primary([unsure, sure], (400, 400, 3), min_probability=0.9) is sure
    assert choose_primary([unsure], (400, 400, 3), min_probability=0.9) is unsure


def test_the_named_photos_keep_their_subject(shared):
    from facegate import Gate

    gate = Gate(threads=2)
    lfw = shared / "data" / "lfw-deepfunneled" / "George_W_Bush"
    for name, box in (("George_W_Bush_0020.jpg", (94, 68, 185, 196)), ("George_W_Bush_0530.jpg", (78, 62, 169, 188))):
        result = gate.assess(lfw / name)
        assert tuple(round(v) for v in result.face.box) == box, name
        assert not any(r.startswith("cut_off") for r in result.reasons) and result.score > 90, (name, result.reasons)
    celeba = gate.assess(shared / "data" / "celeba-subset" / "7249" / "008804.jpg")
    assert celeba.status.value == "accepted" and celeba.found_by is None and "rotated" not in celeba.reasons


def test_a_face_boxed_twice_is_one_face_and_two_people_stay_two():
    from facegate.detection import merge_overlapping

    sure, unsure = _face(100, 100, 80, prob=1.0), _face(90, 90, 100, prob=0.745)
    assert merge_overlapping([unsure, sure]) == (sure,)
    left, right = _face(0, 0, 100), _face(120, 0, 100)
    assert merge_overlapping([left, right]) == (left, right)
    touching = _face(60, 0, 100)  # overlapping 40% of either: two people close together
    assert len(merge_overlapping([left, touching])) == 2


def test_no_primary_without_faces():
    assert choose_primary([], (10, 10, 3)) is None


def test_yunet_keeps_the_landmark_contract(detector, face_rgb):
    from facegate.detection import YuNetDetector, create_detector

    yunet = create_detector("yunet")
    assert isinstance(yunet, YuNetDetector)
    (mtcnn_face,) = detector.detect(face_rgb)
    faces = yunet.detect(face_rgb)
    assert len(faces) == 1
    lm = faces[0].landmarks
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0] and lm[0, 1] < lm[2, 1] < lm[3, 1]
    # eyes agree with MTCNN's within a tenth of the eye distance
    assert np.abs(lm[:2] - mtcnn_face.landmarks[:2]).max() < 0.1 * mtcnn_face.eye_distance
    assert yunet.detect(np.zeros((8, 8, 3), np.uint8)) == []


def test_unknown_detector():
    from facegate.detection import create_detector
    from facegate.errors import ConfigError

    with pytest.raises(ConfigError, match="choose from"):
        create_detector("haar")
