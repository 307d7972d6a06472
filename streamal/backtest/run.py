"""Run a backtest: replay a spec's files through the pipeline, evaluate, write the report.

The pipeline is the one ``streamal run`` builds (:func:`streamal.pipelines.run_pipeline`),
with two changes to the spec: no checkpoint (a backtest always starts afresh and
resumes nothing), and the truth column added to ``decode.exclude`` (the model never
sees it). Its outputs go to in-memory sinks (:mod:`.collect`) instead of
``[outputs]``; after the run they are joined into one records table, evaluated
(:mod:`.metrics`) and written to the report folder (:mod:`.report`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from streamal.pipelines import Spec, SpecError, load_spec, run_pipeline
from streamal.pipelines.build import resolve_path
from streamal.pipelines.schema import BACKTEST_KEYS

from . import metrics
from .collect import ColumnSink, Progress, collectors, count_rows, file_of, read_field
from .labels import (
    LabelError,
    Window,
    anomaly_flag,
    class_value,
    in_windows,
    match_series,
    read_windows,
)
from .report import write_report

__all__ = ["BacktestResult", "backtest", "replay_spec", "settings_of"]

logger = logging.getLogger("streamal.backtest")

NO_LABELS = ("no labels (backtest.labels or backtest.label_field): the report has the outputs "
             "and plots but no quality metrics")


@dataclass
class BacktestResult:
    """What a backtest produced.

    Attributes
    ----------
    summary
        The content of ``summary.json``: metrics, counts, labels, warnings, the spec
        run and the versions.
    records
        One row per judged record (the content of ``records.parquet``).
    report
        The report folder.
    """

    summary: dict[str, Any]
    records: pd.DataFrame
    report: Path


def settings_of(spec: Spec) -> dict[str, Any]:
    """The spec's ``[backtest]`` table, with the defaults when it has none."""
    given = spec.get("backtest")
    return dict(given) if given is not None else {k: key.default
                                                  for k, key in BACKTEST_KEYS.items()}


def backtest(spec: Spec | str | os.PathLike[str], overrides: Iterable[str] = (),
             progress: bool = False) -> BacktestResult:
    """Replay the files of ``spec`` (a :class:`Spec`, a spec file or a packaged spec name),
    evaluate the outputs against the labels, and write the report.

    ``overrides`` (``"TABLE.KEY=VALUE"``) apply when ``spec`` is a file or a name (a
    :class:`Spec` is used as it is); ``progress`` shows a progress bar on stderr when it is
    a terminal. See :mod:`streamal.backtest` for an example.

    Raises :class:`~streamal.pipelines.SpecError` for a spec a backtest cannot run, and
    :class:`~streamal.backtest.labels.LabelError` for unusable labels.
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec, overrides)
    settings = settings_of(spec)
    task = spec["model"]["task"]
    truth_field = settings["label_field"]
    if truth_field is None and task == "classification":
        truth_field = spec["decode"]["label_field"]
    _check(spec, settings, truth_field)
    windows = read_windows(settings["labels"]) if settings["labels"] is not None else None
    replay = replay_spec(spec, truth_field)
    sinks = collectors()
    source = replay["source"]
    try:
        total = count_rows(resolve_path(source["path"]), source["format"])
    except (FileNotFoundError, ValueError) as exc:
        raise SpecError([("source.path", str(exc))], spec.origin) from None
    if replay["run"]["max_records"] is not None:
        total = min(total, replay["run"]["max_records"])
    started = time.monotonic()
    summary = run_pipeline(replay, sinks, Progress(total, progress))
    by = settings["series"] or ("key" if spec["decode"]["key_field"] else "file")
    records = _records(task, sinks, by)
    warnings: list[str] = []
    labels_info: dict[str, Any] = {"kind": None, "series_by": by}
    matched: dict[str, list[Window]] = {}
    if windows is not None:
        matched = _window_truth(records, windows, by, labels_info, warnings)
        labels_info.update(kind="windows", source=settings["labels"])
    elif truth_field is not None:
        _column_truth(records, replay, task, truth_field, warnings)
        labels_info.update(kind="column", source=truth_field)
    else:
        warnings.append(NO_LABELS)
    found = _evaluate(task, records, settings, spec, matched, windows is not None, warnings)
    if summary.dead_lettered_total:
        warnings.append(_dead_letters(summary))
    for line in warnings:
        logger.warning("%s", line)
    result = {
        "task": task,
        "metrics": found,
        "counts": {**_counts(summary), "series": int(records["series"].nunique())},
        "labels": labels_info,
        "warnings": warnings,
        "seconds": time.monotonic() - started,
        "spec": replay.redacted(),
    }
    folder = Path(settings["report"])
    written = write_report(folder, result, records, {"drift": sinks["drift"].frame(),
                                                     "dead_letters": sinks["dead_letter"].frame()},
                           matched, settings["rolling_window"])
    return BacktestResult(written, records, folder)


def _check(spec: Spec, settings: Mapping[str, Any], truth_field: str | None) -> None:
    problems = []
    if spec["source"]["type"] != "file":
        problems.append(("source.type", "a backtest replays files: use a file source "
                         "(source.type = \"file\" and source.path)"))
    if settings["labels"] is not None and spec["model"]["task"] != "anomaly":
        problems.append(("backtest.labels", "window labels mark anomalies: use them with "
                         "model.task = \"anomaly\" (classification takes backtest.label_field)"))
    if settings["labels"] is not None and settings["label_field"] is not None:
        problems.append(("backtest.label_field", "give backtest.labels (windows) or "
                         "backtest.label_field (a column), not both"))
    features = spec["decode"]["features"]
    if truth_field is not None and features is not None and truth_field in features:
        problems.append(("backtest.label_field", f"{truth_field!r} is also a feature "
                         "(decode.features): the model would see the answer"))
    if problems:
        raise SpecError(problems, spec.origin)


def replay_spec(spec: Spec, truth_field: str | None) -> Spec:
    """``spec`` as a backtest runs it: no checkpoint, the truth field never a feature."""
    decode = dict(spec["decode"])
    if truth_field is not None and truth_field not in decode["exclude"]:
        decode["exclude"] = [*decode["exclude"], truth_field]
    data = {name: spec[name] for name in spec}
    data["decode"] = decode
    data["checkpoint"] = {**spec["checkpoint"], "directory": None}
    return Spec(data, spec.origin)


def _records(task: str, sinks: Mapping[str, ColumnSink], by: str) -> pd.DataFrame:
    """One row per judged record: its outputs, file, series, alert threshold, drift flag."""
    if task == "anomaly":
        records = sinks["scores"].frame()
        thresholds = sinks["alerts"].frame().set_index("id")["threshold"]
        records["threshold"] = records["id"].map(thresholds)
    else:
        records = sinks["predictions"].frame().rename(columns={"label": "given_label"})
        records["given_label"] = records["given_label"].map(class_value)
        records["prediction"] = records["prediction"].map(class_value)
    records["file"] = records["id"].map(file_of)
    series = records["key"] if by == "key" else records["file"]
    records["series"] = series.fillna("(no key)").astype(str)
    records["drift"] = records["id"].isin(set(sinks["drift"].frame()["id"]))
    records["time"] = pd.to_datetime(records["event_time"], unit="s", utc=True)
    records["label"] = None
    return records


def _window_truth(records: pd.DataFrame, windows: Mapping[str, list[Window]], by: str,
                  info: dict[str, Any], warnings: list[str]) -> dict[str, list[Window]]:
    """Label each record of a labelled series (in a window: anomalous); return the windows
    of each matched series of the run."""
    seen = list(dict.fromkeys(records["series"]))
    matches, unmatched = match_series(windows, seen, by)
    if not matches:
        raise LabelError(
            f"no series of the labels file matches a series of the run (matched by {by}: "
            f"{'record key' if by == 'key' else 'source file name'}); labels name "
            f"{list(windows)[:5]}, the run has {seen[:5]}")
    for name in unmatched:
        warnings.append(f"labels series {name!r} matches no series of the run; left out")
    info.update(matched=matches, unmatched=unmatched,
                unlabelled_series=[s for s in seen if s not in matches.values()])
    by_series = {matches[name]: windows[name] for name in matches}
    labels = pd.Series(None, index=records.index, dtype=object)
    times = records["event_time"].to_numpy(dtype=float)
    for name, wins in by_series.items():
        rows = (records["series"] == name).to_numpy()
        labels[rows] = in_windows(times[rows], wins)
    records["label"] = labels
    return by_series


def _column_truth(records: pd.DataFrame, replay: Spec, task: str, field: str,
                  warnings: list[str]) -> None:
    """Set ``label`` from the field ``field`` of each record (read in a second pass)."""
    if task == "classification" and field == replay["decode"]["label_field"]:
        records["label"] = records["given_label"]
    else:
        values = read_field(replay, field)
        if not values:
            raise LabelError(f"no record has the label field {field!r}")
        convert = class_value if task == "classification" else anomaly_flag
        raw = records["id"].map(values)
        try:
            records["label"] = [None if pd.isna(v) else convert(v) for v in raw]
        except LabelError as exc:
            raise LabelError(f"label field {field!r}: {exc}") from None
    missing = int(records["label"].isna().sum())
    if missing:
        warnings.append(f"{missing} judged records have no value in the label field {field!r}; "
                        "they are left out of the metrics")


def _evaluate(task: str, records: pd.DataFrame, settings: Mapping[str, Any], spec: Spec,
              windows: Mapping[str, list[Window]], nab: bool,
              warnings: list[str]) -> dict[str, Any]:
    if records["label"].notna().sum() == 0:
        return {}
    if task == "classification":
        return metrics.classification_metrics(records)
    warmup = settings["warmup"]
    if warmup is None:
        warmup = spec["alerts"]["warmup"] if spec["alerts"] is not None else 0
    found = metrics.anomaly_metrics(records, warmup)
    if found["anomalous"] == 0:
        warnings.append("the labels mark no evaluated record as anomalous: ROC-AUC, PR-AUC, "
                        "F1 and MAR are undefined")
    if nab:
        labelled = records[records["series"].isin(list(windows))]
        found["nab"], lost = metrics.nab_metrics(labelled, windows)
        warnings.extend(lost)
    return found


def _dead_letters(summary: Any) -> str:
    stages = ", ".join(f"{stage} {n}" for stage, n in summary.dead_lettered.items() if n)
    return (f"{summary.dead_lettered_total} records could not be used ({stages}); they are in "
            "dead_letters.parquet with the reason")


def _counts(summary: Any) -> dict[str, Any]:
    return {"records": summary.records_in, "scored": summary.scored,
            "predicted": summary.predicted, "alerts": summary.alerted,
            "drift_events": summary.drift_events, "models": summary.models,
            "dead_letters": summary.dead_lettered_total,
            "dead_letters_by_stage": dict(summary.dead_lettered),
            "stopped_by": summary.stopped_by}
