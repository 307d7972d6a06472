"""Evaluation metrics: NAB scoring, point-wise anomaly metrics, prequential classification.

Submodules
----------
nab
    Numenta Anomaly Benchmark scoring (windows, sigmoid credit, profiles, threshold sweep).
anomaly
    Point-wise ROC-AUC, average precision and the SKAB F1/FAR/MAR metrics.
classification
    Prequential accuracy, rolling accuracy, Cohen's kappa, labelled/unlabelled split.
"""

from streamal.evaluation.anomaly import (
    BinaryCounts,
    SkabMetrics,
    average_precision,
    binary_counts,
    pr_auc,
    roc_auc,
    skab_metrics,
)
from streamal.evaluation.classification import (
    LabelledSplitAccuracy,
    cohen_kappa,
    labelled_split_accuracy,
    prequential_accuracy,
    rolling_accuracy,
)
from streamal.evaluation.nab import (
    NAB_PROFILES,
    NabProfile,
    NabResult,
    NabRowWeights,
    NabSeriesScore,
    NabSweep,
    nab_row_weights,
    nab_score,
    nab_sweep,
    probationary_length,
    read_nab_labels,
    scaled_sigmoid,
    windows_from_labels,
)

__all__ = [
    "NAB_PROFILES",
    "BinaryCounts",
    "LabelledSplitAccuracy",
    "NabProfile",
    "NabResult",
    "NabRowWeights",
    "NabSeriesScore",
    "NabSweep",
    "SkabMetrics",
    "average_precision",
    "binary_counts",
    "cohen_kappa",
    "labelled_split_accuracy",
    "nab_row_weights",
    "nab_score",
    "nab_sweep",
    "pr_auc",
    "prequential_accuracy",
    "probationary_length",
    "read_nab_labels",
    "roc_auc",
    "rolling_accuracy",
    "scaled_sigmoid",
    "skab_metrics",
    "windows_from_labels",
]
