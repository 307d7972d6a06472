"""The anomaly detector: how far a record is from what the network has learnt."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from river.base import AnomalyDetector

from streamal.encoding import validate_features
from streamal.estimators.base import ActivationEstimator, frame_values
from streamal.inference import complete


class ActivationDetector(ActivationEstimator, AnomalyDetector):
    """Online anomaly detector by activation learning.

    Every record is standardised with running moments, normalised to unit
    length (with a bias unit that keeps the size of its deviation) and fed to a
    small network trained by the local competitive rule. The anomaly score is
    ``1 − ‖y‖²/‖x‖²`` in ``[0, 1]``: the share of the record that the learnt
    pattern does not explain. Scoring never changes the model.

    Parameters
    ----------
    hidden
        Units per layer. ``None`` sizes one layer from the first record,
        ``round(√(features + 1))`` units: far fewer than the inputs, so
        the network cannot reproduce every record and only the typical ones
        come through (measured on river's Shuttle stream; see BENCHMARKS.md).
    activation
        Nonlinearity between layers: ``"std_abs"``, ``"abs"`` or ``"layer_norm_abs"``.
    lr
        Learning rate of the local rule.
    decay
        Decay of the running statistics of ``std_abs``.
    batch_size
        Records per micro-batch; pending records are learnt when the batch is
        full or on :meth:`flush`.
    bias
        Weight of the bias unit (see :mod:`streamal.encoding`).
    max_features
        Cap on the number of distinct features; a record past it raises
        :class:`~streamal.encoding.FeatureLimitError` and is not learnt.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    seed
        Seed of the weight initialisation.

    Examples
    --------
    >>> import random
    >>> from streamal import ActivationDetector
    >>> rng = random.Random(0)
    >>> detector = ActivationDetector(seed=0)
    >>> for _ in range(2000):
    ...     t = rng.uniform(0, 6.28)
    ...     x = {"a": 1000 + 10 * rng.gauss(0, 1), "b": 0.001 * (1 + rng.gauss(0, 0.1))}
    ...     detector.learn_one(x)
    >>> normal = detector.score_one({"a": 1003.0, "b": 0.00101})
    >>> odd = detector.score_one({"a": 1060.0, "b": 0.0005})
    >>> normal < odd
    True
    """

    def __init__(
        self,
        hidden: tuple[int, ...] | None = None,
        activation: str = "std_abs",
        lr: float = 0.5,
        decay: float = 0.99,
        batch_size: int = 8,
        bias: float = 1.0,
        max_features: int = 1024,
        device: str = "cpu",
        seed: int | None = None,
    ):
        self.hidden = hidden
        self.activation = activation
        self.lr = lr
        self.decay = decay
        self.batch_size = batch_size
        self.bias = bias
        self.max_features = max_features
        self.device = device
        self.seed = seed

    @classmethod
    def _unit_test_params(cls):
        yield {"hidden": (4, 3), "batch_size": 4, "seed": 0}

    # ---- learning -----------------------------------------------------------
    def learn_one(self, x: dict) -> None:
        """Queue ``x`` for learning; raises ``ValueError`` naming a bad feature."""
        clean = validate_features(x)
        self._ingest(list(clean), np.array([list(clean.values())]).reshape(1, -1), [None])

    def learn_many(self, X: pd.DataFrame) -> None:
        """Learn the rows of ``X`` (NaN = missing) exactly as a loop of :meth:`learn_one`."""
        values = frame_values(X)
        self._ingest([str(c) for c in X.columns], values, [None] * len(values))

    def _learn_batch(self, x: torch.Tensor, mask: torch.Tensor, labels) -> None:
        assert self._network is not None
        self._network.learn(x, mask=mask)

    # ---- scoring ------------------------------------------------------------
    def _scores(self, values: np.ndarray) -> np.ndarray:
        if self._network is None:
            return np.ones(len(values))
        x, _ = self._encode(values)  # unit length: the input strength ‖x‖² is 1
        activation = self._network.activation(x).cpu().numpy().astype(float)
        return np.clip(1.0 - activation, 0.0, 1.0)

    def score_one(self, x: dict) -> float:
        """Anomaly score of ``x`` in ``[0, 1]`` (1 before anything is learnt)."""
        self._ensure_state()
        return float(self._scores(self._query_values([validate_features(x)]))[0])

    def score_many(self, X: pd.DataFrame) -> np.ndarray:
        """Anomaly scores of the rows of ``X``, equal to :meth:`score_one` row by row."""
        self._ensure_state()
        return self._scores(self._query_values(X))

    # ---- completion ---------------------------------------------------------
    def complete_one(self, x: Mapping[str, Any], steps: int = 200) -> dict[str, float]:
        """Fill in the features of the schema that ``x`` lacks (e.g. a dropped sensor).

        The missing standardised values are chosen to maximise the output
        activation with the record's known values fixed (paper eq. 17), then
        mapped back to the feature's own scale through the bias unit.

        Examples
        --------
        >>> import random
        >>> from streamal import ActivationDetector
        >>> rng = random.Random(1)
        >>> det = ActivationDetector(hidden=(2,), seed=1)
        >>> for _ in range(3000):
        ...     v = rng.gauss(0, 1)
        ...     det.learn_one({"a": 10 * v, "b": -5 * v + rng.gauss(0, 0.1)})
        >>> round(det.complete_one({"a": 20.0})["b"])
        -10
        """
        self._ensure_state()
        clean = validate_features(x)
        if self._network is None:
            raise ValueError("nothing has been learnt yet: there is no pattern to complete from")
        values = self._query_values([clean])
        missing = np.isnan(values[0])
        if not missing.any():
            return dict(clean)
        start = np.where(missing, self._moments.mean, values)
        inputs, _ = self._encode(start)
        free = torch.zeros_like(inputs, dtype=torch.bool)
        free[0, : len(missing)] = torch.as_tensor(missing, device=inputs.device)
        filled = complete(self._network, inputs, free, steps=steps)[0].cpu().numpy()
        bias_unit = filled[len(missing)]
        z = filled[: len(missing)] / bias_unit * self.bias * np.sqrt(len(missing))
        restored = self._moments.unstandardise(z)
        out = dict(clean)
        for name, column in self._schema.index.items():
            if missing[column]:
                out[name] = float(restored[column])
        return out
