"""streamal: streaming online learning by activation learning.

One network, trained record by record with a local competitive rule, gives
anomaly scores (:class:`ActivationDetector`), semi-supervised class
predictions (:class:`ActivationClassifier`) and completions of missing
values. :class:`ActivationNetwork` is the engine for work with tensors.
"""

from streamal.estimators import ActivationClassifier, ActivationDetector
from streamal.network import ActivationNetwork

__all__ = ["ActivationClassifier", "ActivationDetector", "ActivationNetwork"]
__version__ = "0.1.0"
