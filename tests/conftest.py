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
