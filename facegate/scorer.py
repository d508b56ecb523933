"""Score aligned face crops with the quality ensemble: one front door, two backends.

:func:`create_scorer` is the only way facegate builds a scorer. ``backend="onnx"`` (the
default) runs each member's ONNX graph, shipped beside its weights, in onnxruntime;
``backend="torch"`` runs the same members in PyTorch (training, export, GPUs). Both give
:class:`Scores` with the ensemble's and every member's scores, for every view setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ConfigError, WeightsError
from .registry import Weights, default_weights_dir, weights_folder
from .scores import VIEWS, Scorer, Scores, check_crops, combine, open_weights, resolve_views, view_batch
from .spec import ScorerSpec

__all__ = ["BACKENDS", "VIEWS", "OnnxScorer", "Scorer", "Scores", "create_scorer", "default_weights_dir",
           "resolve_views", "view_batch", "weights_info", "CODE_LICENSE"]

#: The licence of facegate's code (``LICENSE``). Weights carry their own terms in their spec.
CODE_LICENSE = "MIT"

BACKENDS = ("onnx", "torch")


def weights_info(weights: str | Path | Weights | None = None) -> dict:
    """Which weights a gate with ``weights`` loads, their score scale and their terms, beside
    the code's licence, the shipped detectors' terms and the extras installed (what
    ``facegate info`` prints). Reads ``spec.json`` only: no model is loaded.

    The weights' terms can be narrower than the code's: the shipped weights inherit the
    terms of the photos and recognizer that trained them (non-commercial research use)."""
    from .version import __version__
    from .detection import SHIPPED_DETECTOR_TERMS
    from .extras import installed

    folder = weights_folder(weights)
    spec = ScorerSpec.load(folder / "spec.json")
    card = folder / "MODEL_CARD.md"
    return {
        "facegate": __version__,
        "code_license": CODE_LICENSE,
        "weights": {
            "folder": str(folder), "shipped": folder == default_weights_dir(), "name": spec.name,
            "terms": spec.terms or "not stated in the spec: the terms of the photos, recognizer and starting "
                                   "weights that trained them",
            "score_scale": spec.score_scale, "default_threshold": spec.default_threshold,
            "members": {m: spec.member_sha256.get(m, "") for m in spec.members},
            "input_size": spec.input_size, "views": list(spec.views),
            "model_card": str(card) if card.is_file() else None,
        },
        "detectors": dict(SHIPPED_DETECTOR_TERMS),
        "helpers": _helper_terms(),
        "extras": installed(),
    }


def _helper_terms() -> dict:
    """The capture stage's helper networks (orientation, occlusion) and their terms, from
    their ``.json`` files (no model is loaded)."""
    import json

    out = {}
    for name in ("orientation", "occlusion"):
        path = default_weights_dir() / f"{name}.json"
        try:
            out[name] = json.loads(path.read_text()).get("terms") or "not stated"
        except (OSError, ValueError):
            out[name] = f"missing ({path})"
    return out


class OnnxScorer:
    """The ensemble on onnxruntime: one graph per member (``<arch>.onnx`` beside the
    weights, made by ``python -m facegate.export --members DIR``), test-time views applied
    to the batch before it goes in. Needs neither torch nor torchvision.

    Each graph carries the sha256 of the ``.pt`` file it was made from and is refused when
    that is not the digest ``spec.json`` gives for the member.
    """

    backend = "onnx"

    def __init__(self, weights: str | Path | None = None, *, views: str | Sequence[str] = "full",
                 members: Sequence[str] | None = None, threads: int = 1):
        self.weights_dir, self.spec, self.member_names = open_weights(weights, members)
        folder = self.weights_dir
        self.views = resolve_views(views, self.spec)
        from .runtime import load_onnx

        self._sessions = []
        for name in self.member_names:
            path = folder / f"{name}.onnx"
            if not path.is_file():
                raise WeightsError(f"{path}: no ONNX graph for member {name}; make it with "
                                   f"`python -m facegate.export --members {folder}`, or use backend='torch'")
            session = load_onnx(path, threads)
            meta = session.get_modelmeta().custom_metadata_map
            expected = self.spec.member_sha256.get(name)
            if not expected or meta.get("facegate_weights_sha256") != expected:
                raise WeightsError(f"{path}: made from other weights than {name}.pt in spec.json "
                                   f"(re-export with `python -m facegate.export --members {folder}`)")
            self._sessions.append(session)

    def score(self, crops: np.ndarray) -> Scores:
        crops = check_crops(crops, self.spec.input_size)
        if not len(crops):
            return Scores(np.zeros(0), {n: np.zeros(0) for n in self.member_names})
        batch = view_batch(crops, self.views)
        raw = np.stack([session.run(None, {"crops": batch})[0].reshape(-1) for session in self._sessions])
        return combine(self.spec, self.member_names, raw.astype(np.float64), len(self.views))


def create_scorer(weights: str | Path | None = None, *, backend: str = "onnx", views: str | Sequence[str] = "full",
                  members: Sequence[str] | None = None, threads: int = 1, device: str = "cpu") -> Scorer:
    """The scorer for a weights folder (default: the shipped weights).

    Args:
        weights: folder with ``spec.json``, ``<arch>.pt`` and (for onnx) ``<arch>.onnx``.
        backend: ``"onnx"`` (default; onnxruntime, no torch) or ``"torch"``.
        views: test-time views, ``"none"``, ``"flip"`` or ``"full"``.
        members: use only these members (e.g. to score with one model).
        threads: intra-op threads of the backend.
        device: torch device (``backend="torch"`` only).
    """
    if backend == "onnx":
        if device != "cpu":
            raise ConfigError(f"device {device!r} needs backend='torch' (the onnx backend runs on the CPU)")
        return OnnxScorer(weights, views=views, members=members, threads=threads)
    if backend == "torch":
        from .extras import require

        require("torch", "the torch backend (--backend torch)")
        from .models import TorchScorer

        return TorchScorer(weights, views=views, members=members, device=device, threads=threads)
    raise ConfigError(f"unknown backend {backend!r}; choose from {BACKENDS}")
