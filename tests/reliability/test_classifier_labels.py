"""Labels for the classifier: malformed or oversized ones, classes that appear late, a cap.

Pass: a malformed label (a float, a list, an object, a 300-character string, an integer past
64 bits) sends its record to the dead letter with the reason, and changes nothing for the
others; NaN and null mean "unlabelled"; a class first seen late is learnt and predicted, and
survives a checkpoint and resume exactly; past ``max_classes`` a new class is dead-lettered,
not learnt, so that label noise cannot grow the model without bound.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from streamal import ActivationClassifier
from streamal.connectors import MemorySink, MemorySource
from streamal.runtime import Pipeline, RecordDecoder

CENTRES = {"low": (-2.0, 2.0), "high": (2.0, -2.0), "late": (2.0, 2.0), "later": (-2.0, -2.0)}


def rows(n: int, classes: list[str], seed: int, label_every: int = 2) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        y = rng.choice(classes)
        cx, cy = CENTRES[y]
        row: dict[str, Any] = {"a": rng.gauss(cx, 0.7), "b": rng.gauss(cy, 0.7)}
        if i % label_every == 0:
            row["y"] = y
        out.append(row)
    return out


def classify(values: list[Any], checkpoint_dir: Path | None = None, max_records: int | None = None,
             **kwargs: Any) -> tuple[Pipeline, dict[str, MemorySink]]:
    sinks = {"predictions": MemorySink(), "dead_letter": MemorySink()}
    pipe = Pipeline(MemorySource(values), sinks,
                    lambda: ActivationClassifier(hidden=(16,), batch_size=8, seed=0),
                    RecordDecoder(label_field="y"), task="classification", poll_records=64,
                    checkpoint_dir=checkpoint_dir, checkpoint_every_records=500, **kwargs)
    pipe.run(max_records=max_records)
    return pipe, sinks


def encoded(stream: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r, allow_nan=True).encode() for r in stream]


BAD_LABELS = [3.5, [1], {"k": "v"}, "x" * 300, 2**70, -(2**80), 1e400]


def test_malformed_labels_are_dead_lettered_and_change_nothing_else() -> None:
    clean = rows(1200, ["low", "high"], seed=1)
    mixed = list(clean)
    mixed[601] = {**clean[601], "y": float("nan")}  # NaN means unlabelled, like no label
    assert "y" not in clean[601]
    rng = random.Random(2)
    for i, bad in enumerate(BAD_LABELS * 3):
        mixed.insert(rng.randrange(len(mixed)), {"a": 0.1 * i, "b": 0.0, "y": bad})
    pipe_clean, out_clean = classify(encoded(clean))
    pipe_mixed, out_mixed = classify(encoded(mixed))
    dead = out_mixed["dead_letter"].records
    assert len(dead) == len(BAD_LABELS) * 3
    assert all(d["stage"] == "validate" and "label" in d["reason"] for d in dead)
    assert [p["prediction"] for p in out_mixed["predictions"].records] == \
        [p["prediction"] for p in out_clean["predictions"].records]
    a = pipe_mixed.models[None]._export_state()[0]
    b = pipe_clean.models[None]._export_state()[0]
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in b)
    assert pipe_mixed.models[None].classes == ["low", "high"] or \
        pipe_mixed.models[None].classes == ["high", "low"]


def test_a_late_class_is_learnt_predicted_and_resumed_exactly(tmp_path: Path) -> None:
    stream = encoded(rows(1500, ["low", "high"], seed=3) + rows(1500, ["low", "high", "late"],
                                                                 seed=4))
    whole, out = classify(stream)
    model = whole.models[None]
    assert sorted(model.classes) == ["high", "late", "low"]
    tail = out["predictions"].records[-600:]
    assert sum(p["prediction"] == "late" for p in tail) > 100, "the late class gets predicted"
    assert all(set(p["proba"]) == {"high", "late", "low"} for p in tail)
    late_ids = [json.loads(stream[int(p["id"].split("@")[1])]).get("y") for p in tail]
    hits = sum(p["prediction"] == y for p, y in zip(tail, late_ids) if y is not None)
    assert hits / sum(y is not None for y in late_ids) > 0.6  # chance is 1/3

    classify(stream, tmp_path, max_records=1700)  # stop just after the class appeared
    resumed, _ = classify(stream, tmp_path)
    a, b = resumed.models[None]._export_state()[0], model._export_state()[0]
    assert a.keys() == b.keys()
    assert max(float(np.nanmax(np.abs(a[k] - b[k]), initial=0.0)) for k in b
               if a[k].dtype.kind == "f" and a[k].size) <= 1e-6


def test_classes_past_max_classes_are_dead_lettered_not_learnt() -> None:
    stream = encoded(rows(600, ["low", "high"], seed=5) + rows(600, ["late", "later"], seed=6))
    pipe, out = classify(stream, max_classes=3)
    assert sorted(pipe.models[None].classes) == ["high", "late", "low"]
    dead = out["dead_letter"].records
    assert dead and all("max_classes=3" in d["reason"] and "'later'" in d["reason"]
                        for d in dead)
    assert len(dead) + len(out["predictions"].records) == len(stream)
    unlabelled_later = [p for p in out["predictions"].records if p["label"] is None]
    assert unlabelled_later, "records without a label are still predicted and learnt"
