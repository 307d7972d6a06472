"""The live pipeline: a source, a model and sinks, joined with checkpoints.

:class:`Pipeline` polls micro-batches from a :class:`~streamal.connectors.Source`,
decodes them with a :class:`RecordDecoder`, scores or classifies every record
*before* learning it, emits scores, predictions, alerts, drift events and dead
letters to sinks, and checkpoints models, thresholds, drift detectors, counters
and source positions so that a stopped or crashed run resumes exactly.
"""

from streamal.runtime.alerts import AlertPolicy, FixedThreshold, QuantileThreshold
from streamal.runtime.decode import Decoded, DecodeError, RecordDecoder
from streamal.runtime.observer import Observer, Observers
from streamal.runtime.outputs import RunSummary
from streamal.runtime.pipeline import Pipeline

__all__ = [
    "AlertPolicy",
    "DecodeError",
    "Decoded",
    "FixedThreshold",
    "Observer",
    "Observers",
    "Pipeline",
    "QuantileThreshold",
    "RecordDecoder",
    "RunSummary",
]
