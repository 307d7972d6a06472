"""Running moments that also keep each feature's range, for the classifier's encoding.

The classifier centres each feature by its running mean and divides it by a
quarter of its running range (the span of a feature spread evenly over four
standard deviations) instead of by its standard deviation. The range is a
unit-free scale like the standard deviation, but it does not inflate a feature
that is almost always at one value: a pixel that is dark on 95 % of the
records has a small standard deviation, so its z-score on a bright record is
large, whereas its range is the whole intensity scale.

Examples
--------
>>> import numpy as np
>>> moments = RangeMoments(2)
>>> moments.update(np.array([[0.0, 1.0], [0.0, 3.0], [16.0, np.nan]]))
>>> moments.low, moments.high
(array([0., 1.]), array([16.,  3.]))
>>> moments.range_scale()
array([4. , 0.5])
"""

from __future__ import annotations

import numpy as np

from streamal.encoding import RunningMoments

RANGE_SPREAD = 4.0
"""A feature's range counts as this many standard deviations."""


class RangeMoments(RunningMoments):
    """:class:`~streamal.encoding.RunningMoments` plus each column's smallest and largest value.

    Missing values (NaN) are left out; a column with no value yet has a NaN range.
    """

    def __init__(self, size: int = 0):
        super().__init__(size)
        self.low = np.full(size, np.nan)
        self.high = np.full(size, np.nan)

    def grow(self, extra: int) -> None:
        super().grow(extra)
        self.low = np.concatenate([self.low, np.full(extra, np.nan)])
        self.high = np.concatenate([self.high, np.full(extra, np.nan)])

    def update(self, values: np.ndarray) -> None:
        super().update(values)
        if len(values):
            present = ~np.isnan(values)
            seen = present.any(axis=0)
            low = np.where(present, values, np.inf).min(axis=0)
            high = np.where(present, values, -np.inf).max(axis=0)
            self.low = np.where(seen, np.fmin(self.low, low), self.low)
            self.high = np.where(seen, np.fmax(self.high, high), self.high)

    def range_scale(self) -> np.ndarray:
        """``(high − low) / RANGE_SPREAD`` per column; :attr:`scale` where the range is
        still 0 or unknown."""
        spread = (self.high - self.low) / RANGE_SPREAD
        return np.where(spread > 0, spread, self.scale)  # NaN compares False
