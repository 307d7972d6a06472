"""One model shared by several workers, kept identical with torch.distributed.

Every worker holds a full copy of an :class:`~streamal.estimators.base.ActivationEstimator`
and learns from its own records. A *sync step* is one micro-batch on every
worker (possibly empty) and is collective: all workers call
:meth:`SharedLearner.step` the same number of times, in the same order.

What one step does, on every worker:

1. The workers exchange their micro-batches' raw feature values, column names and
   labels (a few hundred bytes). Each registers the union in rank order, exactly as
   one estimator would register the concatenated batch: the same new features and
   classes in the same order, drawn from the same generators, and the running
   feature moments updated with the union. So the schema and the standardisation
   stay identical everywhere.
2. Each worker runs the model's own micro-batch step on *its own* records (encode,
   then as many learning calls as the model makes: the classifier's passes and
   rehearsal included), computing per-layer weight deltas (the expensive part,
   ``O(B·n·m)``).
3. :class:`DeltaSum`, installed as the network's ``delta_reducer``, all-reduces each
   call's deltas (sum) and gathers the layer outputs that the ``std_abs`` running
   statistics learn from; every worker applies the same sum with the same ``lr``. A
   worker without records, or done with its calls, takes part with zero-rate filler
   calls until a round where nobody learns (one extra all-reduce per step).

The classifier's rehearsal buffer stays each worker's own: it rehearses the labelled
records that worker saw (rank 0's buffer is the one checkpointed and broadcast).

Weights start equal (rank 0's state is broadcast when the workers start:
:meth:`SharedLearner.broadcast`) and every update is the same on every worker,
so they stay bitwise identical; ``check_every`` verifies it with a SHA-256 of
the whole state.

Learning rate and order of updates
----------------------------------
``delta_scale="sum"`` (the default) applies ``Σ_w ΔW_w``: each record moves the
weights exactly as much as it would on a single worker (``η/B`` per record,
``B`` the local micro-batch), so a step of ``W`` full micro-batches is ``W``
times the step of one worker. It is a first-order approximation of applying the
``W`` micro-batches one after the other: all ``W·B`` records of a step are
learnt against the same weights and none sees the others' updates. We do not
divide by ``W``. ``delta_scale="mean"`` divides the sum by the number of workers
that contributed records (one worker's step size, ``W`` times less per record);
use it, or divide ``lr`` by ``W``, when the rule's step is near its stable limit.
Records are judged before the step that learns them (prequential per step);
within a step the order across workers is the rank order, and the model does not
depend on it except through floating-point summation.

Backends: gloo on CPU, NCCL when the model lives on CUDA (each process then
uses ``cuda:$LOCAL_RANK``). Nothing here is pickled: payloads travel as JSON and
raw array bytes.

Examples
--------
A world of one process (no peers) behaves like a plain estimator:

>>> import pandas as pd
>>> import torch.distributed as dist
>>> from streamal import ActivationDetector
>>> dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
>>> shared = SharedLearner(ActivationDetector(seed=0), Collective())
>>> plain = ActivationDetector(seed=0)
>>> X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [0.5, 0.1, 0.3, 0.2]})
>>> _ = shared.step(X)
>>> plain.learn_many(X); plain.flush()
>>> shared.model.score_one({"a": 2.5, "b": 0.4}) == plain.score_one({"a": 2.5, "b": 0.4})
True
>>> dist.destroy_process_group()
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from streamal.encoding import FeatureLimitError
from streamal.estimators.base import ActivationEstimator, frame_values, resolve_device
from streamal.estimators.classifier import validate_label

__all__ = ["Collective", "DeltaSum", "SharedLearner", "SyncError", "init_from_env", "state_digest"]

logger = logging.getLogger(__name__)

DELTA_SCALES = ("sum", "mean")


class SyncError(RuntimeError):
    """The workers disagree (diverged weights) or a peer is gone; restart them all."""


# ---- process group -------------------------------------------------------------------------------
def init_from_env(backend: str = "gloo", timeout: float = 120.0) -> None:
    """Join the process group described by torch's environment variables.

    ``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` (set by
    ``torchrun``, or by hand, or from a StatefulSet's pod index) name the world;
    without ``WORLD_SIZE`` (or with 1) the world is this process alone. ``timeout``
    bounds the rendezvous and every collective: a peer that is gone ends the
    step with an error instead of a hang. Does nothing if a group exists.
    """
    if dist.is_initialized():
        return
    limit = dt.timedelta(seconds=timeout)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                                timeout=limit)
        return
    missing = [name for name in ("RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise SyncError(f"WORLD_SIZE={world} but {', '.join(missing)} is not set: each worker "
                        "needs RANK (0..WORLD_SIZE-1), MASTER_ADDR and MASTER_PORT (rank 0's "
                        "address), as torchrun sets them")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, init_method="env://", timeout=limit)


class Collective:
    """The few collectives a shared model needs, over one torch.distributed group.

    Tensors travel on ``device`` (CPU for gloo, the current CUDA device for NCCL).
    Every method is collective: all ranks call it, in the same order.
    """

    def __init__(self, group: Any = None) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        backend = dist.get_backend(group)
        self.device = torch.device("cuda", torch.cuda.current_device()) \
            if backend == "nccl" else torch.device("cpu")
        self.capacity = 4096  # bytes per rank that gather_bytes moves in one collective

    def all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place, and return it."""
        moved = tensor.to(self.device)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM, group=self.group)
        if moved is not tensor:
            tensor.copy_(moved)
        return tensor

    def counts(self, n: int) -> list[int]:
        """Every rank's ``n``, in rank order."""
        slots = torch.zeros(self.world_size, dtype=torch.int64, device=self.device)
        slots[self.rank] = n
        self.all_reduce(slots)
        return [int(v) for v in slots.tolist()]

    def gather_rows(self, tensor: torch.Tensor, counts: Sequence[int]) -> torch.Tensor:
        """Concatenate every rank's ``tensor`` along dim 0, in rank order.

        ``counts`` holds every rank's number of rows (known to all beforehand).
        """
        most = max(counts)
        shape = (most, *tensor.shape[1:])
        padded = torch.zeros(shape, dtype=tensor.dtype, device=self.device)
        padded[: tensor.shape[0]] = tensor.to(self.device)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded, group=self.group)
        out = torch.cat([part[:n] for part, n in zip(parts, counts)])
        return out.to(tensor.device)

    def gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data``, in rank order.

        One all-gather of a fixed-size buffer (length + data) when every rank's
        data fits in it, as a sync step's usually does; a second one otherwise,
        after which the buffer grows (on every rank alike: all see the lengths).
        """
        size = 8 + self.capacity
        buf = torch.zeros(size, dtype=torch.uint8)
        buf[:8] = torch.frombuffer(bytearray(len(data).to_bytes(8, "little")), dtype=torch.uint8)
        if len(data) <= self.capacity and data:
            buf[8:8 + len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        mine = buf.to(self.device)
        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(parts, mine, group=self.group)
        raw = [part.cpu().numpy().tobytes() for part in parts]
        lengths = [int.from_bytes(r[:8], "little") for r in raw]
        if max(lengths) <= self.capacity:
            return [r[8:8 + n] for r, n in zip(raw, lengths)]
        self.capacity = max(self.capacity, 2 ** (max(lengths) - 1).bit_length())
        padded = torch.zeros(max(lengths), dtype=torch.uint8)
        if data:
            padded[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        mine = padded.to(self.device)
        parts = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(parts, mine, group=self.group)
        return [part.cpu().numpy().tobytes()[:n] for part, n in zip(parts, lengths)]

    def gather_json(self, value: Any) -> list[Any]:
        """Every rank's JSON-serialisable ``value``, in rank order."""
        return [json.loads(b) for b in self.gather_bytes(json.dumps(value).encode())]

    def broadcast_bytes(self, data: bytes | None, root: int = 0) -> bytes:
        """``root``'s ``data`` on every rank (the others pass ``None``)."""
        size = torch.tensor([len(data) if self.rank == root and data else 0],
                            dtype=torch.int64, device=self.device)
        dist.broadcast(size, root, group=self.group)
        n = int(size.item())
        buf = torch.zeros(n, dtype=torch.uint8, device=self.device)
        if self.rank == root and n:
            buf.copy_(torch.frombuffer(bytearray(data or b""), dtype=torch.uint8))
        if n:
            dist.broadcast(buf, root, group=self.group)
        return buf.cpu().numpy().tobytes()

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        self.counts(0)


# ---- the network hook ----------------------------------------------------------------------------
class DeltaSum:
    """A network ``delta_reducer``: sums each learning call's deltas over all workers.

    One all-reduce per call carries every layer's delta, every rank's number of
    learnt records and whether the rank's call is :attr:`real` (a micro-batch)
    or a filler (a zero-rate record that only takes part); a second collective
    gathers the layer outputs that the running statistics of the activations
    learn from (skipped when no rank has any). :attr:`real_calls` is the number
    of real calls of the last round. ``scale`` is ``"sum"`` or ``"mean"``
    (divide by the number of real calls of the round).
    """

    def __init__(self, collective: Collective, scale: str = "sum") -> None:
        if scale not in DELTA_SCALES:
            raise ValueError(f"scale must be one of {DELTA_SCALES}, got {scale!r}")
        self.collective = collective
        self.scale = scale
        self.real = True
        self.real_calls = 0

    def __call__(self, deltas: list[torch.Tensor],
                 learnt: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        c = self.collective
        n_learnt = learnt[0].shape[0] if learnt else 0
        tail = deltas[0].new_zeros(c.world_size + 1)
        tail[c.rank] = float(n_learnt)
        tail[-1] = 1.0 if self.real else 0.0
        flat = torch.cat([d.reshape(-1) for d in deltas] + [tail])
        c.all_reduce(flat)
        self.real_calls = int(round(float(flat[-1])))
        if self.scale == "mean" and self.real_calls > 1:
            flat[: -c.world_size - 1] /= self.real_calls
        summed, start = [], 0
        for d in deltas:
            summed.append(flat[start:start + d.numel()].view_as(d))
            start += d.numel()
        counts = [int(round(v)) for v in flat[-c.world_size - 1:-1].tolist()]
        if not learnt or not any(counts):
            return summed, [y[:0] for y in learnt]
        widths = [y.shape[1] for y in learnt]
        pooled = c.gather_rows(torch.cat(learnt, dim=1), counts)
        return summed, list(torch.split(pooled, widths, dim=1))


# ---- state digest and transport ------------------------------------------------------------------
def _pack(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> bytes:
    """Arrays and meta as bytes without pickle: a JSON header line, then raw array bytes."""
    index, blobs = [], []
    for name, value in arrays.items():
        a = np.asarray(value)  # tobytes() is C order whatever the layout
        index.append([name, a.dtype.str, list(a.shape)])
        blobs.append(a.tobytes())
    header = json.dumps({"arrays": index, "meta": meta}).encode()
    return header + b"\n" + b"".join(blobs)


def _unpack(data: bytes) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    head, _, body = data.partition(b"\n")
    header = json.loads(head)
    arrays, start = {}, 0
    for name, dtype, shape in header["arrays"]:
        dt_ = np.dtype(dtype)
        if dt_.hasobject:
            raise SyncError(f"refusing array {name!r} of object dtype")
        n = int(np.prod(shape, dtype=np.int64)) * dt_.itemsize
        arrays[name] = np.frombuffer(body[start:start + n], dtype=dt_).reshape(shape).copy()
        start += n
    return arrays, header["meta"]


def state_digest(model: ActivationEstimator) -> str:
    """SHA-256 of what the workers keep identical: weights and running statistics
    (``network.*``), feature moments, the generators that grow the schema, schema,
    layers, classes and the learnt count. A worker's own extras (the classifier's
    rehearsal buffer, its pending rows) are left out."""
    arrays, meta = model._export_state()
    h = hashlib.sha256()
    shared = ("network.", "moments.", "rng.network", "rng.features", "rng.labels")
    for name in sorted(arrays):
        if not name.startswith(shared):
            continue
        a = np.asarray(arrays[name])
        h.update(name.encode() + a.dtype.str.encode() + str(a.shape).encode() + a.tobytes())
    h.update(json.dumps([meta["schema"], meta["layers"], meta.get("classes"),
                         meta["n_learnt"]], default=str).encode())
    return h.hexdigest()


# ---- the shared estimator ------------------------------------------------------------------------
class SharedLearner:
    """Learn with one :class:`ActivationEstimator` replicated on every worker of a group.

    Parameters
    ----------
    model
        This worker's copy. Its own ``learn_one``/``learn_many`` must not be used
        while it is shared: :meth:`step` is the only way it learns.
    collective
        The group's :class:`Collective`.
    delta_scale
        ``"sum"`` (default) or ``"mean"``; see the module docstring.
    check_every
        Every that many steps, compare the SHA-256 of every worker's state and
        raise :class:`SyncError` if they differ (0: never).
    """

    def __init__(self, model: ActivationEstimator, collective: Collective,
                 delta_scale: str = "sum", check_every: int = 0) -> None:
        if check_every < 0:
            raise ValueError(f"check_every must be >= 0, got {check_every}")
        self.model = model
        self.collective = collective
        self.delta_scale = delta_scale
        self.check_every = check_every
        self.reducer = DeltaSum(collective, delta_scale)
        self.steps = 0
        self.checks = 0
        self.digest: str | None = None

    # ---- start -------------------------------------------------------------------------------
    def broadcast(self, root: int = 0) -> None:
        """Make every worker's state ``root``'s (fresh or restored), then verify it."""
        c = self.collective
        self.model._ensure_state()
        data = _pack(*self.model._export_state()) if c.rank == root else None
        received = c.broadcast_bytes(data, root)
        if c.rank != root:
            self.model._import_state(*_unpack(received))
        self._install()
        self.verify()

    def _install(self) -> None:
        net = self.model._network
        if net is not None and net.delta_reducer is not self.reducer:
            net.delta_reducer = self.reducer

    def verify(self) -> str:
        """Compare every worker's :func:`state_digest`; raise :class:`SyncError` if they differ."""
        mine = state_digest(self.model)
        digests = [d.decode() for d in self.collective.gather_bytes(mine.encode())]
        if len(set(digests)) != 1:
            raise SyncError(f"the workers' models differ after {self.steps} sync steps: "
                            f"{dict(enumerate(digests))}")
        self.checks += 1
        self.digest = mine
        return mine

    # ---- one step ----------------------------------------------------------------------------
    def step(self, X: pd.DataFrame, y: Sequence[Any] | None = None,
             note: Any = None) -> list[Any]:
        """Learn this worker's micro-batch ``X`` (labels ``y``) together with the others'.

        Collective: every worker calls it once per step, with zero rows if it
        has nothing. ``note`` (JSON-serialisable) reaches every worker; the
        notes of all workers are returned in rank order.
        """
        model, c = self.model, self.collective
        model._ensure_state()
        X = X.loc[:, X.notna().any(axis=0)] if len(X) else X.iloc[:0, :0]
        columns = [str(name) for name in X.columns]
        values = frame_values(X) if len(X) else np.zeros((0, 0))
        labels = [None] * len(values) if y is None else [validate_label(v) for v in y]
        if len(labels) != len(values):
            raise ValueError(f"X has {len(values)} rows but y has {len(labels)} labels")
        header = json.dumps({"columns": columns, "labels": labels, "note": note}).encode()
        payloads = c.gather_bytes(header + b"\n" + np.ascontiguousarray(values, "<f8").tobytes())
        headers, blocks = [], []
        for payload in payloads:  # one collective pair carries everyone's header and values
            head, _, body = payload.partition(b"\n")
            headers.append(json.loads(head))
            width = len(headers[-1]["columns"])
            blocks.append(np.frombuffer(body, "<f8").reshape(len(headers[-1]["labels"]), width))
        counts = [len(h["labels"]) for h in headers]
        notes = [h["note"] for h in headers]
        self.steps += 1
        if sum(counts):
            self._learn(headers, blocks, counts, labels)
        if self.check_every and self.steps % self.check_every == 0:
            self.verify()
        return notes

    def _learn(self, headers: list[dict[str, Any]], blocks: list[np.ndarray], counts: list[int],
               labels: list[Any]) -> None:
        model, c = self.model, self.collective
        union_columns = list(dict.fromkeys(name for h in headers for name in h["columns"]))
        where = {name: j for j, name in enumerate(union_columns)}
        union = np.full((sum(counts), len(union_columns)), np.nan)
        start = 0
        for h, block in zip(headers, blocks):
            for j, name in enumerate(h["columns"]):
                union[start:start + len(block), where[name]] = block[:, j]
            start += len(block)
        union_labels = [label for h in headers for label in h["labels"]]
        try:
            model._register(union_columns, union, union_labels)
        except FeatureLimitError as exc:  # same on every worker: unknown columns are dropped
            logger.warning("shared model: %s; the new features are left out", exc)
            known = [j for j, name in enumerate(union_columns) if name in model._schema.index]
            model._register([union_columns[j] for j in known], union[:, known], union_labels)
        self._install()
        index = model._schema.index
        block = np.full((len(union), len(model._schema)), np.nan)
        for j, name in enumerate(union_columns):
            if name in index:
                block[:, index[name]] = union[:, j]
        model._moments.update(block)
        start = sum(counts[: c.rank])
        mine = block[start:start + counts[c.rank]]
        net = model._network
        assert net is not None
        if len(mine):  # the model's own micro-batch step (several passes, rehearsal, ...)
            self.reducer.real = True
            model._learn_values(mine, labels)
        # Then zero-rate filler calls, each matching another worker's remaining learning
        # call, until a round where no worker learns: all make the same number of calls.
        self.reducer.real = False
        device = resolve_device(model.device)
        while True:
            net.learn(torch.zeros(1, net.in_features, device=device),
                      rate=torch.zeros(1, device=device))
            if self.reducer.real_calls == 0:
                break
        model._n_learnt += int(sum(counts))
