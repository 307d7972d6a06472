"""The report folder of a backtest: Parquet tables, ``summary.json``, ``report.html``, PNGs.

::

    REPORT/records.parquet        one row per judged record (outputs, label, drift flag)
    REPORT/drift.parquet          the drift events
    REPORT/dead_letters.parquet   the records that could not be used, with the reason
    REPORT/summary.json           metrics, counts, labels, warnings, spec, versions
    REPORT/report.html            metrics table and plots; needs only the PNGs beside it
    REPORT/plots/*.png            score per series (anomaly) or rolling accuracy

Plots are drawn with matplotlib's Agg canvas (no display, no global backend change).
"""

from __future__ import annotations

import html
import json
import math
import platform
import re
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .labels import Window
from .metrics import in_time_order, rolling

__all__ = ["MAX_SERIES_PLOTS", "versions", "write_report"]

MAX_SERIES_PLOTS = 24
"""Anomaly: series plotted (those with the most alerts first; the rest are listed)."""

PACKAGES = ("streamal", "torch", "river", "numpy", "pandas", "pyarrow", "matplotlib")


def versions() -> dict[str, str | None]:
    """Python's and the installed packages' versions (``None``: not installed)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _plain(value: Any) -> Any:
    """JSON-safe data: NaN and infinities as null, NumPy scalars unwrapped."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame``; a column of mixed types (labels "a" and 1) is written as text."""
    try:
        frame.to_parquet(path, index=False)
    except (TypeError, ValueError):  # pyarrow's ArrowInvalid / ArrowTypeError among them
        fixed = frame.copy()
        for name in fixed.select_dtypes(include="object").columns:
            fixed[name] = [None if v is None else str(v) for v in fixed[name]]
        fixed.to_parquet(path, index=False)


def _x(rows: pd.DataFrame) -> Any:
    """The time axis of a plot: event times when every row has one, else record numbers."""
    if len(rows) and rows["event_time"].notna().all():
        return pd.to_datetime(rows["event_time"], unit="s").to_numpy()
    return np.arange(len(rows))


def _spans(rows: pd.DataFrame, x: Any, windows: Sequence[Window]) -> list[tuple[Any, Any]]:
    """What to shade: the labelled windows, else the runs of rows labelled anomalous."""
    if windows:
        return [(pd.Timestamp(s, unit="s"), pd.Timestamp(e, unit="s")) for s, e in windows]
    flags = rows["label"].fillna(False).astype(bool).to_numpy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flags.astype(int), [0]])))
    return [(x[a], x[b - 1]) for a, b in zip(edges[::2], edges[1::2])]


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 3.4))
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _mark_drift(ax: Any, x: Any, drift: np.ndarray) -> None:
    for i, at in enumerate(x[drift]):
        ax.axvline(at, color="tab:green", linestyle="--", linewidth=0.9,
                   label="drift" if i == 0 else None)


def plot_series(rows: pd.DataFrame, windows: Sequence[Window], title: str, path: Path) -> None:
    """Score over time with alerts, labelled windows shaded and drift events marked."""
    figure, ax = _figure()
    x = _x(rows)
    timed = bool(len(rows)) and rows["event_time"].notna().all()
    for i, (start, end) in enumerate(_spans(rows, x, windows if timed else ())):
        ax.axvspan(start, end, color="tab:orange", alpha=0.25,
                   label="labelled anomaly" if i == 0 else None)
    ax.plot(x, rows["score"].to_numpy(dtype=float), linewidth=0.6, color="tab:blue",
            label="score")
    alert = rows["alert"].fillna(False).astype(bool).to_numpy()
    ax.scatter(x[alert], rows["score"].to_numpy(dtype=float)[alert], s=10, color="tab:red",
               zorder=3, label="alert")
    _mark_drift(ax, x, rows["drift"].to_numpy(dtype=bool))
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("anomaly score")
    ax.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def plot_accuracy(records: pd.DataFrame, window: int, path: Path) -> None:
    """Rolling and cumulative prequential accuracy over time, with drift events marked."""
    figure, ax = _figure()
    x = _x(records)
    known = records["label"].notna().to_numpy()
    ax.plot(x[known], rolling(records, window).to_numpy(), linewidth=0.8, color="tab:blue",
            label=f"over the last {window} records")
    ax.plot(x[known], rolling(records, None).to_numpy(), linewidth=0.8,
            color="tab:gray", label="since the start")
    _mark_drift(ax, x, records["drift"].to_numpy(dtype=bool))
    ax.set_ylim(0, 1.02)
    ax.set_title("prequential accuracy (records with a known label)", fontsize=10)
    ax.set_ylabel("prequential accuracy")
    ax.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _file_name(series: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", series.rsplit("/", 1)[-1])[:60] or "series"
    name, n = f"{stem}.png", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}.png"
    used.add(name)
    return name


def _plots(folder: Path, task: str, records: pd.DataFrame,
           windows: Mapping[str, Sequence[Window]], rolling_window: int) -> list[dict[str, str]]:
    plots = folder / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for old in plots.glob("*.png"):  # a previous report's plots
        old.unlink()
    if task == "classification":
        plot_accuracy(records, rolling_window, plots / "accuracy.png")
        return [{"title": "prequential accuracy", "path": "plots/accuracy.png"}]
    ordered = in_time_order(records)
    alerts = ordered.groupby("series", sort=False)["alert"].sum().sort_values(
        ascending=False, kind="stable")
    made: list[dict[str, str]] = []
    used: set[str] = set()
    for series in alerts.index[:MAX_SERIES_PLOTS]:
        name = _file_name(str(series), used)
        plot_series(ordered[ordered["series"] == series], windows.get(str(series), ()),
                    str(series), plots / name)
        made.append({"title": str(series), "path": f"plots/{name}"})
    return made


def write_report(folder: Path, summary: dict[str, Any], records: pd.DataFrame,
                 events: Mapping[str, pd.DataFrame], windows: Mapping[str, Sequence[Window]],
                 rolling_window: int) -> dict[str, Any]:
    """Write the report folder (see the module docstring); return what ``summary.json``
    holds: ``summary`` with ``files``, ``plots`` and ``versions`` added, NaN as null."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"records": "records.parquet"}
    _parquet(records, folder / "records.parquet")
    for name, frame in events.items():
        files[name] = f"{name}.parquet"
        _parquet(frame, folder / files[name])
    made = _plots(folder, summary["task"], records, windows, rolling_window)
    summary.update(files={**files, "summary": "summary.json", "report": "report.html"},
                   plots=[p["path"] for p in made], versions=versions())
    shown = _plain(summary)
    (folder / "summary.json").write_text(json.dumps(shown, indent=2, default=str) + "\n",
                                         encoding="utf-8")
    (folder / "report.html").write_text(_html(shown, made), encoding="utf-8")
    return dict(shown)


# ---- HTML ----------------------------------------------------------------------------------
_ROWS = (  # (label, path in summary["metrics"], format)
    ("ROC-AUC (point-wise)", ("roc_auc",), "{:.4f}"),
    ("PR-AUC (average precision)", ("pr_auc",), "{:.4f}"),
    ("F1 at the alert threshold (SKAB)", ("f1",), "{:.4f}"),
    ("FAR, false-alarm rate (SKAB)", ("far",), "{:.2%}"),
    ("MAR, missed-alarm rate (SKAB)", ("mar",), "{:.2%}"),
    ("NAB score, standard", ("nab", "standard", "score"), "{:.2f}"),
    ("NAB score, reward low FP", ("nab", "reward_low_FP_rate", "score"), "{:.2f}"),
    ("NAB score, reward low FN", ("nab", "reward_low_FN_rate", "score"), "{:.2f}"),
    ("records evaluated", ("evaluated",), "{:,}"),
    ("of them anomalous", ("anomalous",), "{:,}"),
    ("prequential accuracy", ("accuracy",), "{:.4f}"),
    ("Cohen's kappa", ("kappa",), "{:.4f}"),
    ("accuracy on labelled records", ("accuracy_labelled",), "{:.4f}"),
    ("accuracy on unlabelled records", ("accuracy_unlabelled",), "{:.4f}"),
    ("labelled records", ("labelled",), "{:,}"),
    ("unlabelled records", ("unlabelled",), "{:,}"),
)

_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1150px}"
          "table{border-collapse:collapse;margin:1em 0}"
          "td,th{border:1px solid #ccc;padding:4px 10px;text-align:left}"
          "td.n{text-align:right;font-variant-numeric:tabular-nums}"
          "img{max-width:100%;margin:0.5em 0}pre{background:#f6f6f6;padding:1em;overflow:auto}")


def _get(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = data
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td class=n>{html.escape(v)}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def _html(summary: Mapping[str, Any], plots: list[dict[str, str]]) -> str:
    found = summary.get("metrics") or {}
    shown = []
    for label, path, fmt in _ROWS:
        value = _get(found, path)
        if path[0] in found:
            shown.append((label, "n/a" if value is None else fmt.format(value)))
    counts = [(k.replace("_", " "), str(v)) for k, v in summary["counts"].items()
              if not isinstance(v, Mapping)]
    name = summary["spec"].get("name") or "pipeline"
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>streamal backtest: {html.escape(str(name))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Backtest of {html.escape(str(name))} ({html.escape(summary['task'])})</h1>",
        "<h2>Metrics</h2>",
        _table(shown) if shown else "<p>No labels, so no quality metrics.</p>",
        "<h2>Counts</h2>", _table(counts),
    ]
    if summary.get("warnings"):
        items = "".join(f"<li>{html.escape(w)}</li>" for w in summary["warnings"])
        parts += ["<h2>Warnings</h2>", f"<ul>{items}</ul>"]
    parts.append("<h2>Plots</h2>")
    series = summary["counts"].get("series", 0)
    if summary["task"] == "anomaly" and series > len(plots):
        parts.append(f"<p>The {len(plots)} series with the most alerts of {series}; "
                     "records.parquet has them all.</p>")
    for plot in plots:
        parts.append(f"<h3>{html.escape(plot['title'])}</h3>"
                     f"<img src='{html.escape(plot['path'])}' alt='{html.escape(plot['title'])}'>")
    parts += ["<h2>Spec and versions</h2>",
              f"<pre>{html.escape(json.dumps(summary['spec'], indent=2, default=str))}</pre>",
              f"<pre>{html.escape(json.dumps(summary['versions'], indent=2))}</pre>",
              "</body></html>\n"]
    return "\n".join(parts)
