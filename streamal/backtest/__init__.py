"""Backtests: replay recorded files through a pipeline and measure how good its outputs are.

``streamal backtest SPEC`` (or :func:`backtest` from Python) runs the spec's pipeline,
the same code as ``streamal run``, over its files from the start, then compares the
outputs with labels:

- anomaly task: labelled time windows (``backtest.labels``, NAB's JSON format; series
  matched to the record key or to the source file) or a label column
  (``backtest.label_field``, 1/true = anomalous). Metrics: point-wise ROC-AUC and
  PR-AUC of the scores, SKAB's F1, FAR and MAR of the alerts (pooled over series), and,
  with windows, the NAB score of the alerts under NAB's three profiles;
- classification task: the true class of every record (``backtest.label_field``, by
  default ``decode.label_field``). Metrics: prequential accuracy overall and over time,
  Cohen's kappa, accuracy on the records the model got the label of and on the others.

The report folder holds every record's outputs as Parquet, ``summary.json`` and
``report.html`` with PNG plots (see :mod:`streamal.backtest.report`).

Modules
-------
run
    :func:`backtest`: replay, evaluate, report.
collect
    The in-memory sinks and the progress bar the run uses; the second pass that reads
    the truth column.
labels
    Window files and label values.
metrics
    The numbers, from :mod:`streamal.evaluation`.
report
    Parquet, JSON, HTML and the plots.

Examples
--------
>>> import os, tempfile
>>> folder = tempfile.mkdtemp()
>>> with open(os.path.join(folder, "s.csv"), "w") as f:
...     _ = f.write("t,v,bad\\n" + "".join(f"{i},{(i % 7) / 7},{int(i == 150)}\\n"
...                                       for i in range(200)))
>>> with open(os.path.join(folder, "spec.toml"), "w") as f:
...     _ = f.write(f'''
... [source]
... type = "file"
... path = {os.path.join(folder, "s.csv")!r}
... [decode]
... time_field = "t"
... [alerts]
... warmup = 50
... [outputs]
... directory = "unused: a backtest writes to its report folder"
... [backtest]
... label_field = "bad"
... report = {os.path.join(folder, "report")!r}
... ''')
>>> result = backtest(os.path.join(folder, "spec.toml"))
>>> result.summary["counts"]["records"], result.summary["metrics"]["anomalous"]
(200, 1)
>>> sorted(os.listdir(result.report))
['dead_letters.parquet', 'drift.parquet', 'plots', 'records.parquet', 'report.html', \
'summary.json']
"""

from .labels import LabelError
from .run import BacktestResult, backtest

__all__ = ["BacktestResult", "LabelError", "backtest"]
