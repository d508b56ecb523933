"""Does discarding low-quality captures make recognition fail less, and where should the
threshold go? By role:

- :mod:`.metrics`: EDC, pAUC, FNMR/FMR, threshold choice (pure functions of arrays);
- :mod:`.measure`: measuring captures on the shared capture stage (quality by every
  :class:`Method`, embeddings), and reading labelled captures;
- :mod:`.report`: EDC reports, held-out calibration checks, plots and report files.
"""

from .measure import (BASELINES, OBSERVER, MeasuredCaptures, Method, impostor_comparisons, labelled_captures,
                      laplacian_variance, measure_captures, view_name)
from .metrics import (EDC, FNMRTarget, calibrate_for_fnmr, comparison_threshold, edc, false_match_rate,
                      false_non_match_rate, pair_scores, pairwise_quality, perfect_edc, random_pauc,
                      threshold_for_reject_rate, MIN_REJECTED_FOR_CALIBRATION, min_genuine_for_fnmr, wilson_interval)
from .report import CEILING, PERFECT, RANDOM, edc_report, gap_closed, held_out_check, plot_edc, write_report

__all__ = [
    "BASELINES", "CEILING", "EDC", "FNMRTarget", "MeasuredCaptures", "Method", "OBSERVER", "PERFECT", "RANDOM",
    "calibrate_for_fnmr", "comparison_threshold", "edc", "edc_report", "gap_closed", "false_match_rate",
    "false_non_match_rate", "held_out_check", "impostor_comparisons", "labelled_captures",
    "laplacian_variance", "measure_captures", "pair_scores", "pairwise_quality", "perfect_edc", "plot_edc",
    "random_pauc", "threshold_for_reject_rate", "view_name", "write_report", "MIN_REJECTED_FOR_CALIBRATION",
    "min_genuine_for_fnmr", "wilson_interval",
]
