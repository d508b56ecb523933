"""The working resolution of a large photo: decode and detect no finer than the decision needs.

A camera photo of 12-48 megapixels holds its face in hundreds of pixels between the eyes;
the quality models see 32, and MTCNN's landmarks come from a 48 px view of the face. The
capture stage therefore looks twice at a photo above :attr:`WorkingResolution.above_pixels`:

1. a *first look* at the JPEG decoded 2 or 4 times smaller (its DCT scaled: a fraction of a
   full decode's time and memory), for faces of at least 15% of the photo's short side;
2. a *second look*, only when the first one is not enough: finer pixels for the faces found
   (landmarks refined, crop and components) when the primary face has fewer than
   :attr:`eye_distance` pixels between the eyes at that reduction; a finer search when a
   face that could change the decision (a second face of ``secondary_face_ratio`` of the
   primary's size, a rival primary at 80%) may be smaller than the first look searched; the
   detector's own passes, at full resolution up to :attr:`max_pixels`, when no face the
   gate would accept was found.

MTCNN's pyramid levels and crops are computed on the full image's grid from the reduced
pixels (:class:`facegate.mtcnn.OnnxMTCNN`), and its face-size floors stay on the full
image's pyramid (``first_pass_min_face_size / 0.709**j``), so both looks find the faces
full-resolution processing finds, with its landmarks, in full-image coordinates. Faces below
every size the policy could act on are not searched (docs/performance.md counts them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .detection import Face

__all__ = ["WorkingResolution", "Look"]

#: MTCNN's box side over the eye distance: at least 2.34 on the large photos (2.6 median).
FACE_PER_EYE_DISTANCE = 2.3
#: MTCNN's pyramid step.
_PYRAMID_FACTOR = 0.709
#: The finest pyramid level searched must average at least this many reduced pixels per
#: level pixel (12 px at the level is the face size it finds).
_LEVEL_SUPPORT = 2.0


@dataclass(frozen=True)
class Look:
    """One look at a working resolution: the reduction (1, 2 or 4) and the smallest face
    side searched, in full-image pixels (None: the detector's own passes); ``detect`` False:
    only finer pixels for the faces already found (landmarks refined again, crop, components)."""

    reduction: int
    min_face_size: float | None
    detect: bool = True


@dataclass(frozen=True)
class WorkingResolution:
    """What a large photo must be decoded and searched at, from the policy's needs.

    Attributes:
        min_eye_distance: the policy's smallest acceptable eye distance (full-image pixels).
        secondary_face_ratio: the policy's "sizeable second face" ratio of face sides.
        eye_distance: pixels between the eyes the working image must hold for landmarks and
            the crop to match full resolution's (docs/performance.md measures it).
        above_pixels: photos with fewer pixels are processed at full resolution, as always.
        first_look: the first look searches faces of at least this share of the short side.
        max_reduction: never reduce more (at 8 times, JPEG blocks are single pixels and the
            compression component cannot be measured).
        max_pixels: the most pixels any look decodes (bounds memory: MTCNN's tables take
            24-32 bytes a pixel), so a photo where nothing was found at the first look is
            searched again at 2 or 4 times less than full resolution above this size.
    """

    min_eye_distance: float = 16.0
    secondary_face_ratio: float = 0.5
    eye_distance: float = 48.0
    above_pixels: int = 2_000_000
    first_look: float = 0.15
    max_reduction: int = 4
    max_pixels: int = 4_000_000

    @classmethod
    def for_policy(cls, policy) -> "WorkingResolution":
        return cls(min_eye_distance=policy.min_eye_distance, secondary_face_ratio=policy.secondary_face_ratio)

    def first(self, size: tuple[int, int], base: float) -> Look | None:
        """The first look at a photo of ``size`` (width, height) for a detector whose first
        pass searches faces down to ``base`` pixels; None: full resolution, as always."""
        width, height = size
        if width * height < self.above_pixels:
            return None
        floor = _on_pyramid(max(base, self.first_look * min(width, height)), base)
        reduction = self._reduction(floor, float("inf"))
        return Look(reduction, floor) if reduction > 1 else None

    def second(self, size: tuple[int, int], first: Look, primary: Face | None, accepted: bool,
               base: float) -> Look | None:
        """The look at a photo of ``size`` after ``first`` found ``primary`` (``accepted``:
        sure enough for the gate), or None when the first look is enough."""
        pixels = size[0] * size[1]
        fewest = 1 << max(0, math.ceil(math.log2(math.sqrt(pixels / self.max_pixels)))) if pixels > self.max_pixels else 1
        fewest = min(fewest, self.max_reduction)  # the least reduction memory allows
        if primary is None or not accepted:
            reduction = fewest
            smallest = 0.8 * FACE_PER_EYE_DISTANCE * self.min_eye_distance
            if reduction == 1 and smallest <= base:
                return Look(1, None)  # the detector's own passes at full resolution
            # the smallest face the policy accepts, or the finest the reduction still resolves
            floor = max(_on_pyramid(max(smallest, base), base), _on_pyramid(12.0 * _LEVEL_SUPPORT * reduction, base, up=True))
            look = Look(max(reduction, self._reduction(floor, float("inf"))), floor)
            return None if look == first else look
        # faces that could change the decision: a rival primary (80% of its side) or a
        # sizeable second face; 10% below, as boxes vary
        floor = _on_pyramid(max(base, 0.9 * min(0.8, self.secondary_face_ratio) * primary.side), base)
        reduction = max(fewest, self._reduction(floor, primary.eye_distance))
        if floor >= first.min_face_size:  # every face that matters was searched for
            return None if reduction >= first.reduction else Look(reduction, first.min_face_size, detect=False)
        return Look(min(reduction, first.reduction), floor)

    def _reduction(self, floor: float, eye_distance: float) -> int:
        limit = min(self.max_reduction, floor / (12.0 * _LEVEL_SUPPORT), eye_distance / self.eye_distance)
        return 1 << max(0, int(math.floor(math.log2(max(limit, 1.0)))))


def _on_pyramid(size: float, base: float, up: bool = False) -> float:
    """The largest face size of the form ``base / 0.709**j`` not above ``size`` (``up``: the
    smallest not below it): pyramid levels that are full resolution's own levels."""
    if size <= base:
        return float(base)
    steps = math.log(size / base) / -math.log(_PYRAMID_FACTOR)
    steps = math.ceil(steps - 1e-9) if up else math.floor(steps + 1e-9)
    return float(base / _PYRAMID_FACTOR ** steps)
