"""What the detector and the classifier share: ingestion, micro-batches, state.

Records are validated and their new features registered when they arrive;
they wait in a pending micro-batch, and the weights change only when the
batch is full (or on :meth:`flush`). ``learn_many`` cuts a frame at exactly the
same batch boundaries as a loop of ``learn_one`` would, and every random draw
comes from a per-purpose generator, so both paths leave identical models.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from streamal import checkpoint
from streamal.encoding import (
    MAX_MAGNITUDE,
    FeatureSchema,
    RunningMoments,
    check_magnitude,
    unit_inputs,
)
from streamal.network import ActivationNetwork

_TUPLE_PARAMS = ("hidden",)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available")
    return torch.device(device)


def frame_values(X: pd.DataFrame) -> np.ndarray:
    """A frame's values as float64 (NaN = missing); names the first bad column."""
    values = X.to_numpy()  # a plain numeric array when every column is numeric: no checks
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
        from streamal.kernels import within_or_nan  # numba loads on first use

        values = values.astype(np.float64, copy=False)
        if not within_or_nan(values.ravel(order="K"), MAX_MAGNITUDE):
            bad = np.abs(values) > MAX_MAGNITUDE  # ±inf too; NaN (missing) compares False
            row, col = np.argwhere(bad)[0]
            check_magnitude(X.columns[col], float(values[row, col]))
        return values
    numeric_kinds = set("biuf")
    if not all(dtype.kind in numeric_kinds for dtype in X.dtypes):
        for name in X.columns:
            column = X[name]
            if not (pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
                numeric = pd.to_numeric(column, errors="coerce")
                bad = column[numeric.isna() & column.notna()]
                if len(bad):
                    raise ValueError(f"feature {name!r} is not a number: {bad.iloc[0]!r}")
    values = X.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.abs(values) > MAX_MAGNITUDE  # ±inf too; NaN (missing) compares False
    if bad.any():
        row, col = np.argwhere(bad)[0]
        check_magnitude(X.columns[col], float(values[row, col]))
    return values


class ActivationEstimator:
    """Mixin holding the state machinery of the streamal estimators.

    Subclasses define ``_label_units`` (input units after the features and the
    bias) and ``_learn_batch``; everything else — schema growth, running
    moments, pending micro-batch, device, persistence — lives here.
    """

    hidden: tuple[int, ...] | None
    activation: str
    lr: float
    decay: float
    batch_size: int
    bias: float
    max_features: int
    device: str
    seed: int | None
    _get_params: Callable[[], dict[str, Any]]  # from river.base.Estimator

    # ---- lazily built state -------------------------------------------------
    def _ensure_state(self) -> None:
        if getattr(self, "_schema", None) is not None:
            return
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if not self.bias > 0:
            raise ValueError(f"bias must be positive, got {self.bias}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        self._resolved_device = resolve_device(self.device)
        self._schema = FeatureSchema(self.max_features)
        self._moments = RunningMoments()
        self._network: ActivationNetwork | None = None
        self._pending_values: list[np.ndarray] = []
        self._pending_labels: list[Any] = []
        self._n_learnt = 0
        base_seed = self.seed if self.seed is not None else int(torch.randint(2**31, ()).item())
        self._rngs = {
            purpose: torch.Generator().manual_seed(base_seed * 3 + i)
            for i, purpose in enumerate(("network", "features", "labels"))
        }

    def __getstate__(self) -> dict[str, Any]:
        # torch.Generator pickles differently on every call; its state does not.
        state = self.__dict__.copy()
        state.pop("_columns_seen", None)  # caches (see _column_names), not state
        state.pop("_positions_seen", None)
        if "_rngs" in state:
            state["_rngs"] = {k: g.get_state().numpy().tobytes() for k, g in state["_rngs"].items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_rngs" in state:
            rngs = {}
            for purpose, rng_state in state["_rngs"].items():
                rngs[purpose] = torch.Generator()
                rngs[purpose].set_state(torch.frombuffer(bytearray(rng_state), dtype=torch.uint8))
            state = {**state, "_rngs": rngs}
        self.__dict__.update(state)

    def _hidden_sizes(self, n_features: int) -> tuple[int, ...]:
        if self.hidden is not None:
            return tuple(self.hidden)
        return (max(1, round(math.sqrt(n_features + 1))),)

    def _build_network(self, n_features: int) -> None:
        net = ActivationNetwork.dense(
            1 + self._label_units(),
            self._hidden_sizes(n_features),
            activation=self.activation,
            lr=self.lr,
            decay=self.decay,
            generator=self._rngs["network"],
        )
        self._install_network(net)

    def _install_network(self, net: ActivationNetwork) -> None:
        """Make ``net`` (new or loaded) this estimator's network, on its device."""
        self._network = net.to(self._resolved_device)

    def _label_units(self) -> int:
        return 0

    def _add_features(self, names: Sequence[str]) -> None:
        assert self._network is not None
        bottom = self._network.bottom
        for name in names:
            bottom.grow_inputs(1, self._rngs["features"], at=len(self._schema))
            self._schema.register([{name: 0.0}])
        self._moments.grow(len(names))

    # ---- ingestion ----------------------------------------------------------
    def _ingest(self, columns: Sequence[str], values: np.ndarray, labels: Sequence[Any]) -> None:
        """Register, queue and (when a batch fills) learn rows of ``values``."""
        self._ensure_state()
        start = 0
        while start < len(values):
            stop = min(len(values), start + self.batch_size - len(self._pending_values))
            chunk = values[start:stop]
            self._register(columns, chunk, labels[start:stop])
            names = self._schema.names
            if len(columns) == len(names) and list(columns) == names:
                block = np.array(chunk, dtype=np.float64)  # the schema's order: a copy
            else:
                # columns still unknown here are all-missing in this chunk
                index = self._schema.index
                known = [(j, index[c]) for j, c in enumerate(columns) if c in index]
                block = np.full((len(chunk), len(names)), np.nan)
                if known:
                    source, target = (np.array(t, dtype=int) for t in zip(*known))
                    block[:, target] = chunk[:, source]
            self._pending_values.extend(block)
            self._pending_labels.extend(labels[start:stop])
            if len(self._pending_values) >= self.batch_size:
                self.flush()
            start = stop

    def _queue_row(self, row: np.ndarray, label: Any) -> None:
        """Queue one row in the schema's order and width (``_ingest``'s fast way, for a
        record with no new feature) and learn when the batch is full."""
        pending = self._pending_values
        if not pending and self.batch_size == 1:  # a batch of its own: learnt at once
            self._learn_block(row.reshape(1, -1), [label])
            self._n_learnt += 1
            return
        pending.append(row)
        self._pending_labels.append(label)
        if len(pending) >= self.batch_size:
            self.flush()

    def _register(self, columns: Sequence[str], chunk: np.ndarray, labels: Sequence[Any]) -> None:
        if self._network is None:
            self._build_network(int((~np.isnan(chunk[0])).sum()))
        known = self._schema.index
        unknown = [j for j, c in enumerate(columns) if c not in known]
        if unknown:  # the new features are those present in some row of the chunk
            present = ~np.isnan(chunk[:, unknown])
            first = {j: int(np.argmax(present[:, k])) for k, j in enumerate(unknown)}
            new = [j for k, j in enumerate(unknown) if present[:, k].any()]
            if new:
                names = [columns[j] for j in sorted(new, key=lambda j: (first[j], columns[j]))]
                self._schema.new_names([dict.fromkeys(names)])  # raises past max_features
                self._add_features(names)
        self._register_labels(labels)

    def _register_labels(self, labels: Sequence[Any]) -> None:
        """Classes are registered by the classifier; the detector has none."""

    def flush(self) -> None:
        """Learn the pending micro-batch now, even if it is not full."""
        if not getattr(self, "_pending_values", None):
            return
        width = len(self._schema)
        pending = self._pending_values
        if len(pending[0]) == width:  # the first row is the narrowest: the schema only grows
            values = np.array(pending, dtype=np.float64)
        else:  # rows queued before the schema grew: the new columns are missing there
            values = np.full((len(pending), width), np.nan)
            for r, row in enumerate(pending):
                values[r, : len(row)] = row
        labels = self._pending_labels
        self._pending_values, self._pending_labels = [], []
        self._learn_block(values, labels)
        self._n_learnt += len(values)

    def _learn_block(self, values: np.ndarray, labels: Sequence[Any]) -> None:
        """Fold a micro-batch into the running moments, then learn it."""
        self._moments.update(values)
        self._learn_values(values, labels)

    def _learn_values(self, values: np.ndarray, labels: Sequence[Any]) -> None:
        """Learn one micro-batch of schema-aligned raw values (the classifier adds rehearsal)."""
        x, mask = self._encode(values)
        self._learn_batch(x, mask, labels)

    def _learn_batch(self, x: torch.Tensor, mask: torch.Tensor, labels: Sequence[Any]) -> None:
        raise NotImplementedError

    # ---- encoding -----------------------------------------------------------
    def _encode(self, values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised, unit-length inputs and masks on the model's device."""
        z = self._moments.standardise(values)
        device = self._resolved_device
        x_np, mask_np = unit_inputs(z, self.bias)
        x, mask = torch.from_numpy(x_np.astype(np.float32)), torch.from_numpy(
            mask_np.astype(np.float32)
        )
        if device.type == "cpu":
            return x, mask
        return x.to(device), mask.to(device)

    def _column_names(self, X: pd.DataFrame) -> list[str]:
        """``X``'s column names as strings (do not change the list). The last frame's
        are reused while the columns are equal strings: frames cut from one stream
        share them, and pandas takes ~15 µs to list a string Index."""
        columns = X.columns
        seen = getattr(self, "_columns_seen", None)
        if seen is not None and columns.equals(seen[0]):
            dtype = columns.dtype
            if dtype is seen[0].dtype or dtype == seen[0].dtype:
                return seen[1]
        raw = columns.tolist()
        names = [str(c) for c in raw]
        if all(type(c) is str for c in raw):
            self._columns_seen = (columns, names)
        return names

    def _frame_row(self, X: pd.DataFrame) -> np.ndarray | None:
        """The values of a one-row frame whose float64 columns are exactly the schema's
        features (in any order) as a new vector in the schema's order, the one-record
        paths' shape, once the network is built; else ``None``, for the general path
        (other shapes and dtypes, new or absent features). The values are not checked
        here (NaN is missing)."""
        if self._network is None or len(X.index) != 1:
            return None
        # ``_values``: what ``to_numpy`` returns (the transposed block of a one-block
        # frame, else the interleaved copy), in a fifth of the time; read, never written
        values = X._values
        if values.dtype != np.float64:
            return None
        names = self._column_names(X)
        if names == self._schema.names:
            return np.array(values[0])
        positions = self._schema_positions(names)
        return None if positions is None else values[0, positions]  # a copy

    def _schema_positions(self, names: list[str]) -> np.ndarray | None:
        """Where each of the schema's features is among ``names``, when ``names`` are
        the schema's features in another order; else ``None``. Kept for the last
        ``names`` list (see :meth:`_column_names`) while the schema is unchanged."""
        order = self._schema.order  # a new tuple whenever the schema grows
        seen = getattr(self, "_positions_seen", None)
        if seen is not None and seen[0] is names and seen[1] is order:
            return seen[2]
        where = {name: j for j, name in enumerate(names)}
        positions = None
        if len(where) == len(names) == len(order) and all(name in where for name in order):
            positions = np.array([where[name] for name in order], dtype=np.intp)
        self._positions_seen = (names, order, positions)
        return positions

    def _query_values(self, rows: Sequence[Mapping[str, float]] | pd.DataFrame) -> np.ndarray:
        """Schema-aligned values of records to score; unknown features are ignored."""
        if isinstance(rows, pd.DataFrame):
            values = frame_values(rows)
            names = self._column_names(rows)
            if names == self._schema.names:  # the schema's columns in its order
                return values  # only read (it may be the frame's own memory)
            out = np.full((len(rows), len(self._schema)), np.nan)
            index = self._schema.index
            for j, name in enumerate(names):
                column = index.get(str(name))
                if column is not None:
                    out[:, column] = values[:, j]
            return out
        return self._schema.to_matrix(rows)

    # ---- persistence --------------------------------------------------------
    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The whole learnt state as named arrays and JSON metadata (no pickle)."""
        self._ensure_state()
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self._get_params().items()}
        arrays: dict[str, np.ndarray] = {  # copies: learning updates the moments in place
            "moments.count": self._moments.count.copy(),
            "moments.mean": self._moments.mean.copy(),
            "moments.m2": self._moments.m2.copy(),
        }
        for purpose, rng in self._rngs.items():
            arrays[f"rng.{purpose}"] = rng.get_state().numpy()
        width = len(self._schema)
        pending = np.full((len(self._pending_values), width), np.nan)
        for r, row in enumerate(self._pending_values):
            pending[r, : len(row)] = row
        arrays["pending.values"] = pending
        layers = []
        if self._network is not None:
            for name, tensor in self._network.state_dict().items():
                arrays[f"network.{name}"] = tensor.detach().cpu().numpy()
            layers = [layer.out_features for layer in self._network.layers]
        meta = {
            "estimator": type(self).__name__,
            "params": params,
            "schema": list(self._schema.names),
            "layers": layers,
            "pending_labels": list(self._pending_labels),
            "n_learnt": self._n_learnt,
            **self._export_extra(),
        }
        return arrays, meta

    def _export_extra(self) -> dict[str, Any]:
        return {}

    def _import_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        self._ensure_state()
        self._schema = FeatureSchema(self.max_features, meta["schema"])
        self._moments.count = np.array(arrays["moments.count"], dtype=float)
        self._moments.mean = np.array(arrays["moments.mean"], dtype=float)
        self._moments.m2 = np.array(arrays["moments.m2"], dtype=float)
        for purpose, rng in self._rngs.items():
            rng.set_state(torch.from_numpy(np.array(arrays[f"rng.{purpose}"], dtype=np.uint8)))
        self._pending_values = list(np.array(arrays["pending.values"], dtype=float))
        self._pending_labels = list(meta["pending_labels"])
        self._n_learnt = int(meta["n_learnt"])
        self._import_extra(meta)
        if meta["layers"]:
            n_in = len(self._schema) + 1 + self._label_units()
            net = ActivationNetwork.dense(
                n_in, meta["layers"], self.activation, self.lr, self.decay
            )
            state = {
                k[len("network.") :]: torch.from_numpy(np.array(v))
                for k, v in arrays.items()
                if k.startswith("network.")
            }
            net.load_state_dict(state)
            self._install_network(net)

    def _import_extra(self, meta: Mapping[str, Any]) -> None:
        """Restore what :meth:`_export_extra` wrote."""

    def save(self, path: str | pathlib.Path) -> None:
        """Write the model, pending records included, to a Parquet file (no pickle)."""
        arrays, meta = self._export_state()
        checkpoint.write_state(path, arrays, meta)

    @classmethod
    def from_state(cls, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]):
        """Rebuild an estimator from :meth:`_export_state` output."""
        if meta.get("estimator") != cls.__name__:
            raise ValueError(f"state holds a {meta.get('estimator')!r}, not a {cls.__name__}")
        params = {
            k: tuple(v) if k in _TUPLE_PARAMS and v is not None else v
            for k, v in meta["params"].items()
        }
        model = cls(**params)
        model._import_state(arrays, meta)
        return model

    @classmethod
    def load(cls, path: str | pathlib.Path, device: str | None = None):
        """Read a model written by :meth:`save`; ``device`` overrides the saved one."""
        arrays, meta = checkpoint.read_state(path)
        if device is not None:
            meta = {**meta, "params": {**meta["params"], "device": device}}
        return cls.from_state(arrays, meta)
