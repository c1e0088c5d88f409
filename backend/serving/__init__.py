"""The request path: resolve the version, validate, micro-batch, predict, log."""

from backend.serving.prediction_log import LoggedPrediction, PredictionLog
from backend.serving.service import ServeResult, ServingService

__all__ = ["LoggedPrediction", "PredictionLog", "ServeResult", "ServingService"]
