"""The shared-model sync without Kafka: the network hook, transport, and two gloo ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
from cluster import free_port

from streamal import ActivationClassifier, ActivationDetector
from streamal.distributed import (
    Collective,
    DeltaSum,
    SharedLearner,
    SyncError,
    _pack,
    _unpack,
    init_from_env,
    state_digest,
)
from streamal.network import ActivationNetwork
from streamal.runtime.scaleout import make_worker

HERE = Path(__file__).resolve().parent


@pytest.fixture
def world_of_one():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield Collective()
    dist.destroy_process_group()


def test_the_network_hook_is_off_by_default_and_sees_every_delta() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(16, 6, generator=g))
    plain = ActivationNetwork.dense(6, [4, 3], lr=0.1, seed=0)
    doubled = ActivationNetwork.dense(6, [4, 3], lr=0.05, seed=0)
    seen = []

    def double(deltas, learnt):
        seen.append(([d.shape for d in deltas], [y.shape for y in learnt]))
        return [2 * d for d in deltas], learnt

    doubled.delta_reducer = double
    assert plain.delta_reducer is None
    plain.learn(x)
    doubled.learn(x)
    assert seen == [([(6, 4), (4, 3)], [(16, 4)])]
    for a, b in zip(plain.stack, doubled.stack):
        assert torch.allclose(a.weight, b.weight, atol=1e-7)
    assert torch.equal(plain.activations[0].mean, doubled.activations[0].mean)


def test_transport_is_json_and_raw_bytes_never_pickle() -> None:
    arrays = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.array(3, dtype=np.int64)}
    back, meta = _unpack(_pack(arrays, {"a": [1, "x"]}))
    assert meta == {"a": [1, "x"]} and back.keys() == arrays.keys()
    assert all(np.array_equal(back[k], arrays[k]) and back[k].dtype == arrays[k].dtype
               for k in arrays)
    forged = json.dumps({"arrays": [["x", "|O", [1]]], "meta": {}}).encode() + b"\n" + b"\0" * 8
    with pytest.raises(SyncError, match="object dtype"):
        _unpack(forged)


def test_a_world_needs_rank_and_rendezvous_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SyncError, match="RANK, MASTER_ADDR, MASTER_PORT"):
        init_from_env("gloo")


def test_mean_scale_and_large_payloads_in_a_world_of_one(world_of_one: Collective) -> None:
    with pytest.raises(ValueError, match="scale"):
        DeltaSum(world_of_one, "median")
    big = bytes(range(256)) * 40  # past the one-collective capacity: a second round
    assert world_of_one.gather_bytes(big) == [big] and world_of_one.capacity >= len(big)
    shared = SharedLearner(ActivationDetector(seed=0), world_of_one, delta_scale="mean",
                           check_every=1)
    shared.broadcast()
    assert shared.step(pd.DataFrame(), note={"n": 0}) == [{"n": 0}]  # nothing learnt yet
    shared.step(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, np.nan]}))
    assert shared.model._n_learnt == 2 and shared.checks == 3
    assert shared.digest == state_digest(shared.model)


def test_a_shared_feedback_classifier_equals_a_plain_one(world_of_one: Collective) -> None:
    # feedback unlearns; the row bound must act on every worker's reduced step alike
    def make():
        return ActivationClassifier(hidden=(8, 4), batch_size=8, seed=0, feedback=True)

    shared, plain = SharedLearner(make(), world_of_one, check_every=1), make()
    shared.broadcast()
    rng = np.random.default_rng(0)
    for step in range(25):
        X = pd.DataFrame({"a": rng.normal(0, 1, 8), "b": rng.normal(3, 2, 8)})
        if step > 10:
            X["c"] = rng.normal(1, 1, 8)
        y = list(rng.choice(np.array(["u", "v", None], dtype=object), 8))
        shared.step(X, y)
        plain.learn_many(X, pd.Series(y, dtype=object))
        if step == 5:  # rows far past the bound, as runaway unlearning leaves them
            with torch.no_grad():
                for model in (shared.model, plain):
                    for layer in model._network.stack:
                        layer.weight.mul_(3.0)
    for mine, theirs in zip(shared.model._network.stack, plain._network.stack):
        # the kernels (plain) and the reduced step (shared) round differently
        torch.testing.assert_close(mine.weight, theirs.weight, atol=1e-5, rtol=0)
        assert float(torch.linalg.vector_norm(mine.weight, dim=1).max()) <= 1.0 + 1e-5


def test_scaleout_modes_are_checked() -> None:
    with pytest.raises(ValueError, match="mode"):
        make_worker("sharded", source=None)
    with pytest.raises(ValueError, match="key field"):
        make_worker("per_key", source=None, sinks={}, model_factory=None, decoder=None)


def test_two_gloo_ranks_stay_identical(tmp_path: Path) -> None:
    """Two processes: exact equivalences with one estimator, and identical state every step."""
    env = {**os.environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"}
    script = str(HERE / "shared_ranks.py")
    procs = [subprocess.Popen([sys.executable, script, str(tmp_path / f"r{rank}.json")],
                              env={**env, "RANK": str(rank)}, stderr=subprocess.PIPE)
             for rank in (0, 1)]
    errors = [p.communicate(timeout=120)[1].decode()[-3000:] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(errors)
    r0, r1 = (json.loads((tmp_path / f"r{rank}.json").read_text()) for rank in (0, 1))
    # rank 1 without records: rank 0's model is exactly a single estimator's
    assert r0["alone_equal"] and r1["alone_equal"]
    # the same micro-batch on both: "sum" is one worker with 2*lr, "mean" one with lr
    assert r0["sum_diff"] == 0.0 and r0["mean_diff"] == 0.0
    # uneven batches, a feature and a class seen by one rank only, feedback learning
    assert r0["digests"] == r1["digests"] and r0["checks"] == [31, 31]
    assert r0["schemas"] == r1["schemas"] == [["a", "b", "c"]] * 2
    assert r0["classes"][1] == r1["classes"][1] and "z" in r0["classes"][1]
    assert r0["n_learnt"] == r1["n_learnt"]
    # rank 0's trained model reaches rank 1's fresh one intact
    assert r0["broadcast_digest"] == r1["broadcast_digest"] and r1["broadcast_learnt"] == 40
