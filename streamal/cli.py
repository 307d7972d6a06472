"""The ``streamal`` command: run a pipeline spec, run the demo, inspect checkpoints.

::

    streamal run SPEC [--set TABLE.KEY=VALUE ...]   run a pipeline until its source ends,
                                                    SIGTERM or SIGINT (then a final checkpoint)
    streamal demo [--out DIR] [--set ...]           replay the bundled NAB series, print a summary
    streamal spec SPEC [--set ...]                  validate a spec, print it with defaults
    streamal backtest SPEC [--set ...] [--labels FILE] [--label-field NAME] [--report DIR]
                                                    replay a spec's files, evaluate the
                                                    outputs, write a report
    streamal checkpoint show PATH [--json]          describe a checkpoint file (or a directory's
                                                    newest)

SPEC is a TOML file or the name of a packaged spec (``demo``,
``sensor_anomaly_kafka``, ``semisupervised_kafka``, ``backtest_files``,
``backtest_nab``, ``semisupervised_files``). Logs
go to stderr, one line per event; summaries go to stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamal.connectors.base import Sink

__all__ = ["main"]

logger = logging.getLogger("streamal.cli")
events = logging.getLogger("streamal.events")

DEMO_OUT = "streamal-demo"
EXIT_SPEC = 2
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamal",
        description="Streaming online learning by activation learning: anomaly scores, "
                    "semi-supervised predictions, alerts and drift, from Kafka or files.")
    parser.add_argument("--log-level", default="INFO",
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="logging level (default INFO)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="torch CPU threads (default 1: micro-batches are small, and more "
                             "threads mostly add contention)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    overrides = argparse.ArgumentParser(add_help=False)
    overrides.add_argument("--set", dest="overrides", action="append", default=[],
                           metavar="TABLE.KEY=VALUE",
                           help="override a spec key; VALUE is a TOML value or a bare string "
                                "(repeatable), e.g. --set model.hidden=[32,32]")

    run = commands.add_parser("run", parents=[overrides], help="run a pipeline spec")
    run.add_argument("spec", help="TOML spec file or packaged spec name")

    demo = commands.add_parser("demo", parents=[overrides],
                               help="replay the bundled sensor series through the "
                                    "sensor-anomaly pipeline (no Kafka) and print a summary")
    demo.add_argument("--out", default=DEMO_OUT,
                      help=f"folder for outputs and checkpoints (default ./{DEMO_OUT})")

    spec = commands.add_parser("spec", parents=[overrides],
                               help="validate a spec and print it with its defaults")
    spec.add_argument("spec", help="TOML spec file or packaged spec name")

    backtest = commands.add_parser(
        "backtest", parents=[overrides],
        help="replay a spec's files through its pipeline, evaluate the outputs against "
             "labels, write Parquet outputs, summary.json and an HTML report")
    backtest.add_argument("spec", help="TOML spec file or packaged spec name")
    backtest.add_argument("--labels", metavar="FILE",
                          help="JSON file of labelled [start, end] windows per series "
                               "(NAB's format); sets backtest.labels")
    backtest.add_argument("--label-field", metavar="NAME",
                          help="field holding every record's true label; sets "
                               "backtest.label_field")
    backtest.add_argument("--report", metavar="DIR",
                          help="report folder; sets backtest.report")
    backtest.add_argument("--no-progress", action="store_true",
                          help="no progress bar (there is none when stderr is not a terminal)")

    checkpoint = commands.add_parser("checkpoint", help="inspect checkpoints")
    actions = checkpoint.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser("show", help="describe a checkpoint file")
    show.add_argument("path", help="a checkpoint file, or a directory (its newest checkpoint)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamal`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "DEBUG":  # kafka-python logs every connection at INFO
        logging.getLogger("kafka").setLevel(logging.WARNING)
    if args.threads >= 1:
        import torch

        torch.set_num_threads(args.threads)
    from streamal.backtest import LabelError
    from streamal.checkpoint import CheckpointError
    from streamal.connectors.base import DeliveryError, SourceError
    from streamal.pipelines import SpecError

    try:
        if args.command == "run":
            return _run(args.spec, args.overrides)
        if args.command == "demo":
            return _demo(args.out, args.overrides)
        if args.command == "spec":
            return _show_spec(args.spec, args.overrides)
        if args.command == "backtest":
            return _backtest(args)
        return _checkpoint_show(args.path, args.json)
    except (SpecError, LabelError) as exc:
        print(f"streamal: {exc}", file=sys.stderr)
        return EXIT_SPEC
    except BrokenPipeError:  # `streamal ... | head`: the reader left, nothing went wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CheckpointError, DeliveryError, SourceError, OSError) as exc:  # one clear line
        logger.error("stopped by %s: %s", type(exc).__name__, exc)
        return EXIT_FAILED


# ---- run -----------------------------------------------------------------------------------
class _EventLog(Sink):
    """A sink wrapper that also logs one line per alert, drift event or dead letter."""

    def __init__(self, kind: str, sink: Any) -> None:
        self.kind = kind
        self.sink = sink

    def add(self, record: Mapping[str, Any], key: str | None = None) -> None:
        self.sink.add(record, key=key)
        if self.kind == "alerts":
            events.info("alert %s key=%s score=%.4f threshold=%s", record.get("id"),
                        record.get("key"), record.get("score", float("nan")),
                        record.get("threshold"))
        elif self.kind == "drift":
            events.info("drift %s key=%s stream=%s detector=%s", record.get("id"),
                        record.get("key"), record.get("stream"), record.get("detector"))
        else:
            events.warning("dead letter %s stage=%s: %s", record.get("id"), record.get("stage"),
                           record.get("reason"))

    def flush(self) -> None:
        self.sink.flush()

    def close(self) -> None:
        self.sink.close()


def _log_observer() -> Any:
    """An observer of the runtime that logs the start and every checkpoint, one line each."""
    from streamal.runtime.observer import Observer

    class LogObserver(Observer):
        summary: Any = None

        def started(self, summary: Any, resumed_at: float | None) -> None:
            self.summary = summary
            if resumed_at is None:
                logger.info("started afresh (no checkpoint to resume from)")
            else:
                logger.info("resumed: %d records already processed, checkpoint written %s",
                            summary.records_in,
                            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(resumed_at)))

        def checkpoint(self, seconds: float, error: BaseException | None) -> None:
            s = self.summary
            if error is not None:  # the runtime logs an outage once, when it starts and ends
                logger.debug("checkpoint failed after %.2f s (will retry): %s", seconds, error)
            elif s is not None:
                logger.info("checkpoint %d committed in %.2f s: records_in=%d scored=%d "
                            "predicted=%d alerts=%d drift=%d dead_letters=%d", s.checkpoints,
                            seconds, s.records_in, s.scored, s.predicted, s.alerted,
                            s.drift_events, s.dead_lettered_total)

    return LogObserver()


def _execute(spec: Any, log_events: bool = True) -> tuple[Any, float]:
    """Build and run the pipeline of ``spec``; return its summary and the seconds it took."""
    from streamal.observability import observe
    from streamal.pipelines import build_sinks, run_pipeline
    from streamal.runtime import Observers

    name = spec["name"] or spec.origin or "pipeline"
    logger.info("pipeline %s: spec %s", name, json.dumps(spec.redacted(), default=str))
    sinks = build_sinks(spec)
    if log_events:
        sinks = {kind: _EventLog(kind, sink) if kind in ("alerts", "drift", "dead_letter")
                 else sink for kind, sink in sinks.items()}
    started = time.monotonic()
    # metrics, /healthz, one log line per Kafka outage, rate-limited event lines
    with observe(spec["observability"], spec["checkpoint"]["every_seconds"]) as watch:
        observer = Observers(_log_observer(), watch.metrics) if log_events else watch.metrics
        summary = run_pipeline(spec, sinks, observer)  # SIGTERM/SIGINT: stop, final checkpoint
    elapsed = time.monotonic() - started
    logger.info("pipeline %s: stopped (%s) after %.1f s: %s", name, summary.stopped_by, elapsed,
                json.dumps(_counters(summary), default=str))
    return summary, elapsed


def _run(source: str, overrides: Sequence[str]) -> int:
    from streamal.pipelines import load_spec

    spec = load_spec(source, overrides)
    _execute(spec)
    return 0


def _counters(summary: Any) -> dict[str, Any]:
    """The run summary as a flat dict (dead letters in total and per stage)."""
    counters = summary.as_dict()
    counters["dead_letters"] = summary.dead_lettered_total
    counters.pop("positions", None)
    return counters


# ---- demo ----------------------------------------------------------------------------------
def _demo(out: str, overrides: Sequence[str]) -> int:
    from streamal.pipelines import load_spec, output_targets

    outputs, checkpoints = os.path.join(out, "outputs"), os.path.join(out, "checkpoints")
    spec = load_spec("demo", [f"outputs.directory={json.dumps(outputs)}",
                              f"checkpoint.directory={json.dumps(checkpoints)}", *overrides])
    _clear_demo(spec)
    summary, elapsed = _execute(spec, log_events=False)
    counters = _counters(summary)
    targets = output_targets(spec)
    print(_demo_summary(spec, counters, targets, elapsed))
    return 0


def _clear_demo(spec: Any) -> None:
    """Remove what an earlier demo wrote (its own files only), so the demo starts afresh."""
    from streamal.checkpoint import CheckpointStore
    from streamal.pipelines import output_targets

    removed = 0
    for target in output_targets(spec).values():
        path = Path(target.get("path", ""))
        if target.get("format") == "jsonl" and path.is_file():
            path.unlink()
            removed += 1
        elif target.get("format") == "parquet" and path.is_dir():
            for part in path.glob("part-*.parquet"):
                part.unlink()
                removed += 1
    directory = spec["checkpoint"]["directory"]
    if directory:
        for old in CheckpointStore(directory).list():
            old.unlink()
            removed += 1
    if removed:
        logger.info("demo: removed %d files of an earlier demo run", removed)


def _count(counters: Mapping[str, Any], *names: str) -> int:
    return sum(int(counters.get(name, 0) or 0) for name in names)


def _demo_summary(spec: Any, counters: Mapping[str, Any], targets: Mapping[str, Any],
                  elapsed: float) -> str:
    from streamal.checkpoint import CheckpointStore

    records = _count(counters, "records_in")
    lines = [
        "streamal demo: the NAB series ambient_temperature_system_failure.csv (hourly office "
        "temperature; Numenta, MIT license) replayed through the sensor-anomaly pipeline",
        f"  records:        {records}",
        f"  scored:         {_count(counters, 'scored')}",
        f"  alerts:         {_count(counters, 'alerted')}",
        f"  drift events:   {_count(counters, 'drift_events')}",
        f"  dead letters:   {_count(counters, 'dead_letters')}",
        f"  time:           {elapsed:.1f} s ({records / max(elapsed, 1e-9):,.0f} records/s)",
        "  outputs:",
    ]
    for kind, target in targets.items():
        path = target.get("path")
        if path is not None and (os.path.isfile(path) or os.path.isdir(path)):
            lines.append(f"    {kind + ':':<15} {path}")
    directory = spec["checkpoint"]["directory"]
    latest = CheckpointStore(directory).list()[-1:] if directory else []
    if latest:
        lines.append(f"  checkpoint:     {latest[0]}")
        lines.append(f"  inspect it:     streamal checkpoint show {latest[0]}")
    return "\n".join(lines)


# ---- backtest ------------------------------------------------------------------------------
def _backtest(args: argparse.Namespace) -> int:
    from streamal.backtest import backtest

    options = (("labels", args.labels), ("label_field", args.label_field),
               ("report", args.report))
    overrides = [*args.overrides, *(f"backtest.{key}={json.dumps(value)}"
                                    for key, value in options if value is not None)]
    result = backtest(args.spec, overrides, progress=not args.no_progress)
    print(_backtest_summary(result.summary, result.report))
    return 0


def _backtest_summary(summary: Mapping[str, Any], report: Path) -> str:
    counts, found = summary["counts"], summary["metrics"]
    lines = [f"streamal backtest ({summary['task']}): {counts['records']} records, "
             f"{counts['alerts']} alerts, {counts['drift_events']} drift events, "
             f"{counts['dead_letters']} dead letters in {summary['seconds']:.1f} s"]
    nab = found.get("nab") or {}
    shown = [(name, found.get(name)) for name in (
        "roc_auc", "pr_auc", "f1", "far", "mar", "accuracy", "kappa", "accuracy_labelled",
        "accuracy_unlabelled") if name in found]
    shown += [(f"nab_{profile}", nab[profile]["score"]) for profile in nab
              if isinstance(nab[profile], Mapping)]
    lines += [f"  {name + ':':<26}{'n/a' if value is None else f'{value:.4f}'}"
              for name, value in shown]
    if not found:
        lines.append("  no labels: no quality metrics")
    lines.append(f"  report:                   {report / 'report.html'}")
    lines.append(f"  summary:                  {report / 'summary.json'}")
    return "\n".join(lines)


# ---- spec ----------------------------------------------------------------------------------
def _show_spec(source: str, overrides: Sequence[str]) -> int:
    from streamal.pipelines import load_spec

    spec = load_spec(source, overrides)
    print(json.dumps(spec.redacted(), indent=2, default=str))
    return 0


# ---- checkpoint show -----------------------------------------------------------------------
def _checkpoint_show(path: str, as_json: bool) -> int:
    from streamal.checkpoint import CheckpointError, CheckpointStore, describe, read_state

    target = Path(path)
    if target.is_dir():
        files = CheckpointStore(target).list()
        if not files:
            print(f"streamal: no checkpoint files in {target}", file=sys.stderr)
            return EXIT_FAILED
        target = files[-1]
    try:
        info = describe(target)
        meta = read_state(target)[1] if info["checksum_ok"] else None
    except CheckpointError as exc:
        print(f"streamal: {exc}", file=sys.stderr)
        return EXIT_FAILED
    pipeline = _pipeline_view(meta) if meta is not None else None
    if as_json:
        print(json.dumps({**info, **({"pipeline": pipeline} if pipeline else {})}, indent=2,
                         default=str))
    else:
        print(_describe_text(info, pipeline))
    return 0 if info["checksum_ok"] else EXIT_FAILED


def _pipeline_view(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a pipeline checkpoint holds, for people: positions, counters, models, spec."""
    if meta.get("kind") != "streamal.pipeline":
        return None
    written = meta.get("written_at")
    models = []
    for entry in meta.get("models", []):
        model_meta = entry.get("meta") or {}
        models.append({"key": entry.get("key"), "estimator": model_meta.get("estimator"),
                       "features": model_meta.get("schema"),
                       "learnt": model_meta.get("n_learnt"),
                       "pending": len(model_meta.get("pending_labels") or []),
                       "params": model_meta.get("params")})
    return {
        "written_at": None if written is None else time.strftime(
            "%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(written))),
        "positions": meta.get("positions"),
        "counters": meta.get("counters"),
        "models": models,
        "spec": meta.get("spec"),
        "fingerprint": meta.get("fingerprint"),
    }


def _describe_text(info: Mapping[str, Any], pipeline: Mapping[str, Any] | None) -> str:
    lines = [
        f"checkpoint {info['path']}",
        f"  sequence:        {info.get('sequence')}",
        f"  format version:  {info.get('format_version')}",
        f"  size:            {info.get('size_bytes', 0):,} bytes",
        f"  checksum:        {'ok' if info.get('checksum_ok') else 'MISMATCH (altered file)'}",
    ]
    if pipeline is not None:
        lines.append(f"  written:         {pipeline['written_at']}")
        lines.append("  positions (next offset to read):")
        lines.extend(f"    {stream}: {offset}"
                     for stream, offset in (pipeline["positions"] or {}).items())
        counters = dict(pipeline["counters"] or {})
        dead = counters.pop("dead_lettered", {}) or {}
        lines.append("  counters:        " + ", ".join(f"{k}={v}" for k, v in counters.items()))
        lines.append("  dead letters:    " + ", ".join(f"{k}={v}" for k, v in dead.items()))
        lines.append(f"  models ({len(pipeline['models'])}):")
        for model in pipeline["models"][:20]:
            key = "(single model)" if model["key"] is None else model["key"]
            if model["learnt"] is None:  # a preset: its pieces keep their own counts
                lines.append(f"    {key}: {model['estimator']}, parameters {model['params']}")
            else:
                lines.append(f"    {key}: {model['estimator']}, {model['learnt']} learnt, "
                             f"{model['pending']} pending, features {model['features']}")
        if len(pipeline["models"]) > 20:
            lines.append(f"    ... and {len(pipeline['models']) - 20} more")
        lines.append(f"  spec:            {json.dumps(pipeline['spec'], sort_keys=True)}")
        lines.append(f"  fingerprint:     {pipeline['fingerprint']}")
    else:
        meta = info.get("meta") or {}
        if meta:
            lines.append("  meta:")
            width = max(len(str(k)) for k in meta) + 1
            lines.extend(f"    {str(k) + ':':<{width}} {json.dumps(v, default=str)}"
                         for k, v in meta.items())
    arrays = info.get("arrays") or {}
    if arrays:
        lines.append(f"  arrays ({len(arrays)}):")
        width = max(len(str(k)) for k in arrays) + 1
        lines.extend(f"    {str(k) + ':':<{width}} {a['dtype']} {tuple(a['shape'])}"
                     for k, a in arrays.items())
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
