"""Turn whatever the caller hands us (path, PIL image, numpy array) into one RGB uint8 array.

Everything downstream works on ``(H, W, 3)`` uint8 RGB arrays, so colour order and
EXIF orientation are settled here, once.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Union

import numpy as np
from PIL import Image, ImageOps

from .errors import ConfigError, ImageError

ColorOrder = Literal["rgb", "bgr"]
@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes with the name to report it by (a path elsewhere, an object
    key): decoded exactly as the file would be, with the same statuses and messages."""

    name: str
    data: bytes


ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray, EncodedImage]

#: Largest image decoded by default (width x height); larger files are refused as possible
#: decompression bombs rather than exhausting memory. Phone cameras take up to 200
#: megapixels (16,320 x 12,240); large JPEGs are decoded reduced where the decision allows
#: (:mod:`facegate.working`), so they cost a fraction of their size. ``max_pixels`` (API)
#: and ``--max-pixels`` (command line) set another limit.
MAX_PIXELS = 250_000_000

#: Pillow's own bomb limit is a process-wide setting; it is raised to ours only while a file
#: is opened, under this lock, so our limit (and its message) is the one that applies.
_PILLOW_LIMIT = threading.Lock()


def _bomb_message(limit: int, width: int | None = None, height: int | None = None) -> str:
    size = f"is {width}x{height} = {width * height:,} pixels" if width else f"has more than {2 * limit:,} pixels"
    return (f"image {size}, over the {limit:,} pixel limit (refused as a possible decompression bomb; "
            "a larger limit: --max-pixels N, or max_pixels=N)")


@contextlib.contextmanager
def _pillow_allows(limit: int):
    with _PILLOW_LIMIT:
        before = Image.MAX_IMAGE_PIXELS
        if before is not None and before < limit:
            Image.MAX_IMAGE_PIXELS = limit
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = before


def describe(image: ImageInput) -> str:
    """A short name for an input, used in results and error messages."""
    if isinstance(image, (str, os.PathLike)):
        return os.fsdecode(image)
    if isinstance(image, Image.Image):
        return getattr(image, "filename", "") or f"<PIL {image.mode} {image.size[0]}x{image.size[1]}>"
    if isinstance(image, np.ndarray):
        return f"<array {'x'.join(map(str, image.shape))} {image.dtype}>"
    if isinstance(image, EncodedImage):
        return image.name
    return f"<{type(image).__name__}>"


@dataclass(frozen=True)
class Reduction:
    """An array is the image of ``size`` ``(width, height)`` reduced ``factor`` times: the
    image's pixel edge ``x`` lies at ``(x - origin) / factor`` in the array (``origin`` is
    non-zero only where EXIF orientation mirrored an axis whose length ``factor`` does not divide)."""

    factor: int
    size: tuple[int, int]
    origin: tuple[float, float] = (0.0, 0.0)

    def to_full(self, points) -> np.ndarray:
        """``(..., 2)`` array coordinates -> the full image's."""
        return np.asarray(points, dtype=np.float64) * self.factor + np.asarray(self.origin)

    def to_array(self, points) -> np.ndarray:
        """``(..., 2)`` full-image coordinates -> the reduced array's."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.origin)) / self.factor


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image and what was done to it that a user should hear about
    (first frame of an animation, EXIF rotation, transparency, bit depth).

    ``reduction`` is set when ``rgb`` is the image reduced (``load_image(reduce_to=...)``)."""

    rgb: np.ndarray
    notes: tuple[str, ...] = ()
    reduction: Reduction | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the full image."""
        return self.reduction.size if self.reduction else (int(self.rgb.shape[1]), int(self.rgb.shape[0]))


def resolved(path: Path) -> Path | None:
    """``path`` with its links followed, or None for a link loop or a path that cannot be
    resolved (Python 3.11's ``Path.resolve`` raises on loops; a filter must not)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return None


def link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be read as a capture (a loop, or a target that is gone),
    or None when ``path`` is not such a link."""
    path = Path(path)
    if not path.is_symlink():
        return None
    try:
        target = os.readlink(path)
    except OSError as exc:
        return f"symbolic link that cannot be read ({exc.strerror or exc})"
    if resolved(path) is None:
        return f"symbolic link loop (-> {target})"
    if not path.exists():
        return f"dangling symbolic link: its target {target} does not exist"
    return None


def load_rgb(image: ImageInput, *, color_order: ColorOrder | None = None) -> np.ndarray:
    """:func:`load_image` without the notes: the ``(H, W, 3)`` uint8 RGB array."""
    return load_image(image, color_order=color_order).rgb


def load_image(image: ImageInput, *, color_order: ColorOrder | None = None,
               reduce_to: Callable[[tuple[int, int]], int] | None = None,
               max_pixels: int | None = None) -> LoadedImage:
    """Decode the image to a contiguous ``(H, W, 3)`` uint8 RGB array.

    Args:
        image: a file path, an :class:`EncodedImage` (a file's bytes), a PIL image, or a
            numpy array (``(H, W)`` grey or ``(H, W, 3|4)`` colour, uint8, or float in [0, 1]).
        color_order: required for colour numpy arrays: ``"rgb"`` or ``"bgr"`` (OpenCV).
        reduce_to: given the image's ``(width, height)`` (after EXIF orientation), how many
            times to reduce it: 1, 2, 4 or 8. A JPEG is then decoded at that size (its DCT
            scaled: several times faster than a full decode, a fraction of the memory); other
            images are decoded and reduced by block means. ``reduction`` says what was done.
        max_pixels: refuse an encoded image of more pixels than this (default :data:`MAX_PIXELS`).

    Raises:
        ImageError: the data cannot be decoded (bad file, unsupported format, too large).
        ConfigError: the caller passed the wrong kind of object, shape or dtype.
    """
    limit = int(max_pixels or MAX_PIXELS)
    if isinstance(image, (str, os.PathLike)):
        return _load_path(Path(os.fsdecode(image)), reduce_to, limit)
    if isinstance(image, Image.Image):
        return _reduced(_from_pil(image, describe(image)), reduce_to)
    if isinstance(image, np.ndarray):
        return _reduced(LoadedImage(_from_array(image, color_order)), reduce_to)
    if isinstance(image, EncodedImage):
        if not image.data:
            raise ImageError(image.name, "empty file (0 bytes)")
        return _decode(lambda: Image.open(io.BytesIO(image.data)), image.name, reduce_to, lambda: image.data, limit)
    raise ConfigError(
        f"cannot read an image from {type(image).__name__}; pass a path, a PIL image or a numpy array"
    )


def _load_path(path: Path, reduce_to=None, limit: int = MAX_PIXELS) -> LoadedImage:
    name = os.fsdecode(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(name, link_problem(path) or f"cannot access file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ImageError(name, "is a directory, not an image")
    if size == 0:
        raise ImageError(name, "empty file (0 bytes)")
    return _decode(lambda: Image.open(path), name, reduce_to, path.read_bytes, limit)


#: EXIF orientations that swap width and height, and those that mirror x or y of the stored
#: image (in the stored image's axes, before the swap).
_SWAPS = {5, 6, 7, 8}
_MIRRORS_X = {2, 3, 7, 8}
_MIRRORS_Y = {3, 4, 6, 7}


def _decode(open_image, name: str, reduce_to=None, read_bytes=None, limit: int = MAX_PIXELS) -> LoadedImage:
    """Open with PIL (``open_image()``), refuse decompression bombs, decode to RGB (at a
    reduced size when ``reduce_to`` asks for one; a JPEG's bytes, ``read_bytes()``, then go
    to OpenCV's scaled decoder)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our limit decides, below
            with _pillow_allows(limit):
                opened = open_image()
            with opened as pil:
                if pil.width * pil.height > limit:
                    raise ImageError(name, _bomb_message(limit, pil.width, pil.height))
                if reduce_to is None:
                    return _from_pil(pil, name)
                orientation = pil.getexif().get(0x0112, 1) if pil.format == "JPEG" else 1
                stored = (pil.width, pil.height)
                size = stored[::-1] if orientation in _SWAPS else stored
                factor = _factor(reduce_to(size))
                if factor == 1 or pil.format != "JPEG" or getattr(pil, "n_frames", 1) > 1:
                    return _reduced(_from_pil(pil, name), lambda _: factor)
                loaded = _scaled_jpeg(read_bytes, factor, stored, orientation) if pil.mode in ("RGB", "L") else None
                if loaded is None:
                    # (Pillow scales by the largest power of two within both whole-number ratios)
                    drafted = pil.draft("RGB", (max(1, stored[0] // factor), max(1, stored[1] // factor)))
                    scale = round(stored[0] / drafted[1][2]) if drafted else 1
                    loaded = _from_pil(pil, name)
                    if scale != factor:  # the rest by block means
                        loaded = LoadedImage(reduce_image(loaded.rgb, factor // scale), loaded.notes)
                # a mirrored axis whose length factor does not divide starts part of a pixel in
                ox = stored[0] - factor * -(-stored[0] // factor) if orientation in _MIRRORS_X else 0
                oy = stored[1] - factor * -(-stored[1] // factor) if orientation in _MIRRORS_Y else 0
                origin = (oy, ox) if orientation in _SWAPS else (ox, oy)
                return LoadedImage(loaded.rgb, loaded.notes, Reduction(factor, size, (float(origin[0]), float(origin[1]))))
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(name, _bomb_message(limit)) from None
    except PermissionError:
        raise ImageError(name, "permission denied") from None
    except Image.UnidentifiedImageError:  # (its text names Pillow's file object, not the input)
        raise ImageError(name, "cannot decode image (not an image format Pillow reads)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(name, f"cannot decode image ({exc})") from None


def _from_pil(pil: Image.Image, name: str) -> LoadedImage:
    notes = []
    try:
        frames = getattr(pil, "n_frames", 1)
        if frames > 1:
            pil.seek(0)
            notes.append(f"animated image with {frames} frames: the first frame was used")
        orientation = pil.getexif().get(0x0112, 1)
        if orientation not in (1, None):
            pil = ImageOps.exif_transpose(pil)
            notes.append(f"EXIF orientation {orientation} applied")
        if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(pil, dtype=np.float64)
            top = 65535.0 if arr.max() > 255 else 255.0
            notes.append(f"{pil.mode} image scaled to 8 bits")
            arr = _grey_to_rgb(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
        elif pil.mode == "F":
            arr = np.nan_to_num(np.asarray(pil, dtype=np.float64))
            notes.append("floating-point image scaled to 8 bits")
            arr = _grey_to_rgb(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8))
        else:
            if pil.mode in ("RGBA", "LA", "PA") or (pil.mode == "P" and "transparency" in pil.info):
                rgba = pil.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                pil = Image.alpha_composite(background, rgba)
                notes.append("transparency composited on white")
            arr = np.asarray(pil.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(name, f"cannot decode image ({exc})") from None
    _check_size(arr, name)
    return LoadedImage(np.ascontiguousarray(arr), tuple(notes))


#: EXIF orientation -> the numpy steps of ``ImageOps.exif_transpose`` (tests check they agree).
_ORIENT = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def _scaled_jpeg(read_bytes, factor: int, stored: tuple[int, int], orientation: int) -> LoadedImage | None:
    """A JPEG decoded ``factor`` times smaller by OpenCV (libjpeg-turbo's scaled IDCT, the
    same pixels as Pillow's draft mode, about twice as fast at 1/2), oriented as its EXIF
    says; None where OpenCV cannot, for Pillow to do it."""
    import cv2

    if read_bytes is None or factor not in (2, 4, 8):
        return None
    flag = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    try:
        bgr = cv2.imdecode(np.frombuffer(read_bytes(), np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    except (cv2.error, OSError):
        return None
    if bgr is None or bgr.ndim != 3 or bgr.shape[:2] != (-(-stored[1] // factor), -(-stored[0] // factor)):
        return None
    rgb = bgr[..., ::-1]
    notes = ()
    if orientation in _ORIENT:
        rgb = _ORIENT[orientation](rgb)
        notes = (f"EXIF orientation {orientation} applied",)
    return LoadedImage(np.ascontiguousarray(rgb), notes)


def _factor(value) -> int:
    if value not in (1, 2, 4, 8):
        raise ConfigError(f"an image can be reduced 1, 2, 4 or 8 times, not {value!r}")
    return int(value)


def _reduced(loaded: LoadedImage, reduce_to) -> LoadedImage:
    """``loaded`` reduced by block means (the last row and column of blocks partial, as in a
    JPEG decoded at a reduced size)."""
    if reduce_to is None:
        return loaded
    h, w = loaded.rgb.shape[:2]
    factor = _factor(reduce_to((w, h)))
    if factor == 1:
        return loaded
    return LoadedImage(reduce_image(loaded.rgb, factor), loaded.notes, Reduction(factor, (w, h)))


def reduce_image(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Means of ``factor`` x ``factor`` blocks, ``(ceil(H/f), ceil(W/f), 3)`` uint8; partial
    blocks at the bottom and right edges are the means of the pixels they hold."""
    import cv2

    h, w = rgb.shape[:2]
    oh, ow = -(-h // factor), -(-w // factor)
    sums = cv2.integral(rgb, sdepth=cv2.CV_64F)
    rows = np.minimum(np.arange(oh + 1) * factor, h)
    cols = np.minimum(np.arange(ow + 1) * factor, w)
    t = sums[rows][:, cols]
    block = t[1:, 1:] - t[:-1, 1:] - t[1:, :-1] + t[:-1, :-1]
    area = np.diff(rows)[:, None, None] * np.diff(cols)[None, :, None]
    return np.ascontiguousarray(np.clip(block / area + 0.5, 0, 255).astype(np.uint8))


def _from_array(arr: np.ndarray, color_order: ColorOrder | None) -> np.ndarray:
    name = describe(arr)
    if arr.ndim == 2:
        arr = _grey_to_rgb(arr)
        color_order = "rgb"
    elif arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ConfigError(f"{name}: expected an (H, W), (H, W, 3) or (H, W, 4) array")
    elif color_order not in ("rgb", "bgr"):
        raise ConfigError(
            f"{name}: say the colour order of numpy arrays with color_order='rgb' or 'bgr' (OpenCV)"
        )
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError(name, "array contains NaN or infinity")
        low, high = float(arr.min()), float(arr.max())
        if low < 0.0 or high > 1.0:
            raise ConfigError(
                f"{name}: float pixels must lie in [0, 1], these lie in [{low:g}, {high:g}]"
                + (" (0-255 values: divide by 255 or pass uint8)" if high <= 255.0 and low >= 0.0 else "")
            )
        arr = (arr * 255.0 + 0.5).astype(np.uint8)
    else:
        raise ConfigError(f"{name}: expected uint8 (0-255) or float (0-1) pixels, got {arr.dtype}")
    if color_order == "bgr":
        arr = arr[..., ::-1]
    _check_size(arr, name)
    return np.ascontiguousarray(arr)


def _grey_to_rgb(arr: np.ndarray) -> np.ndarray:
    return np.repeat(arr[..., None], 3, axis=2)


def _check_size(arr: np.ndarray, name: str) -> None:
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(name, f"image has no pixels ({arr.shape[1]}x{arr.shape[0]})")


def apply_gamma(rgb: np.ndarray, value: float, gain: float = 1.0) -> np.ndarray:
    """``255 * gain * (x / 255) ** value`` per pixel: value > 1 darkens, < 1 brightens,
    black stays black."""
    import cv2

    lut = np.clip(255.0 * gain * (np.arange(256) / 255.0) ** value + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, lut)
