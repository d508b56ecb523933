import numpy as np
import pytest
from PIL import Image

from facegate.errors import ConfigError, ImageError
from facegate.images import load_rgb


def test_path_pil_and_arrays_agree(fixtures):
    path = fixtures / "colin_powell_1.jpg"
    from_path = load_rgb(path)
    assert from_path.shape == (250, 250, 3) and from_path.dtype == np.uint8
    assert np.array_equal(load_rgb(Image.open(path)), from_path)
    assert np.array_equal(load_rgb(from_path, color_order="rgb"), from_path)
    assert np.array_equal(load_rgb(from_path[..., ::-1].copy(), color_order="bgr"), from_path)
    as_float = load_rgb(from_path.astype(np.float32) / 255.0, color_order="rgb")
    assert np.abs(as_float.astype(int) - from_path).max() <= 1


def test_colour_array_needs_explicit_order(face_rgb):
    with pytest.raises(ConfigError, match="color_order"):
        load_rgb(face_rgb)


def test_bad_shapes_and_types_are_programmer_errors():
    with pytest.raises(ConfigError):
        load_rgb(np.zeros((4, 4, 5), np.uint8), color_order="rgb")
    with pytest.raises(ConfigError):
        load_rgb(np.zeros((4, 4, 3), np.int64), color_order="rgb")
    with pytest.raises(ConfigError):
        load_rgb(12345)


@pytest.mark.parametrize(
    "content, cause",
    [(b"", "empty file"), (b"this is text, not a JPEG", "cannot decode"), (b"\xff\xd8\xff\xe0" + b"\0" * 40, "cannot decode")],
)
def test_bad_files_raise_image_error_naming_file(tmp_path, content, cause):
    bad = tmp_path / "capture.jpg"
    bad.write_bytes(content)
    with pytest.raises(ImageError, match=cause) as info:
        load_rgb(bad)
    assert str(bad) in str(info.value)


def test_truncated_jpeg_is_unreadable(tmp_path, fixtures):
    data = (fixtures / "colin_powell_1.jpg").read_bytes()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError):
        load_rgb(bad)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="cannot access"):
        load_rgb(tmp_path / "nope.jpg")


def test_modes_become_rgb(tmp_path, face_rgb):
    pil = Image.fromarray(face_rgb)
    for mode in ("L", "P", "RGBA", "CMYK", "I;16"):
        img = pil.convert("L").convert(mode) if mode == "I;16" else pil.convert(mode)
        path = tmp_path / f"x_{mode.replace(';', '')}.{'tif' if mode in ('CMYK', 'I;16') else 'png'}"
        img.save(path)
        out = load_rgb(path)
        assert out.shape == (250, 250, 3) and out.dtype == np.uint8, mode


def test_exif_orientation_is_honoured(tmp_path, face_rgb):
    pil = Image.fromarray(face_rgb[:, :200])  # 200 wide, 250 high
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    pil.save(path, exif=exif)
    assert load_rgb(path).shape[:2] == (200, 250)


def test_float_arrays_outside_0_1_are_refused_with_what_was_received(face_rgb):
    from facegate.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\[0, 255\].*divide by 255"):
        load_rgb(face_rgb.astype(np.float32) * (255.0 / face_rgb.max()), color_order="rgb")
    with pytest.raises(ConfigError, match=r"\[-1, 1\]"):
        load_rgb(np.linspace(-1, 1, 300).reshape(10, 10, 3), color_order="rgb")
