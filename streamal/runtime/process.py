"""One micro-batch: decode → validate → score/predict → emit → learn → drift.

Records are routed to a :class:`Lane` (a model with its alert policy and
drift monitor; one lane, or one per value of the per-key field). A poll is
decoded in one call. Each lane cuts its rows into chunks that the model
judges as it stood *before* them (one call per chunk), then walks the rows in
order: feature-cap check, alert decision, output; then learns the kept rows
(as ``learn_many``, equal to a loop of ``learn_one``, so batch sizes never
change the model). A chunk of anomaly scores in which no row can fail goes a
column at a time instead: the alert decisions in one call, with the
decisions and state of the row-by-row walk. The drift monitor, which does not
depend on the model, is fed a lane's values of the poll in one call after its
last chunk; the outputs of the poll reach each sink in one call at its end
(see :class:`~streamal.runtime.outputs.Emitter`). A streamal estimator is
driven on NumPy arrays (:mod:`streamal.runtime.block`), without pandas.
Everything is deterministic, so a resumed run repeats the uninterrupted one
exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from streamal.drift import DriftMonitor
from streamal.encoding import FeatureLimitError, FeatureSchema
from streamal.estimators.base import ActivationEstimator
from streamal.runtime import block as block_module
from streamal.runtime.alerts import AlertPolicy
from streamal.runtime.block import Block, Row
from streamal.runtime.decode import Decoded, RecordDecoder, text_key
from streamal.runtime.observer import Observer
from streamal.runtime.outputs import Emitter, RunSummary, dead_letter

__all__ = ["Lane", "Processor"]


@dataclass
class Lane:
    """One model with its own alert policy and drift monitor (state included)."""

    key: str | None
    model: Any
    alerts: AlertPolicy | None = None
    drift: DriftMonitor | None = None


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
        self.summary.records_in += len(records)
        for record, d in zip(records, self.decoder.decode_many(records, self.per_key),
                             strict=True):
            if not isinstance(d, Decoded):  # its DecodeError
                self._dead(record, d.stage, d.reason)
                continue
            if d.group not in self.lanes:
                if len(self.lanes) >= self.max_models:
                    self._dead(record, "validate", f"per-key model limit reached "
                               f"(max_models={self.max_models}): no model for {d.group!r}", d)
                    continue
                self.new_lane(d.group)
            groups.setdefault(d.group, []).append((record, d))
        try:
            for key, rows in groups.items():
                self._run_lane(self.lanes[key], rows)
        finally:
            self.emitter.release()  # the outputs held back: one add_many per sink

    # ---- one lane -------------------------------------------------------------------------------
    def _run_lane(self, lane: Lane, rows: list[Row]) -> None:
        """Judge and learn ``rows`` in chunks that end wherever the model may change.

        The model changes when its pending micro-batch fills, and when a learnt
        record brings a new feature or class. A chunk ends at the first of
        these, so every row is judged by exactly the model a loop of
        ``score_one``/``learn_one`` would use: outputs do not depend on how the
        source batched the records. A streamal estimator judges and learns
        slices of one :class:`~streamal.runtime.block.Block` of the rows; any
        other model goes record by record.
        """
        model = lane.model
        block = (Block(rows, block_module.schema_names(model))
                 if isinstance(model, ActivationEstimator) else None)
        drift_values: list[float] = []  # fed after the last chunk: the monitor is
        drift_rows: list[int] = []  # independent of the model
        start = 0
        while start < len(rows):
            stop, grows = ((start + 1, True) if block is None
                           else self._chunk_end(model, block, rows, start))
            chunk = rows[start:stop]
            started = time.perf_counter()
            judged, sound = (([self._judge_one(model, d.features) for _, d in chunk], False)
                             if block is None else self._judge(model, block, start, chunk))
            self.observer.timed("score", time.perf_counter() - started, len(chunk))
            schema = self._schema(model) if grows else None
            if sound and schema is None and self.task == "anomaly":
                keep = self._walk_scores(lane, chunk, judged)
                drift_values.extend(judged)
                drift_rows.extend(range(start, stop))
            else:
                keep, (values, indices) = self._walk(lane, chunk, judged, schema)
                drift_values.extend(values)
                drift_rows.extend(start + i for i in indices)
            if keep:
                started = time.perf_counter()
                self._learn(lane, [chunk[i] for i in keep],
                            *self._learnable(model, block, start, keep, grows))
                self.observer.timed("learn", time.perf_counter() - started, len(keep))
            start = stop
        self._drift(lane, rows, drift_values, drift_rows)

    def _chunk_end(self, model: Any, block: Block, rows: list[Row],
                   start: int) -> tuple[int, bool]:
        """End of the chunk from ``start``, and whether its last row brings a feature."""
        end = min(len(rows), start + block_module.room(model))
        known = model._schema.index.keys()  # the model's feature names
        if self.task == "anomaly" and block.names is not None and known >= block.names:
            return end, False  # every row has the same features, all known to the model
        classes = set(model.classes) if self.task == "classification" else None
        for stop in range(start, end):
            d = rows[stop][1]
            if not known >= d.features.keys():
                return stop + 1, True
            if classes is not None and d.label is not None and d.label not in classes:
                return stop + 1, False
        return end, False

    def _walk(self, lane: Lane, rows: list[Row], judged: list[Any], schema: FeatureSchema | None
              ) -> tuple[list[int], tuple[list[float], list[int]]]:
        """Check, emit and decide each judged row, in order.

        Returns the rows to learn and the drift values with their rows.
        ``schema`` is a copy of the model's, to foresee its feature cap
        (``None`` when no row of the chunk can bring a feature).
        """
        classes = self._class_room(lane.model)
        keep: list[int] = []
        drift_values: list[float] = []
        drift_rows: list[int] = []
        anomaly = self.task == "anomaly"
        for i, (record, d) in enumerate(rows):
            result = judged[i]
            if type(result) is str:
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
            learn = True
            if anomaly:
                learn = self._emit_score(lane, record, result, d)
                drift_values.append(result)
                drift_rows.append(i)
            else:
                prediction, proba = result
                self.summary.predicted += 1
                out = _base(lane, record, d)
                out.update(prediction=prediction, proba=proba, label=d.label)
                self.emitter.emit("predictions", out, d.key)
                if d.label is not None and prediction is not None:
                    drift_values.append(float(prediction != d.label))
                    drift_rows.append(i)
            if learn:
                if schema is not None:
                    schema.register([d.features])
                keep.append(i)
            else:
                self.summary.skipped_learning += 1
        return keep, (drift_values, drift_rows)

    def _walk_scores(self, lane: Lane, rows: list[Row], scores: list[float]) -> list[int]:
        """:meth:`_walk` for a chunk where no row can fail (no row brings a feature, every
        score is finite), a column at a time: the alert decisions in one call, the
        outputs of each sink in one call. Returns the rows to learn.
        """
        n = len(rows)
        self.summary.scored += n
        policy = lane.alerts
        alerts, thresholds = ([False] * n, None) if policy is None else policy.update_many(scores)
        keys = [d.key for _, d in rows]
        if self.emitter.wants("scores"):
            self.emitter.emit_many("scores", [
                _score(lane, record, d, score, alert)
                for (record, d), score, alert in zip(rows, scores, alerts, strict=True)], keys)
        everything = list(range(n))
        if policy is None or thresholds is None or True not in alerts:
            return everything
        alerted = [i for i in everything if alerts[i]]
        self.summary.alerted += len(alerted)
        outs = []
        for i in alerted:
            record, d = rows[i]
            out = _base(lane, record, d)
            out.update(kind="alert", score=scores[i], threshold=thresholds[i])
            outs.append(out)
        self.emitter.emit_many("alerts", outs, [keys[i] for i in alerted])
        if policy.learn_alerts:
            return everything
        self.summary.skipped_learning += len(alerted)
        return [i for i in everything if not alerts[i]]

    def _emit_score(self, lane: Lane, record: Any, score: float, d: Decoded) -> bool:
        """Emit the score (and an alert); return whether the record is to be learnt."""
        self.summary.scored += 1
        alert, threshold = False, None
        if lane.alerts is not None:
            alert, threshold = lane.alerts.update(score)
        self.emitter.emit("scores", _score(lane, record, d, score, alert), d.key)
        if not alert:
            return True
        self.summary.alerted += 1
        out = _base(lane, record, d)
        out.update(kind="alert", score=score, threshold=threshold)
        self.emitter.emit("alerts", out, d.key)
        return lane.alerts is None or lane.alerts.learn_alerts

    def _judge(self, model: ActivationEstimator, block: Block, start: int,
               rows: list[Row]) -> tuple[list[Any], bool]:
        """Per row: a score (anomaly), ``(prediction, proba)`` (classification) or an error;
        and whether the chunk was judged in one call (then no row failed)."""
        n = len(rows)
        classes = list(getattr(model, "classes", ())) if self.task == "classification" else None
        if classes is not None and not classes:
            return [(None, {})] * n, True
        try:
            names = block_module.schema_names(model)
            out = block_module.judge(model, self.task, names,
                                     block.aligned(names, start, start + n))
            if np.isfinite(out).all():
                if classes is None and out.shape == (n,):
                    return out.tolist(), True
                if classes is not None and out.shape == (n, len(classes)):
                    return [_prediction(dict(zip(classes, r, strict=True)))
                            for r in out.tolist()], True
        except Exception:  # find the failing rows one by one below
            pass
        return [self._judge_one(model, d.features) for _, d in rows], False

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

    @staticmethod
    def _learnable(model: Any, block: Block | None, start: int, keep: list[int],
                   grows: bool) -> tuple[list[str] | None, np.ndarray | None]:
        """``(columns, values)`` of the chunk's ``keep`` rows (the chunk starts at block row
        ``start``); ``(None, None)`` without a block.

        Rows that bring no feature go in the model's own columns, which the
        model takes as they are.
        """
        if block is None:
            return None, None
        if keep[-1] - keep[0] == len(keep) - 1:  # consecutive rows: a view
            values = block.values[start + keep[0]:start + keep[-1] + 1]
        else:
            values = block.values[[start + i for i in keep]]
        names = block_module.schema_names(model)
        if not grows and block.leads_with(names):
            return block.columns[: len(names)], values[:, : len(names)]
        return block.columns, values

    def _learn(self, lane: Lane, rows: list[Row], columns: list[str] | None,
               values: np.ndarray | None) -> None:
        """Learn ``rows``: from ``values`` (a streamal estimator), else record by record."""
        model: Any = lane.model
        labelled = self.task == "classification"
        if columns is None or values is None:  # a river model: one record at a time
            for record, d in rows:
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
        try:
            block_module.learn(model, self.task, columns, values, [d.label for _, d in rows])
        except Exception as exc:  # routed to the dead letter
            for record, d in rows:
                self._dead(record, "learn", _reason(exc), d)
            return
        self.summary.learnt += len(rows)

    def _drift(self, lane: Lane, rows: list[Row], values: list[float],
               indices: Sequence[int]) -> None:
        """Feed ``values`` (of the rows ``indices``) to the lane's drift monitor, in one call."""
        if lane.drift is None or not values:
            return
        stream = "score" if self.task == "anomaly" else "error"
        for j, event in lane.drift.update_many(values, stream):
            record, d = rows[indices[j]]
            event.update(id=record.id, position=list(record.position), key=d.key,
                         event_time=d.event_time)
            if lane.key is not None:
                event["model"] = lane.key
            self.summary.drift_events += 1
            self.emitter.emit("drift", event, d.key)


def _score(lane: Lane, record: Any, d: Decoded, score: float, alert: bool) -> dict[str, Any]:
    """The score output of ``record``: its :func:`_base` fields, ``score`` and ``alert``."""
    if lane.key is None:
        return {"id": record.id, "key": d.key, "event_time": d.event_time, "score": score,
                "alert": alert}
    return {"id": record.id, "key": d.key, "event_time": d.event_time, "model": lane.key,
            "score": score, "alert": alert}


def _base(lane: Lane, record: Any, d: Decoded) -> dict[str, Any]:
    """The fields every output of ``record`` starts with."""
    out = {"id": record.id, "key": d.key, "event_time": d.event_time}
    if lane.key is not None:
        out["model"] = lane.key
    return out


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
