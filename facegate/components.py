"""Quality components after ISO/IEC 29794-5: named measures an operator can act on.

Each :class:`Component` has a native value with its unit (degrees, pixels, a share of the
face's pixels, ...) and a quality 0-100 from a documented monotone mapping
(:data:`COMPONENTS` holds each definition; ``docs/components.md`` the table and the
evidence of which ones predict recognition failure). A value that cannot be measured is
``None`` with the cause, never NaN.

Everything is computed from what the capture stage already has (the decoded image, the
faces and the primary face's five landmarks), plus one small crop of our own: the face
aligned onto the 112 px recognition template (:data:`facegate.alignment.ARCFACE_112`), so
that sharpness, exposure and colour are measured at one face scale, independent of the
quality weights in use. All of it together costs well under 3 ms per face on one core
(``python -m benchmarks.bench_components``).

    >>> from facegate import analyse
    >>> from facegate.components import measure_components
    >>> capture = analyse("photo.jpg")
    >>> components = measure_components(capture.rgb, capture.primary, capture.faces)
    >>> components["yaw"].value, components["sharpness"].quality
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import cv2
import numpy as np

from .alignment import ARCFACE_112, shrink_for_warp, similarity_transform
from .detection import Face
from .frozen import FrozenValue
from .images import Reduction, reduce_image

__all__ = ["Component", "Components", "Definition", "Mapping", "COMPONENTS", "measure_components",
           "head_pose", "face_outline"]


@dataclass(frozen=True)
class Mapping:
    """A monotone map from a native value to a quality 0-100: a logistic curve through 50
    at ``centre``, rising (``rising=True``) or falling with the value; its slope is set by
    ``width`` (the value moves by ``width`` from quality 50 to 73, by ``2*width`` to 88).
    With ``absolute=True`` the magnitude of the value is mapped (angles: -30 and 30 are
    equally bad); with ``band=(low, high)`` the distance outside that band is mapped
    (inside the band the quality is 100)."""

    centre: float
    width: float
    rising: bool = True
    absolute: bool = False
    band: tuple[float, float] | None = None

    def __call__(self, value: float) -> float:
        x = abs(value) if self.absolute else value
        if self.band is not None:
            low, high = self.band
            x = max(low - x, x - high, 0.0)
        q = _logistic(x, self.centre, self.width, self.rising)
        if self.band is not None:  # scaled so that a value inside the band maps to exactly 100
            q *= 100.0 / _logistic(0.0, self.centre, self.width, self.rising)
        return min(100.0, q)

    def describe(self) -> str:
        what = "|value|" if self.absolute else "value"
        if self.band is not None:
            what = f"distance of the value outside [{self.band[0]:g}, {self.band[1]:g}]"
        direction = "rises" if self.rising else "falls"
        return f"logistic in {what}: 50 at {self.centre:g}, {direction} with slope width {self.width:g}"


def _logistic(x: float, centre: float, width: float, rising: bool) -> float:
    z = (x - centre) / width
    return 100.0 / (1.0 + math.exp(max(-60.0, min(60.0, -z if rising else z))))


@dataclass(frozen=True)
class Definition:
    """What a component is: its unit, its ISO/IEC 29794-5 name (None where the standard
    has none), the quality mapping, the reason a failed requirement on it gives, and what
    the person in front of the camera can do about it."""

    unit: str
    iso: str | None
    mapping: Mapping
    reason: str
    prompt: str
    description: str


#: Every component facegate measures, in the order it reports them.
COMPONENTS: dict[str, Definition] = {
    "inter_eye_distance": Definition(
        "px", "Inter-eye distance", Mapping(30.0, 6.0), "face_too_small", "step closer to the camera",
        "distance between the eye centres in the image"),
    "head_size": Definition(
        "ratio", "Head size", Mapping(0.1, 0.05, rising=False, band=(0.35, 0.8)), "head_size",
        "stand so that your head fills about half the picture",
        "face box height (forehead to chin) over image height"),
    "margin_left": Definition(
        "eye distances", "Leftward crop of the face image", Mapping(0.0, 0.15), "cut_off_left",
        "move so that your whole face is in the picture: it is cut off at the left edge",
        "space between the estimated head outline and the image's left edge; negative: cut off"),
    "margin_right": Definition(
        "eye distances", "Rightward crop of the face image", Mapping(0.0, 0.15), "cut_off_right",
        "move so that your whole face is in the picture: it is cut off at the right edge",
        "space between the estimated head outline and the image's right edge; negative: cut off"),
    "margin_top": Definition(
        "eye distances", "Margin above the face image", Mapping(0.0, 0.15), "cut_off_top",
        "step back: your face is cut off at the top",
        "space between the estimated top of the head and the image's top edge; negative: cut off"),
    "margin_bottom": Definition(
        "eye distances", "Margin below the face image", Mapping(0.0, 0.15), "cut_off_bottom",
        "step back: your face is cut off at the bottom",
        "space between the estimated chin and the image's bottom edge; negative: cut off"),
    "yaw": Definition(
        "degrees", "Head pose yaw", Mapping(25.0, 6.0, rising=False, absolute=True), "head_turned",
        "turn your head to the camera",
        "head turn left/right; positive: the face turns towards the image's right"),
    "pitch": Definition(
        "degrees", "Head pose pitch", Mapping(20.0, 6.0, rising=False, absolute=True), "head_tilted_up_down",
        "keep your chin level and look straight into the camera",
        "head nod; positive: the face turns up"),
    "roll": Definition(
        "degrees", "Head pose roll", Mapping(30.0, 6.0, rising=False, absolute=True), "head_tilted_sideways",
        "hold your head upright",
        "in-plane tilt of the eye line; positive: counter-clockwise as displayed"),
    "second_face": Definition(
        "area ratio", "Single face present", Mapping(0.5, 0.12, rising=False), "multiple_faces",
        "only one person in the picture, please",
        "area of the second-largest face over the largest's (0: one face)"),
    "sharpness": Definition(
        "log10 grey levels^2", "Sharpness", Mapping(1.6, 0.2), "blurred",
        "hold still and make sure the camera is focused",
        "log10 variance of the Laplacian over the face, at the 112 px template's scale"),
    "under_exposure": Definition(
        "share", "Under-exposure prevention", Mapping(0.2, 0.06, rising=False), "too_dark",
        "more light on your face", "share of face pixels with luminance at most 25 of 255"),
    "over_exposure": Definition(
        "share", "Over-exposure prevention", Mapping(0.1, 0.04, rising=False), "too_bright",
        "less light on your face (avoid direct flash or sun)",
        "share of face pixels with luminance at least 247 of 255"),
    "luminance_mean": Definition(
        "grey level", "Luminance mean", Mapping(35.0, 10.0, rising=False, band=(80.0, 180.0)),
        "luminance", "even, moderate light on your face", "mean luminance of the face (0-255)"),
    "luminance_spread": Definition(
        "grey levels", "Luminance variance", Mapping(10.0, 4.0, rising=False, band=(20.0, 80.0)),
        "contrast", "even, moderate light on your face", "standard deviation of the face's luminance"),
    "dynamic_range": Definition(
        "grey levels", "Dynamic range", Mapping(60.0, 15.0), "low_dynamic_range",
        "more light on your face", "range of the face's luminance between its 1st and 99th percentiles"),
    "illumination_uniformity": Definition(
        "ratio", "Illumination uniformity", Mapping(0.6, 0.08), "uneven_light",
        "more even light: one side of your face is darker",
        "mean luminance of the darker half of the face over the brighter half's (1: even)"),
    "colour": Definition(
        "CIELAB units", "Natural colour", Mapping(12.0, 4.0, rising=False), "unnatural_colour",
        "use normal white light (no coloured light or filters)",
        "distance of the (a*, b*) of the face's mean colour from the range of natural skin tones"),
    "compression": Definition(
        "ratio", "Compression artefacts", Mapping(1.5, 0.12, rising=False), "compression_artefacts",
        "send a less compressed photo",
        "gradient across the JPEG block edges over the gradient inside blocks, on the face (a large face "
        "averaged to about 64 px between the eyes; 1: none)"),
    "eyes_visible": Definition(
        "share", "Eyes visible", Mapping(0.6, 0.08), "eyes_covered",
        "take off your sunglasses and keep your eyes uncovered (hair, hands)",
        "share of the two eye regions that is uncovered (the occlusion helper, on the template crop)"),
    "mouth_visible": Definition(
        "share", "Mouth occlusion prevention", Mapping(0.6, 0.08), "mouth_covered",
        "uncover your nose and mouth: no mask, scarf, hand or microphone in front of them",
        "share of the nose-and-mouth region that is uncovered (the occlusion helper)"),
    "face_visible": Definition(
        "share", "Face occlusion prevention", Mapping(0.75, 0.06), "face_occluded",
        "nothing between your face and the camera, please",
        "share of the face (an ellipse the landmarks lay out) that is uncovered (the occlusion helper)"),
}

#: The components the occlusion helper gives, in its output order (facegate.occlusion.REGIONS).
OCCLUSION_COMPONENTS = ("eyes_visible", "mouth_visible", "face_visible")


@dataclass(frozen=True, eq=False)
class Component(FrozenValue):
    """One measured component. ``detail`` adds what the value alone does not say (which
    side of the face is darker, ...); ``cause`` says why ``value`` is None."""

    name: str
    value: float | None
    quality: float | None
    cause: str | None = None
    detail: str | None = None

    @property
    def definition(self) -> Definition:
        return COMPONENTS[self.name]

    @property
    def unit(self) -> str:
        return self.definition.unit

    @property
    def iso(self) -> str | None:
        return self.definition.iso

    def to_dict(self) -> dict:
        out = {"value": None if self.value is None else round(self.value, 4),
               "unit": self.unit, "quality": None if self.quality is None else round(self.quality, 1),
               "iso": self.iso}
        if self.cause:
            out["cause"] = self.cause
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, eq=False)
class Components(FrozenValue):
    """The components of one face, by name (``components["yaw"]``), in :data:`COMPONENTS` order."""

    items: tuple[Component, ...]

    def __getitem__(self, name: str) -> Component:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(item.name == name for item in self.items)

    def __iter__(self) -> Iterator[Component]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def value(self, name: str) -> float | None:
        return self[name].value

    def to_dict(self) -> dict:
        return {c.name: c.to_dict() for c in self.items}


def _component(name: str, value: float | None, cause: str | None = None, detail: str | None = None) -> Component:
    if value is None or not math.isfinite(value):
        return Component(name, None, None, cause or "could not be measured", detail)
    return Component(name, float(value), float(COMPONENTS[name].mapping(float(value))), None, detail)


# --- geometry -------------------------------------------------------------------------

#: A generic face in millimetres (x right, y down, z away from the camera; nose tip at the
#: origin): eye centres 63 mm apart and 30 mm behind the nose tip, mouth corners 55 mm
#: apart and 24 mm behind it. Vertical proportions follow where MTCNN places the five
#: landmarks on frontal faces (medians over 400 random LFW photos: eye line to mouth line
#: 1.11 eye distances, nose tip at 0.54 of the way down, mouth width 0.875 eye distances),
#: so that the median face reads as level; depths are anthropometric averages.
GENERIC_FACE_MM = np.array([[-31.5, -38.0, 30.0], [31.5, -38.0, 30.0], [0.0, 0.0, 0.0],
                            [-27.5, 32.0, 24.0], [27.5, 32.0, 24.0]])


def head_pose(landmarks: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float] | None:
    """Yaw, pitch and roll in degrees from five landmarks, by fitting :data:`GENERIC_FACE_MM`
    with a pinhole camera (focal length the image's longer side, principal point its
    centre). Signs: yaw > 0 turns the face towards the image's right, pitch > 0 turns it
    up, roll > 0 tilts it counter-clockwise as displayed. None when the fit fails."""
    width, height = image_size
    focal = float(max(width, height))
    camera = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    points = np.ascontiguousarray(landmarks, dtype=np.float64).reshape(5, 1, 2)
    eye_distance = float(np.linalg.norm(landmarks[1] - landmarks[0]))
    if eye_distance < 1.0:
        return None
    # start from a frontal face at the distance its eye distance implies
    centre = landmarks.mean(0)
    depth = focal * 63.0 / eye_distance
    rvec = np.zeros((3, 1))
    tvec = np.array([[(centre[0] - width / 2.0) * depth / focal], [(centre[1] - height / 2.0) * depth / focal],
                     [depth]])
    ok, rvec, tvec = cv2.solvePnP(GENERIC_FACE_MM, points, camera, None, rvec, tvec, useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.isfinite(rvec).all():
        return None
    rotation, _ = cv2.Rodrigues(rvec)
    # the face's own axes seen from the camera; angles relative to a face looking straight
    # into the lens from where it is (so a frontal face at the image's edge is not "turned")
    direction = tvec[:, 0] / np.linalg.norm(tvec)
    forward = -rotation[:, 2]  # the face looks along -z of its model
    to_camera = -direction
    # express the face's forward axis in a frame whose z points from the face to the camera
    z = to_camera
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    f = np.array([forward @ x, forward @ y, forward @ z])
    yaw = math.degrees(math.atan2(-f[0], f[2]))
    pitch = math.degrees(math.atan2(-f[1], math.hypot(f[0], f[2])))  # y points down
    eyes = landmarks[1] - landmarks[0]
    roll = math.degrees(math.atan2(-eyes[1], eyes[0]))
    return yaw, pitch, roll


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """Eight points around the head estimated from five landmarks (temples, top of the
    head, chin and jaw corners), in the face's own frame: the eye line gives the sideways
    axis, the eye-to-mouth direction the downward one. Top of the head 1.6 eye distances
    above the eye line; chin 0.75 eye-to-mouth distances below the mouth; sides 1.0 eye
    distance from the eyes' midpoint (typical adult proportions)."""
    eyes_mid = (landmarks[0] + landmarks[1]) / 2.0
    mouth_mid = (landmarks[3] + landmarks[4]) / 2.0
    across = landmarks[1] - landmarks[0]
    eye_distance = max(float(np.linalg.norm(across)), 1e-6)
    across = across / eye_distance
    down = mouth_mid - eyes_mid
    eye_mouth = max(float(np.linalg.norm(down)), 1e-6)
    down = down / eye_mouth
    top = eyes_mid - 1.6 * eye_distance * down
    chin = mouth_mid + 0.75 * eye_mouth * down
    side = 1.0 * eye_distance * across
    return np.array([top, chin, eyes_mid - side, eyes_mid + side, top - 0.7 * side, top + 0.7 * side,
                     chin - 0.7 * side, chin + 0.7 * side])


def _margins(landmarks: np.ndarray, image_size: tuple[int, int]) -> dict[str, float]:
    width, height = image_size
    outline = face_outline(landmarks)
    eye_distance = max(float(np.linalg.norm(landmarks[1] - landmarks[0])), 1e-6)
    return {"margin_left": float(outline[:, 0].min()) / eye_distance,
            "margin_right": float(width - outline[:, 0].max()) / eye_distance,
            "margin_top": float(outline[:, 1].min()) / eye_distance,
            "margin_bottom": float(height - outline[:, 1].max()) / eye_distance}


def _second_face(face: Face, faces: Sequence[Face]) -> float:
    areas = sorted((max(f.width, 0.0) * max(f.height, 0.0) for f in faces), reverse=True)
    if face not in faces:
        areas = sorted(areas + [max(face.width, 0.0) * max(face.height, 0.0)], reverse=True)
    return 0.0 if len(areas) < 2 or areas[0] <= 0 else areas[1] / areas[0]


# --- image ----------------------------------------------------------------------------

CROP_SIZE = 112
#: Inner face of the 112 px template (eyebrows to chin, cheek to cheek), where exposure,
#: colour and sharpness are measured: hair and background stay out.
_FACE_MASK = np.zeros((CROP_SIZE, CROP_SIZE), np.uint8)
cv2.ellipse(_FACE_MASK, (56, 70), (32, 40), 0, 0, 360, 255, -1)
_FACE_MASK_BOOL = _FACE_MASK > 0
_LEFT_HALF = _FACE_MASK_BOOL & (np.arange(CROP_SIZE)[None, :] < 56)
_RIGHT_HALF = _FACE_MASK_BOOL & (np.arange(CROP_SIZE)[None, :] >= 56)
#: Natural skin in CIELAB (a*, b*), a box wide enough for every skin tone under
#: white-balanced light (Fitzpatrick I-VI measurements fall within it).
_SKIN_A, _SKIN_B = (4.0, 28.0), (6.0, 34.0)


#: Pixel centres of the 112 px crop, as homogeneous coordinates.
_GRID = np.stack([*np.meshgrid(np.arange(CROP_SIZE, dtype=np.float64), np.arange(CROP_SIZE, dtype=np.float64)),
                  np.ones((CROP_SIZE, CROP_SIZE))], -1).reshape(-1, 3)


#: sRGB (D65) to CIE XYZ, rows X, Y, Z.
_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
_WHITE = np.array([0.950456, 1.0, 1.088754])


def _ab(rgb: np.ndarray) -> tuple[float, float]:
    """CIELAB a* and b* of one sRGB colour in [0, 1] (OpenCV's constants; computed here
    because OpenCV builds its Lab tables on first use, about 0.1 s)."""
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = _RGB_TO_XYZ @ linear / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    return float(500.0 * (f[0] - f[1])), float(200.0 * (f[1] - f[2]))


def _template_crop(rgb: np.ndarray, landmarks: np.ndarray,
                   reduction: Reduction | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The face on the 112 px template (black outside the image), and a mask of the crop's
    pixels that come from inside the image (``landmarks`` in the full image's coordinates)."""
    if reduction is not None:
        landmarks = reduction.to_array(landmarks)
    matrix = similarity_transform(landmarks, ARCFACE_112)
    source, warp = shrink_for_warp(rgb, matrix, (CROP_SIZE, CROP_SIZE), 1 if reduction is None else reduction.factor)
    crop = cv2.warpAffine(source, warp, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    xy = _GRID @ cv2.invertAffineTransform(matrix).T
    h, w = rgb.shape[:2]
    inside = ((xy[:, 0] >= 0) & (xy[:, 0] <= w - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= h - 1))
    return crop, inside.reshape(CROP_SIZE, CROP_SIZE)


#: Compression is read at the scale where the face has about this many pixels between the
#: eyes (blocks averaged 2 or 4 times for larger faces; see :func:`_blockiness`).
BLOCKINESS_EYE_DISTANCE = 64.0


def _blockiness(rgb: np.ndarray, face: Face, reduction: Reduction | None = None) -> tuple[float | None, str | None]:
    """Gradient across the JPEG block edges over the gradient inside blocks, on the central
    square of the face box (the block grid is only visible without resampling).

    A large face is read with its pixels averaged 2 or 4 times (to about 64 px between the
    eyes), where the block grid survives as 4 or 2 px blocks: at full resolution the smooth
    skin of a large face makes any JPEG's block edges stand out (a 14-megapixel photo read
    2.8 re-encoded at quality 90 and at 50; 1.15 and 1.13 averaged 4 times, 2.3 at quality
    10), and what matters is what survives at the scale a recognizer sees. A photo decoded at
    its working resolution (its DCT scaled ``k`` times, blocks ``8 / k`` px on the same grid)
    is read at that same scale."""
    have = 1 if reduction is None else reduction.factor
    wanted = 1 << max(0, int(math.log2(max(face.eye_distance / BLOCKINESS_EYE_DISTANCE, 1.0))))
    want = max(have, min(4, wanted))
    step, block, period = want // have, 8 // have, 8 // want
    if period < 2:
        return None, "the JPEG block grid is not visible at this working resolution"
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = face.box if reduction is None else reduction.to_array(np.reshape(face.box, (2, 2))).reshape(-1)
    x1, y1 = max(0, int(x1)), max(0, int(y1))
    x2, y2 = min(w, int(math.ceil(x2))), min(h, int(math.ceil(y2)))
    if x2 - x1 < 32 // have or y2 - y1 < 32 // have:
        return None, "face box under 32 px: too small to see JPEG blocks"
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    half_w, half_h = min(96 // have, (x2 - x1) // 2), min(96 // have, (y2 - y1) // 2)
    x1, x2, y1, y2 = cx - half_w, cx + half_w, cy - half_h, cy + half_h
    if step > 1:  # whole blocks from a block edge, averaged step x step
        x1, y1 = x1 - x1 % block, y1 - y1 % block
        x2, y2 = x2 - (x2 - x1) % block, y2 - (y2 - y1) % block
        region = reduce_image(np.ascontiguousarray(rgb[y1:y2, x1:x2]), step)
        x1 = y1 = 0
    else:
        region = rgb[y1:y2, x1:x2]
    grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY).astype(np.float32)
    dx = np.abs(np.diff(grey, axis=1))  # column c: between region columns c and c+1
    dy = np.abs(np.diff(grey, axis=0))
    edge_x = ((x1 + np.arange(dx.shape[1]) + 1) % period) == 0
    edge_y = ((y1 + np.arange(dy.shape[0]) + 1) % period) == 0
    across = dx[:, edge_x].sum() + dy[edge_y, :].sum()
    n_across = dx[:, edge_x].size + dy[edge_y, :].size
    inside = dx[:, ~edge_x].sum() + dy[~edge_y, :].sum()
    n_inside = dx[:, ~edge_x].size + dy[~edge_y, :].size
    if n_across == 0 or n_inside == 0:
        return None, "face region too small"
    mean_inside = inside / n_inside
    return float((across / n_across + 0.5) / (mean_inside + 0.5)), None


def measure_components(rgb: np.ndarray, face: Face, faces: Sequence[Face] = (),
                       reduction: Reduction | None = None, occlusion=None) -> Components:
    """Every component of ``face`` in the decoded ``(H, W, 3)`` uint8 RGB image ``rgb``.

    Args:
        rgb: the decoded image the face was found in.
        face: the face to measure (usually the capture's primary face).
        faces: every face found in the image (for ``second_face``); ``face`` alone if empty.
        reduction: ``rgb`` is the image reduced so (a large photo at its working
            resolution); faces are in the full image's coordinates, and geometry is measured
            there, the pixels on ``rgb``.
        occlusion: a :class:`facegate.occlusion.OcclusionModel` for the occlusion components
            (None: they are not measured, and say so).
    """
    width, height = reduction.size if reduction is not None else (rgb.shape[1], rgb.shape[0])
    landmarks = face.landmarks
    values: list[Component] = []
    values.append(_component("inter_eye_distance", face.eye_distance))
    values.append(_component("head_size", face.height / height if height else None))
    for name, value in _margins(landmarks, (width, height)).items():
        values.append(_component(name, value))
    pose = head_pose(landmarks, (width, height))
    for k, name in enumerate(("yaw", "pitch", "roll")):
        values.append(_component(name, None if pose is None else pose[k],
                                 cause="the pose fit did not converge" if pose is None else None))
    values.append(_component("second_face", _second_face(face, tuple(faces) or (face,))))

    crop, inside = _template_crop(rgb, landmarks, reduction)
    mask = _FACE_MASK_BOOL & inside
    visible = mask.sum() / _FACE_MASK_BOOL.sum()
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    if visible < 0.5:
        cause = f"only {visible:.0%} of the face is inside the image"
        for name in ("sharpness", "under_exposure", "over_exposure", "luminance_mean", "luminance_spread",
                     "dynamic_range", "illumination_uniformity", "colour"):
            values.append(_component(name, None, cause))
    else:
        laplacian = cv2.Laplacian(grey, cv2.CV_32F, ksize=1)
        inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0  # no edge of the image inside
        values.append(_component("sharpness", math.log10(float(laplacian[inner].var()) + 1.0)))
        pixels = grey[mask]
        values.append(_component("under_exposure", float((pixels <= 25).mean())))
        values.append(_component("over_exposure", float((pixels >= 247).mean())))
        values.append(_component("luminance_mean", float(pixels.mean())))
        values.append(_component("luminance_spread", float(pixels.std())))
        low, high = np.percentile(pixels, (1, 99))
        values.append(_component("dynamic_range", float(high - low)))
        left, right = grey[_LEFT_HALF & mask], grey[_RIGHT_HALF & mask]
        if left.size < 50 or right.size < 50:
            values.append(_component("illumination_uniformity", None, "one half of the face is outside the image"))
        else:
            lm, rm = float(left.mean()), float(right.mean())
            values.append(_component("illumination_uniformity", (min(lm, rm) + 1.0) / (max(lm, rm) + 1.0),
                                     detail="left side of the image darker" if lm < rm
                                     else "right side of the image darker"))
        a, b = _ab(crop[mask].mean(0, dtype=np.float64) / 255.0)  # the face's mean colour
        da = max(_SKIN_A[0] - a, 0.0, a - _SKIN_A[1])
        db = max(_SKIN_B[0] - b, 0.0, b - _SKIN_B[1])
        values.append(_component("colour", math.hypot(da, db), detail=f"mean a*={a:.1f}, b*={b:.1f}"))
    block, cause = _blockiness(rgb, face, reduction)
    values.append(_component("compression", block, cause))
    values += _occlusion(crop, visible, occlusion)
    return Components(tuple(values))


def _occlusion(crop: np.ndarray, inside: float, model) -> list[Component]:
    """The occlusion components from the template crop (a face mostly outside the image is
    cut off, not covered: not measured)."""
    if model is None:
        return [_component(n, None, "the occlusion helper was not loaded") for n in OCCLUSION_COMPONENTS]
    if inside < 0.5:
        return [_component(n, None, f"only {inside:.0%} of the face is inside the image") for n in OCCLUSION_COMPONENTS]
    shares = model(crop[None])[0]
    return [_component(n, float(v)) for n, v in zip(OCCLUSION_COMPONENTS, shares)]
