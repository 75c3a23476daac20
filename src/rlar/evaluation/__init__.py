"""Metrics (segmentation, classification, calibration, fold summaries) and model evaluation."""

from rlar.evaluation.evaluate import (
    evaluate,
    metrics_from_predictions,
    predict,
    predictions_table,
    validation_score,
)
from rlar.evaluation.metrics import (
    WORST_CASE_HD95,
    classification_metrics,
    expected_calibration_error,
    format_mean_std,
    segmentation_metrics,
    summarise_folds,
)

__all__ = [
    "WORST_CASE_HD95",
    "classification_metrics",
    "evaluate",
    "expected_calibration_error",
    "format_mean_std",
    "metrics_from_predictions",
    "predict",
    "predictions_table",
    "segmentation_metrics",
    "summarise_folds",
    "validation_score",
]
