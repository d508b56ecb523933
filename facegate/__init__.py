"""facegate: gate face captures before they reach a face-recognition system.

Decode -> detect -> align and crop (the capture stage) -> score with a small CNN ensemble ->
accept or reject with a reason. The default path runs on onnxruntime and OpenCV; torch is
imported only for training, export and ``backend="torch"``.

    >>> from facegate import Gate
    >>> gate = Gate()
    >>> gate.assess("photo.jpg").status
"""

from .capture import Capture, CaptureStage, analyse
from .detection import Face, MTCNNDetector, YuNetDetector, choose_primary, create_detector
from .errors import ConfigError, FacegateError, ImageError, SourceError, WeightsError
from .gate import CaptureResult, Gate
from .policy import REASONS, Policy, Status, decide
from .scorer import Scorer, Scores, create_scorer, default_weights_dir
from .spec import SCORE_SCALE, ScorerSpec

__version__ = "0.2.0.dev0"

__all__ = [
    "Capture",
    "CaptureResult",
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
    "WeightsError",
    "YuNetDetector",
    "analyse",
    "choose_primary",
    "create_detector",
    "create_scorer",
    "decide",
    "default_weights_dir",
    "__version__",
]
