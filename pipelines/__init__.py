"""Pipelines: a TOML spec joins a source, a model and sinks into a runnable pipeline.

Three ready specs ship in ``specs/``: sensor anomaly alerts from Kafka
(``sensor_anomaly_kafka``), online semi-supervised classification from Kafka
(``semisupervised_kafka``) and a backtest replay of files (``backtest_files``),
plus ``demo`` (the bundled NAB series, file outputs). The schema is documented
in ``pipelines/README.md``.

Examples
--------
>>> from streamal.pipelines import load_spec
>>> spec = load_spec("sensor_anomaly_kafka", ["source.topics=machines", "model.hidden=[16, 8]"])
>>> spec["source"]["topics"], spec["model"]["hidden"], spec["outputs"]["alerts"]["topic"]
('machines', (16, 8), 'sensor-alerts')
"""

from .build import (
    build_pipeline,
    build_sinks,
    build_source,
    model_factory,
    output_targets,
    run_pipeline,
)
from .spec import Spec, SpecError, load_spec, packaged_specs, parse_override, parse_spec

__all__ = [
    "Spec",
    "SpecError",
    "build_pipeline",
    "build_sinks",
    "build_source",
    "load_spec",
    "model_factory",
    "output_targets",
    "packaged_specs",
    "parse_override",
    "parse_spec",
    "run_pipeline",
]
