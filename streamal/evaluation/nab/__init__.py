"""NAB scoring: the Numenta Anomaly Benchmark's window-based detection score.

This package re-implements, from NAB's published rules, the scorer of
`numenta/NAB` (``nab/sweeper.py``, ``nab/scorer.py``, ``nab/optimizer.py`` and the
normalisation step of ``nab/runner.py``) so that it reproduces NAB's own numbers.

Rules (for one series of ``n`` rows indexed ``0..n-1`` in time order):

1. **Detections.** At threshold ``theta`` row ``i`` is a detection when
   ``anomaly_score[i] >= theta``.  A NaN score is never a detection.
2. **Probationary period.** ``P = min(floor(0.15 * n), 0.15 * 5000)`` (so at most 750 rows).
   Rows ``0..P-1`` are excluded from everything: no credit, no penalty, no counts, and
   their scores are not candidate thresholds.  A window counts only if at least one of
   its rows is past probation.
3. **Shape.** ``f(x) = 2 / (1 + exp(5 x)) - 1`` (``2 sigmoid(-5x) - 1``), and ``f(x) = -1``
   exactly when ``x > 3``.
4. **Detection inside a window** ``[L, R]`` of width ``w = R - L + 1``: relative position
   ``y = -(R - i + 1) / w`` (``-1`` on the first row) and credit ``A_tp f(y) / f(-1)``,
   so a detection on the window's first row earns exactly ``A_tp``.
5. **Detection outside every window.** Full cost ``-A_fp`` if no window ended before row
   ``i``; otherwise, with ``R'``, ``w'`` the last row and width of the most recent window
   that ended before ``i``, the cost is ``A_fp f((i - R') / (w' - 1))``.
6. **Raw score of a series** = sum over windows of (the largest credit among the window's
   detections, i.e. its earliest one, or ``-A_fn`` if it has none) + the sum of the costs
   of all detections outside windows.
7. **Counts** are per row past probation: TP/FN = detected/undetected rows inside windows,
   FP/TN = detected/undetected rows outside windows.
8. **Corpus** raw score and counts = sums over series.  One threshold is used for all series.
9. **Threshold sweep.** Candidates are a "nothing detected" threshold (1.1, as in NAB)
   and every distinct score past probation; the candidate with the largest corpus raw
   score wins, ties going to the highest threshold (NAB's optimiser).
10. **Normalisation.** ``100 (raw - null) / (perfect - null)`` with
    ``null = -A_fn x (windows with a row past probation)`` (the raw score of NAB's
    never-firing ``null`` detector) and ``perfect = A_tp x (all windows of the scored
    series)`` (NAB counts every labelled window here).

The floating-point operations follow NAB's order so per-row weights agree with NAB's
bit for bit; corpus sums may differ from NAB's in the last bits (about 1e-15).

Modules
-------
labels
    Label windows, detector output, and the rows each window covers.
profiles
    Cost matrices and the scaled sigmoid (rule 3).
weights
    Probation and what a detection on each row earns (rules 2-5).
sweep
    The threshold optimiser (rule 9).
scoring
    Per-series scores, counts and the normalised corpus score (rules 6-8, 10).

Examples
--------
>>> import numpy as np
>>> t = np.arange(40)
>>> s = np.zeros(40); s[20] = 1.0          # alarm on the first row of the window
>>> res = nab_score({"a": (t, s)}, {"a": [(20, 29)]}, threshold=0.5)
>>> float(res.raw_score), float(res.normalized_score)
(1.0, 100.0)
"""

from streamal.evaluation.nab.labels import SeriesInput as SeriesInput
from streamal.evaluation.nab.labels import WindowsInput as WindowsInput
from streamal.evaluation.nab.labels import read_nab_labels, windows_from_labels
from streamal.evaluation.nab.profiles import NAB_PROFILES, NabProfile, scaled_sigmoid
from streamal.evaluation.nab.scoring import NabResult, NabSeriesScore, nab_score
from streamal.evaluation.nab.sweep import NOTHING_DETECTED_THRESHOLD, NabSweep, nab_sweep
from streamal.evaluation.nab.weights import DEFAULT_PROBATION_PERCENT as DEFAULT_PROBATION_PERCENT
from streamal.evaluation.nab.weights import NabRowWeights, nab_row_weights, probationary_length

__all__ = [
    "NAB_PROFILES",
    "NOTHING_DETECTED_THRESHOLD",
    "NabProfile",
    "NabResult",
    "NabRowWeights",
    "NabSeriesScore",
    "NabSweep",
    "nab_row_weights",
    "nab_score",
    "nab_sweep",
    "probationary_length",
    "read_nab_labels",
    "scaled_sigmoid",
    "windows_from_labels",
]
