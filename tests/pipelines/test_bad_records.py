"""Bad and extreme records through a file pipeline: routed to the dead letter, harmless."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sensor_stream import FEATURES, bad_values, sensor_records

from streamal.pipelines import build_pipeline, load_spec


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def replay(tmp_path: Path, name: str, lines: list[bytes]) -> tuple[list[dict], list[dict]]:
    """Scores and dead letters of ``lines`` (a JSONL file) through the backtest spec."""
    data = tmp_path / f"{name}.jsonl"
    data.write_bytes(b"".join(line + b"\n" for line in lines))
    out = tmp_path / name
    spec = load_spec("backtest_files", [f"source.path={json.dumps(str(data))}",
                                        f"decode.features={json.dumps(FEATURES)}",
                                        f"outputs.directory={json.dumps(str(out))}",
                                        f"checkpoint.directory={json.dumps(str(out / 'ck'))}"])
    build_pipeline(spec).run()
    read = [[json.loads(x) for x in (out / f"{kind}.jsonl").read_text().splitlines()]
            if (out / f"{kind}.jsonl").exists() else [] for kind in ("scores", "dead_letter")]
    return read[0], read[1]


def seq_scores(scores: list[dict], lines: list[bytes]) -> dict[int, float]:
    by_line = {int(r["id"].rsplit("@", 1)[1]): r["score"] for r in scores}
    return {json.loads(lines[i])["seq"]: s for i, s in by_line.items()}


GOOD = [json.dumps(r).encode() for r in sensor_records(1200)]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[int, float]:
    """Scores by ``seq`` of the good records alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scores, dead = replay(tmp_path_factory.mktemp("clean"), "clean", GOOD)
    finally:
        torch.set_num_threads(threads)
    assert not dead
    return seq_scores(scores, GOOD)


def test_bad_records_change_nothing_for_the_good_ones(tmp_path: Path,
                                                      clean: dict[int, float]) -> None:
    bad = [value for _, value in bad_values(34) if b"\n" not in value and value.strip()]
    mixed = GOOD[:600] + bad + GOOD[600:]
    mixed_scores, mixed_dead = replay(tmp_path, "mixed", mixed)
    assert len(mixed_dead) == len(bad)
    assert seq_scores(mixed_scores, mixed) == pytest.approx(clean, abs=1e-6)


@pytest.mark.parametrize("value", [1e300, -1e300, 1e200])
def test_a_huge_finite_value_is_dead_lettered_and_harmless(tmp_path: Path, value: float,
                                                           clean: dict[int, float]) -> None:
    """A finite reading too large for the running statistics (its square overflows) is a bad
    record: it goes to the dead letter, and every later score is as if it never came."""
    huge = json.dumps({**json.loads(GOOD[0]), "seq": -1, "pressure": value}).encode()
    mixed = GOOD[:600] + [huge] + GOOD[600:]
    mixed_scores, dead = replay(tmp_path, "huge", mixed)
    assert [r["id"].rsplit("@", 1)[1] for r in dead] == ["600"], "the huge value is dead-lettered"
    assert dead[0]["stage"] == "validate" and "pressure" in dead[0]["reason"]
    assert seq_scores(mixed_scores, mixed) == pytest.approx(clean, abs=1e-6)
