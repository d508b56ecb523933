"""Shared fixtures. Tests that need ../shared (LFW, the recognition model) are marked
``shared`` and skip with a reason when it is absent; CI has it, so they run there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = ROOT.parent / "shared"

torch.set_num_threads(2)


def shared_available() -> bool:
    return (SHARED / "data" / "lfw-deepfunneled").is_dir() and (SHARED / "models" / "mobilefacenet_casia.ckpt").is_file()


needs_shared = pytest.mark.skipif(
    not shared_available(), reason=f"needs the shared LFW data and recognition model in {SHARED}"
)


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def shared() -> Path:
    if not shared_available():
        pytest.skip(f"needs the shared LFW data and recognition model in {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def gate():
    from facegate import Gate

    return Gate(threads=2)


@pytest.fixture(scope="session")
def face_rgb(fixtures) -> np.ndarray:
    from facegate.images import load_rgb

    return load_rgb(fixtures / "colin_powell_1.jpg")


ENROLLMENT_PEOPLE = 6


@pytest.fixture(scope="session")
def enrollment(shared, tmp_path_factory):
    """ENROLLMENT_PEOPLE LFW evaluation people (never trained on) with three or more photos each; every third photo blurred or
    darkened hard, as a careless enrollment desk would take it."""
    import cv2

    from facegate.images import load_rgb
    from train.degradations import gamma, gaussian_blur
    from train.lfw import evaluation_people

    lfw = shared / "data" / "lfw-deepfunneled"
    people = [p for p in sorted(evaluation_people(shared)) if len(list((lfw / p).glob("*.jpg"))) >= 3][:ENROLLMENT_PEOPLE]
    root = tmp_path_factory.mktemp("enrollment")
    for k, person in enumerate(people):
        (root / person).mkdir()
        for j, photo in enumerate(sorted((lfw / person).glob("*.jpg"))[:3]):
            rgb = load_rgb(photo)
            if j == 2:
                rgb = gaussian_blur(rgb, 6.0) if k % 2 else gamma(rgb, 5.0)
            cv2.imwrite(str(root / person / photo.name), rgb[..., ::-1])
    (root / people[0] / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return root
