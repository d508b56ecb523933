"""facegate: gate face captures before they reach a face-recognition system.

Decode -> detect -> align and crop (the capture stage) -> score with a small CNN ensemble ->
accept or reject with a reason. The default path runs on onnxruntime and OpenCV; torch is
imported only for training, export and ``backend="torch"``.

    >>> from facegate import Gate
    >>> gate = Gate()
    >>> gate.assess("photo.jpg").status
"""

from importlib import import_module
from typing import TYPE_CHECKING

#: Where each public name lives. Loaded on first use (PEP 562), so `import facegate` costs
#: nothing until a name is used, and a command loads only the stages it runs.
_EXPORTS = {
    "Capture": "capture", "CaptureStage": "capture", "analyse": "capture",
    "Face": "detection", "MTCNNDetector": "detection", "YuNetDetector": "detection",
    "choose_primary": "detection", "create_detector": "detection",
    "ConfigError": "errors", "FacegateError": "errors", "ImageError": "errors", "SourceError": "errors",
    "WeightsError": "errors",
    "CaptureResult": "gate", "Gate": "gate",
    "REASONS": "policy", "Policy": "policy", "Status": "policy", "decide": "policy",
    "Scorer": "scorer", "Scores": "scorer", "create_scorer": "scorer", "default_weights_dir": "scorer",
    "weights_info": "scorer",
    "SCORE_SCALE": "spec", "ScorerSpec": "spec",
    "CaptureSettings": "capture", "Weights": "registry",
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .capture import Capture, CaptureSettings, CaptureStage, analyse  # noqa: F401
    from .registry import Weights  # noqa: F401
    from .detection import Face, MTCNNDetector, YuNetDetector, choose_primary, create_detector  # noqa: F401
    from .errors import ConfigError, FacegateError, ImageError, SourceError, WeightsError  # noqa: F401
    from .gate import CaptureResult, Gate  # noqa: F401
    from .policy import REASONS, Policy, Status, decide  # noqa: F401
    from .scorer import Scorer, Scores, create_scorer, default_weights_dir, weights_info  # noqa: F401
    from .spec import SCORE_SCALE, ScorerSpec  # noqa: F401


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facegate' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


from .version import __version__  # noqa: E402

__all__ = [
    "Capture",
    "CaptureResult",
    "CaptureSettings",
    "CaptureStage",
    "ConfigError",
    "Face",
    "FacegateError",
    "Gate",
    "ImageError",
    "MTCNNDetector",
    "Policy",
    "REASONS",
    "SCORE_SCALE",
    "Scorer",
    "ScorerSpec",
    "Scores",
    "SourceError",
    "Status",
    "Weights",
    "WeightsError",
    "YuNetDetector",
    "analyse",
    "choose_primary",
    "create_detector",
    "create_scorer",
    "decide",
    "default_weights_dir",
    "weights_info",
    "__version__",
]
