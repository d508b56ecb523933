"""Optional features and the extra that installs each one.

``pip install facegate`` is the runtime: onnxruntime, OpenCV, numpy, Pillow and click, and
the shipped ONNX graphs; it scores, filters, reports, calibrates on a reject rate and
watches streams. What needs more comes as an extra (``setup.cfg``):

    torch   backend="torch" (the PyTorch scorer, facenet-pytorch's MTCNN), the MobileFaceNet
            recognizer (``calibrate --target-fnmr``, ``evaluate``) and the observer
    eval    ``evaluate --plot`` (matplotlib), with torch
    onnx    ``facegate export``, with torch
    train   ``python -m train.*``, with torch
    ray     ``filter --engine ray``, ``facegate.distributed``
    serve   ``facegate serve`` (Starlette, uvicorn, websockets, python-multipart)
    dev     all of these and what the tests need

:func:`require` checks that an extra's packages are installed *before* a feature imports
them, so a user gets one line that names the extra to install, never an ImportError from
deep inside. The check only looks the packages up (``importlib.util.find_spec``); it imports
nothing, so asking costs nothing on the light install.
"""

from __future__ import annotations

import importlib.util

from .errors import FacegateError

__all__ = ["EXTRAS", "MissingExtraError", "installed", "missing", "require"]

#: The import names each extra brings (the packages the feature imports, not all of pip's).
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "torchvision", "facenet_pytorch"),
    "eval": ("torch", "matplotlib"),
    "onnx": ("torch", "onnx", "onnxscript"),
    "train": ("torch", "torchvision", "scipy"),
    "ray": ("ray", "pyarrow"),
    "serve": ("starlette", "uvicorn", "websockets"),
}


class MissingExtraError(FacegateError, ImportError):
    """A feature whose optional packages are not installed; names the extra that brings them.

    Also an ``ImportError``, so code that already guards an optional import keeps working."""

    def __init__(self, feature: str, extra: str, module: str):
        self.feature, self.extra, self.module = feature, extra, module
        super().__init__(f"{feature} needs the '{extra}' extra ({module} is not installed): "
                         f"pip install 'facegate[{extra}]'")


def missing(extra: str) -> list[str]:
    """The import names of ``extra`` that are not installed (empty: the extra is there)."""
    if extra not in EXTRAS:
        raise KeyError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def installed() -> dict[str, bool]:
    """Whether each extra is installed, for ``facegate info``."""
    return {extra: not missing(extra) for extra in EXTRAS}


def require(extra: str, feature: str) -> None:
    """Raise :class:`MissingExtraError` unless every package of ``extra`` is installed.

    Args:
        extra: a key of :data:`EXTRAS`.
        feature: what the user asked for, as they would name it (``"--backend torch"``).
    """
    absent = missing(extra)
    if absent:
        raise MissingExtraError(feature, extra, absent[0])
