"""The numbers of a backtest, from its records table (see :mod:`streamal.backtest.run`).

The records table has one row per judged record, in the order the pipeline emitted
them, with ``series`` (what labels and plots group by), ``event_time`` (epoch seconds)
and ``label`` (the truth; null where unknown), plus ``score`` and ``alert`` (anomaly)
or ``prediction`` and ``given_label`` (classification). Every metric comes from
:mod:`streamal.evaluation`; NaN means "not defined here" (no anomalous record, say).

Examples
--------
>>> import pandas as pd
>>> records = pd.DataFrame({"series": ["a"] * 4, "event_time": [0.0, 1.0, 2.0, 3.0],
...                         "score": [0.1, 0.9, 0.2, 0.8], "alert": [False, True, False, False],
...                         "label": [False, True, False, True]})
>>> m = anomaly_metrics(records, warmup=0)
>>> m["roc_auc"], m["pr_auc"], m["f1"], m["far"], m["mar"]
(1.0, 1.0, 0.6666666666666666, 0.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from streamal.evaluation import (
    NAB_PROFILES,
    cohen_kappa,
    labelled_split_accuracy,
    nab_score,
    pr_auc,
    prequential_accuracy,
    roc_auc,
    rolling_accuracy,
    skab_metrics,
)

from .labels import Window, in_windows

__all__ = [
    "anomaly_metrics",
    "classification_metrics",
    "in_time_order",
    "nab_metrics",
    "rolling",
]

SEGMENTS = 10
"""Classification: the stream is cut into this many equal parts for accuracy over time."""


def in_time_order(records: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by series, then event time (stable: ties keep the emitted order)."""
    return records.sort_values(["series", "event_time"], kind="stable", na_position="last")


def anomaly_metrics(records: pd.DataFrame, warmup: int) -> dict[str, Any]:
    """Point-wise ROC-AUC and PR-AUC of the scores; SKAB F1, FAR, MAR of the alerts.

    Rows with a known label count, except the first ``warmup`` records of each series
    (a fresh model scores everything 1.0). SKAB's counts are pooled over the series.
    """
    ordered = in_time_order(records)
    past_warmup = ordered.groupby("series", sort=False).cumcount() >= warmup
    rows = ordered[past_warmup & ordered["label"].notna()]
    truth = rows["label"].astype(bool).to_numpy()
    scores = rows["score"].to_numpy(dtype=float)
    skab = skab_metrics({s: g["label"].astype(bool).to_numpy()
                         for s, g in rows.groupby("series", sort=False)},
                        {s: g["alert"].astype(bool).to_numpy()
                         for s, g in rows.groupby("series", sort=False)})
    c = skab.counts
    return {
        "evaluated": int(truth.size),
        "anomalous": int(truth.sum()),
        "warmup": warmup,
        "roc_auc": roc_auc(truth, scores) if truth.size else math.nan,
        "pr_auc": pr_auc(truth, scores) if truth.size else math.nan,
        "f1": skab.f1,
        "far": skab.far,
        "mar": skab.mar,
        "counts": {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn},
    }


def nab_metrics(records: pd.DataFrame, windows: Mapping[str, Sequence[Window]]
                ) -> tuple[dict[str, Any], list[str]]:
    """NAB scores of the alerts (the detections) for the three profiles; and warnings.

    ``windows`` maps a series of the records to its windows; series without windows
    count too (their alerts are false positives). A window that holds no record is
    left out, with a warning. Rows without an event time are not scored.
    """
    ordered = in_time_order(records[records["event_time"].notna()])
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    kept: dict[str, list[Window]] = {}
    warnings = []
    for name, rows in ordered.groupby("series", sort=False):
        times = rows["event_time"].to_numpy(dtype=float)
        series[str(name)] = (times, rows["alert"].to_numpy(dtype=float))
        kept[str(name)] = []
        for window in windows.get(str(name), ()):
            if in_windows(times, [window]).any():
                kept[str(name)].append(window)
            else:
                warnings.append(f"series {name!r}: window {_show(window)} holds no record; "
                                "left out of the NAB score")
    out: dict[str, Any] = {}
    for profile in NAB_PROFILES:
        result = nab_score(series, kept, profile=profile, threshold=0.5)
        out[profile] = {"score": result.normalized_score, "raw": result.raw_score,
                        "null": result.null_score, "perfect": result.perfect_score,
                        "tp": result.tp, "fp": result.fp, "fn": result.fn, "tn": result.tn,
                        "per_series": {name: s.raw_score
                                       for name, s in result.per_series.items()}}
    out["windows"] = sum(len(w) for w in kept.values())
    return out, warnings


def _show(window: Window) -> str:
    start, end = (pd.Timestamp(t, unit="s").isoformat() for t in window)
    return f"[{start}, {end}]"


def _objects(values: pd.Series) -> np.ndarray:
    """Labels as an object array: mixed ints and strings must not become strings."""
    return np.array(values.tolist(), dtype=object)


def classification_metrics(records: pd.DataFrame) -> dict[str, Any]:
    """Prequential accuracy overall, per tenth of the stream, on labelled and unlabelled
    records, and Cohen's kappa, over the records whose true label is known.

    A record is *labelled* when the model was given its label (``given_label``).
    """
    rows = records[records["label"].notna()]
    truth, predicted = _objects(rows["label"]), _objects(rows["prediction"])
    split = labelled_split_accuracy(truth, predicted, rows["given_label"].notna().to_numpy())
    segments = []
    for part in np.array_split(np.arange(truth.size), max(1, min(SEGMENTS, truth.size))):
        if part.size:
            hits = prequential_accuracy(truth[part], predicted[part])
            times = rows["event_time"].iloc[part]
            segments.append({"from": _maybe(times.iloc[0]), "to": _maybe(times.iloc[-1]),
                             "records": int(part.size), "accuracy": hits})
    return {
        "evaluated": int(truth.size),
        "accuracy": split.overall,
        "kappa": cohen_kappa(truth, predicted) if truth.size else math.nan,
        "accuracy_labelled": split.labelled,
        "accuracy_unlabelled": split.unlabelled,
        "labelled": split.n_labelled,
        "unlabelled": split.n_unlabelled,
        "accuracy_over_time": segments,
    }


def _maybe(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def rolling(records: pd.DataFrame, window: int | None) -> pd.Series:
    """Prequential accuracy over the last ``window`` records with a known label (``None``:
    since the start), one value per such record."""
    rows = records[records["label"].notna()]
    if rows.empty:
        return pd.Series(dtype=float)
    values = rolling_accuracy(_objects(rows["label"]), _objects(rows["prediction"]), window)
    return pd.Series(values, index=rows.index)
