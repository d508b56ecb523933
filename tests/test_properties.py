"""Property-based checks: random bytes and random arrays never crash the gate, and every
input gets a status and a finite score or none."""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from facegate import Status
from facegate.errors import ConfigError, ImageError
from facegate.images import load_rgb

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(data=st.binary(min_size=0, max_size=2048), suffix=st.sampled_from([".jpg", ".png", ".gif", ".bmp", ".tif"]))
def test_random_bytes_are_unreadable_not_a_crash(tmp_path_factory, gate, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"capture{suffix}"
    path.write_bytes(data)
    result = gate.assess(path)
    assert result.status in set(Status)
    assert result.score is None or math.isfinite(result.score)
    if result.status is Status.UNREADABLE:
        assert result.error


@SETTINGS
@given(
    image=arrays(
        np.uint8,
        st.tuples(st.integers(1, 96), st.integers(1, 96), st.sampled_from([3, 4])),
        elements=st.integers(0, 255),
    )
)
def test_random_arrays_get_a_status(gate, image):
    result = gate.assess(image, color_order="bgr")
    assert result.status in (Status.ACCEPTED, Status.REJECTED, Status.NO_FACE)
    assert result.score is None or result.status is not Status.NO_FACE  # a score belongs to a face
    assert (result.error is None) == (result.status is not Status.UNREADABLE)


@SETTINGS
@given(
    image=arrays(np.float32, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(3)),
                 elements=st.one_of(st.floats(-2.0, 2.0, width=32), st.floats(0.0, 1.0, width=32), st.sampled_from([np.nan, np.inf, -np.inf])))
)
def test_float_arrays_are_converted_or_refused(image):
    """Floats in [0, 1] become uint8; NaN or infinity is an unreadable image; anything
    outside [0, 1] (often 0-255 floats) is a usage error, never silently clipped."""
    try:
        out = load_rgb(image, color_order="rgb")
    except ImageError as exc:
        assert "NaN" in str(exc)
        assert not np.isfinite(image).all()
    except ConfigError as exc:
        assert "[0, 1]" in str(exc)
        assert np.isfinite(image).all() and (image.min() < 0.0 or image.max() > 1.0)
    else:
        assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert np.abs(out.astype(np.float32) - image * 255.0).max() <= 0.5 + 1e-3
