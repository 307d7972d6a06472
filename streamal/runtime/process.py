"""One micro-batch: decode → validate → score/predict → emit → learn → drift.

Records are routed to a :class:`Lane` (a model with its alert policy and
drift monitor; one lane, or one per value of the per-key field). Each lane
judges its rows with the model as it stood *before* the batch (one
``score_many``/``predict_proba_many`` call), then walks the rows in order:
feature-cap check, alert decision, output; then learns the kept rows with
``learn_many`` (equal to a loop of ``learn_one``, so batch sizes never change
the model), then feeds the drift monitor. Everything is deterministic, so a
resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from streamal.drift import DriftMonitor
from streamal.encoding import FeatureLimitError, FeatureSchema
from streamal.estimators.base import ActivationEstimator
from streamal.runtime.alerts import AlertPolicy
from streamal.runtime.decode import Decoded, DecodeError, RecordDecoder, text_key
from streamal.runtime.observer import Observer
from streamal.runtime.outputs import Emitter, RunSummary, dead_letter

__all__ = ["Lane", "Processor"]

Row = tuple[Any, Decoded]


@dataclass
class Lane:
    """One model with its own alert policy and drift monitor (state included)."""

    key: str | None
    model: Any
    alerts: AlertPolicy | None = None
    drift: DriftMonitor | None = None


def _frame(rows: Sequence[Row]) -> pd.DataFrame:
    """Rows' features as a float frame; NaN where a row lacks a column."""
    columns: dict[str, int] = {}
    for _, d in rows:
        for name in d.features:
            columns.setdefault(name, len(columns))
    values = np.full((len(rows), len(columns)), np.nan)
    for i, (_, d) in enumerate(rows):
        for name, value in d.features.items():
            values[i, columns[name]] = value
    return pd.DataFrame(values, columns=list(columns))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Processor:
    """Applies micro-batches to the lanes; see the module docstring for the order."""

    def __init__(self, decoder: RecordDecoder, model_factory: Callable[[], Any], task: str,
                 alerts: AlertPolicy | None, drift: DriftMonitor | None, per_key: str | None,
                 max_models: int, emitter: Emitter, summary: RunSummary):
        self.decoder = decoder
        self.model_factory = model_factory
        self.task = task
        self.alerts = alerts
        self.drift = drift
        self.per_key = per_key
        self.max_models = max_models
        self.emitter = emitter
        self.summary = summary
        self.max_classes: int | None = None  # cap on classes per classifier (None: no cap)
        self.observer = Observer()
        self.lanes: dict[str | None, Lane] = {}

    def new_lane(self, key: str | None, model: Any = None) -> Lane:
        lane = Lane(key, self.model_factory() if model is None else model,
                    None if self.alerts is None else self.alerts.clone(),
                    None if self.drift is None else self.drift.clone())
        self.lanes[key] = lane
        self.summary.models = len(self.lanes)
        return lane

    def _dead(self, record: Any, stage: str, reason: str, d: Decoded | None = None) -> None:
        self.summary.dead_lettered[stage] = self.summary.dead_lettered.get(stage, 0) + 1
        key = d.key if d is not None else text_key(record.key)
        when = d.event_time if d is not None else record.event_time
        self.emitter.emit("dead_letter", dead_letter(record, stage, reason, key, when), key)

    # ---- routing --------------------------------------------------------------------------------
    def process(self, records: Sequence[Any]) -> None:
        groups: dict[str | None, list[Row]] = {}
        for record in records:
            self.summary.records_in += 1
            try:
                d = self.decoder.decode(record, group_field=self.per_key)
            except DecodeError as exc:
                self._dead(record, exc.stage, exc.reason)
                continue
            if d.group not in self.lanes:
                if len(self.lanes) >= self.max_models:
                    self._dead(record, "validate", f"per-key model limit reached "
                               f"(max_models={self.max_models}): no model for {d.group!r}", d)
                    continue
                self.new_lane(d.group)
            groups.setdefault(d.group, []).append((record, d))
        for key, rows in groups.items():
            self._run_lane(self.lanes[key], rows)

    # ---- one lane -------------------------------------------------------------------------------
    def _run_lane(self, lane: Lane, rows: list[Row]) -> None:
        """Judge and learn ``rows`` in chunks that end wherever the model may change.

        The model changes when its pending micro-batch fills, and when a learnt
        record brings a new feature or class. A chunk ends at the first of
        these, so every row is judged by exactly the model a loop of
        ``score_one``/``learn_one`` would use: outputs do not depend on how the
        source batched the records.
        """
        start = 0
        while start < len(rows):
            room = _room(lane.model)
            known = self._schema(lane.model)
            names = set(known.names) if known is not None else None
            classes = set(getattr(lane.model, "classes", ()) or ())
            stop = start
            while stop < len(rows) and stop - start < room:
                d = rows[stop][1]
                stop += 1
                if names is not None and not names.issuperset(d.features):
                    break
                if self.task == "classification" and d.label is not None \
                        and d.label not in classes:
                    break
            self._run_chunk(lane, rows[start:stop])
            start = stop

    def _run_chunk(self, lane: Lane, rows: list[Row]) -> None:
        X = _frame(rows)
        started = time.perf_counter()
        judged = self._judge(lane.model, X, rows)
        self.observer.timed("score", time.perf_counter() - started, len(rows))
        schema = self._schema(lane.model)
        classes = self._class_room(lane.model)
        keep: list[int] = []
        pending_drift: list[tuple[str, float, int]] = []
        for i, (record, d) in enumerate(rows):
            result = judged[i]
            if isinstance(result, str):
                self._dead(record, "score", result, d)
                continue
            if schema is not None:
                try:
                    schema.new_names([d.features])
                except FeatureLimitError as exc:
                    self._dead(record, "validate", str(exc), d)
                    continue
            if classes is not None and d.label is not None and d.label not in classes[0]:
                if len(classes[0]) >= classes[1]:
                    self._dead(record, "validate", f"label {_short(d.label)} would be class "
                               f"{len(classes[0]) + 1} of a model capped at max_classes="
                               f"{classes[1]}", d)
                    continue
                classes[0].add(d.label)
            base = {"id": record.id, "key": d.key, "event_time": d.event_time}
            if lane.key is not None:
                base["model"] = lane.key
            learn = True
            if self.task == "anomaly":
                learn = self._emit_score(lane, base, float(result), d)
                pending_drift.append(("score", float(result), i))
            else:
                prediction, proba = result
                self.summary.predicted += 1
                self.emitter.emit("predictions", {**base, "prediction": prediction,
                                                  "proba": proba, "label": d.label}, d.key)
                if d.label is not None and prediction is not None:
                    pending_drift.append(("error", float(prediction != d.label), i))
            if learn:
                if schema is not None:
                    schema.register([d.features])
                keep.append(i)
            else:
                self.summary.skipped_learning += 1
        started = time.perf_counter()
        self._learn(lane, X, rows, keep)
        if keep:
            self.observer.timed("learn", time.perf_counter() - started, len(keep))
        self._drift(lane, rows, pending_drift)

    def _emit_score(self, lane: Lane, base: dict[str, Any], score: float, d: Decoded) -> bool:
        """Emit the score (and an alert); return whether the record is to be learnt."""
        self.summary.scored += 1
        alert, threshold = False, None
        if lane.alerts is not None:
            alert, threshold = lane.alerts.update(score)
        self.emitter.emit("scores", {**base, "score": score, "alert": alert}, d.key)
        if not alert:
            return True
        self.summary.alerted += 1
        self.emitter.emit("alerts", {**base, "kind": "alert", "score": score,
                                     "threshold": threshold}, d.key)
        return lane.alerts is None or lane.alerts.learn_alerts

    def _judge(self, model: Any, X: pd.DataFrame, rows: list[Row]) -> list[Any]:
        """Per row: a score (anomaly), ``(prediction, proba)`` (classification) or an error."""
        if len(rows) == 1 or not hasattr(model, "score_many" if self.task == "anomaly"
                                         else "predict_proba_many"):
            return [self._judge_one(model, d.features) for _, d in rows]
        try:
            if self.task == "anomaly":
                scores = np.asarray(model.score_many(X), dtype=float)
                if scores.shape == (len(rows),) and np.isfinite(scores).all():
                    return [float(s) for s in scores]
            else:
                proba = model.predict_proba_many(X)
                if len(proba) == len(rows) and np.isfinite(proba.to_numpy(float)).all():
                    return [_prediction(dict(zip(proba.columns, r, strict=True)))
                            for r in proba.to_numpy()]
        except Exception:  # find the failing rows one by one below
            pass
        return [self._judge_one(model, d.features) for _, d in rows]

    def _judge_one(self, model: Any, x: dict[str, float]) -> Any:
        try:
            if self.task == "anomaly":
                score = float(model.score_one(x))
                return score if math.isfinite(score) else f"non-finite score {score}"
            proba = model.predict_proba_one(x)
            if not all(math.isfinite(p) for p in proba.values()):
                return f"non-finite probabilities {proba}"
            return _prediction(proba)
        except Exception as exc:  # routed to the dead letter, never swallowed
            return _reason(exc)

    def _class_room(self, model: Any) -> tuple[set[Any], int] | None:
        """``(classes known, cap)`` of a capped classifier, to foresee its class cap."""
        if self.task != "classification" or self.max_classes is None:
            return None
        return set(getattr(model, "classes", ()) or ()), self.max_classes

    @staticmethod
    def _schema(model: Any) -> FeatureSchema | None:
        """A copy of the model's feature schema, to foresee its feature cap."""
        cap = getattr(model, "max_features", None)
        if cap is None:
            return None
        own = getattr(model, "_schema", None)
        return FeatureSchema(cap, list(own.names) if own is not None else [])

    def _learn(self, lane: Lane, X: pd.DataFrame, rows: list[Row], keep: list[int]) -> None:
        """``learn_many`` over the kept rows (all-missing columns dropped).

        Only a chunk's last row can bring new features, so each column of the
        frame is present in the rows that introduce it.
        """
        if not keep:
            return
        model: Any = lane.model
        labelled = self.task == "classification"
        if not isinstance(model, ActivationEstimator):  # a river model: one record at a time
            for i in keep:
                record, d = rows[i]
                try:
                    if labelled:
                        model.learn_one(d.features, d.label)
                    else:
                        model.learn_one(d.features)
                except Exception as exc:  # routed to the dead letter
                    self._dead(record, "learn", _reason(exc), d)
                    continue
                self.summary.learnt += 1
            return
        Xk = X.iloc[keep].reset_index(drop=True)
        Xk = Xk.loc[:, Xk.notna().any(axis=0)]
        model = lane.model  # an ActivationEstimator subclass, with learn_many
        try:
            if labelled:
                model.learn_many(Xk, pd.Series([rows[i][1].label for i in keep], dtype=object))
            else:
                model.learn_many(Xk)
        except Exception as exc:  # routed to the dead letter
            for i in keep:
                self._dead(rows[i][0], "learn", _reason(exc), rows[i][1])
            return
        self.summary.learnt += len(keep)

    def _drift(self, lane: Lane, rows: list[Row], values: list[tuple[str, float, int]]) -> None:
        if lane.drift is None:
            return
        for stream, value, i in values:
            record, d = rows[i]
            event = lane.drift.update(value, stream=stream, id=record.id,
                                      position=list(record.position), key=d.key,
                                      event_time=d.event_time)
            if event is not None:
                if lane.key is not None:
                    event["model"] = lane.key
                self.summary.drift_events += 1
                self.emitter.emit("drift", event, d.key)


def _room(model: Any) -> int:
    """Rows the model can queue before it updates (1 for models that learn every record)."""
    if not isinstance(model, ActivationEstimator):
        return 1
    pending = getattr(model, "_pending_values", None) or ()  # unset before the first record
    return max(1, model.batch_size - len(pending))


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _prediction(proba: dict[Any, float]) -> tuple[Any, dict[str, float]]:
    """``(most probable class or None, {str(class): probability})``."""
    if not proba:
        return None, {}
    best = max(proba, key=proba.__getitem__)
    if isinstance(best, np.generic):
        best = best.item()
    return best, {str(k): float(v) for k, v in proba.items()}
