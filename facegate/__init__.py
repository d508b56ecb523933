"""facegate: gate face captures before they reach a face-recognition system.

Detect -> align and crop -> score with a small CNN ensemble -> accept or reject with a reason.

    >>> from facegate import Gate
    >>> gate = Gate()
    >>> gate.assess("photo.jpg").status
"""

from .detection import Face, MTCNNDetector, choose_primary
from .errors import ConfigError, FacegateError, ImageError, WeightsError
from .gate import CaptureResult, Gate
from .policy import REASONS, Policy, Status, decide
from .scorer import Scorer, default_weights_dir
from .spec import SCORE_SCALE, ScorerSpec

__version__ = "0.1.0"

__all__ = [
    "CaptureResult",
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
    "Status",
    "WeightsError",
    "choose_primary",
    "decide",
    "default_weights_dir",
    "__version__",
]
