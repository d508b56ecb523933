"""Face recognizers, used to measure recognition utility (training labels, evaluation,
``calibrate --target-fnmr``).

Any recognizer that maps faces to embeddings can stand in: implement :class:`Recognizer`
(``embed(list of (H, W, 3) uint8 RGB images, landmarks) -> (N, D)`` unit vectors) and name
its factory as ``module:factory``. The MobileFaceNet of ``../shared/models`` (Chen et al.
2018) lives in :mod:`facegate.mobilefacenet` and needs the ``torch`` extra; this module does
not import torch, so a recognizer of your own runs on the light install.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from .alignment import MOBILEFACENET_TEMPLATE
from .errors import WeightsError

__all__ = ["MobileFaceNet", "MobileFaceNetRecognizer", "Recognizer", "MOBILEFACENET_TEMPLATE", "STAGE_CHANNELS",
           "STAGE_NAMES", "load_recognizer"]

#: The names :mod:`facegate.mobilefacenet` defines, imported from there on first use (PEP 562).
_NETWORK_NAMES = ("MobileFaceNet", "MobileFaceNetRecognizer", "STAGE_CHANNELS", "STAGE_NAMES")

class Recognizer(Protocol):
    """Maps faces to L2-normalised embeddings compared by cosine similarity."""

    def embed(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray: ...


def __getattr__(name: str):
    if name in _NETWORK_NAMES:
        from .extras import require

        require("torch", "the MobileFaceNet recognizer")
        from . import mobilefacenet

        return getattr(mobilefacenet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_recognizer(spec: str, **options) -> Recognizer:
    """A recognizer from a command-line style ``spec``: the path of a MobileFaceNet
    checkpoint, or ``module:factory`` naming a callable that returns an object with
    ``embed(images, landmarks) -> (N, D)`` unit vectors (your own model; e.g. a wrapper
    around facenet-pytorch's InceptionResnetV1 with weights you have)."""
    import importlib
    from pathlib import Path

    if Path(spec).is_file():
        from .extras import require

        require("torch", f"--recognizer {spec} (a MobileFaceNet checkpoint)")
        from .mobilefacenet import MobileFaceNetRecognizer

        return MobileFaceNetRecognizer(spec, **options)
    module, sep, name = spec.partition(":")
    if not sep:
        raise WeightsError(f"{spec}: neither a checkpoint file nor 'module:factory'")
    wanted = ("module:factory must name a function or class that returns an object with "
              "embed(images, landmarks) -> (N, D) unit vectors")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise WeightsError(f"{spec}: cannot import the recognizer factory ({exc})") from None
    if not callable(factory):
        raise WeightsError(f"{spec}: {name!r} in {module} is a {type(factory).__name__}, not callable; {wanted}")
    try:
        recognizer = factory(**options)
    except Exception as exc:
        raise WeightsError(f"{spec}: the factory failed ({type(exc).__name__}: {exc}); {wanted}") from None
    if not callable(getattr(recognizer, "embed", None)):
        raise WeightsError(f"{spec}: the factory returned a {type(recognizer).__name__} with no "
                           f"embed(images, landmarks) method; {wanted}")
    return recognizer
