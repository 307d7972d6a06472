"""The river estimators of streamal: an anomaly detector and a semi-supervised classifier."""

from streamal.estimators.classifier import ActivationClassifier
from streamal.estimators.detector import ActivationDetector

__all__ = ["ActivationClassifier", "ActivationDetector"]
