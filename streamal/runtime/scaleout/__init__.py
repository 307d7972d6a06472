"""Scale-out: several ``streamal run`` workers on one topic, one or many models.

Workers with the same spec join one Kafka consumer group, which splits the
topic's partitions between them; nothing else coordinates them except, in
``shared`` mode, torch.distributed. Three model modes:

``per_partition``
    One model per partition (:class:`PartitionedWorker`). Its state (model,
    alert policy, drift monitor, counters, position) is checkpointed per
    partition, in ``<checkpoint.directory>/partitions/``, a directory that every
    worker must see (a shared volume). When the group rebalances, a worker that
    loses a partition flushes its sinks and checkpoints that partition first
    (Kafka calls it before the partition goes anywhere); one that gains a
    partition loads that partition's newest checkpoint and seeks to its
    position. A worker that crashes loses nothing either: the next owner
    resumes from the crashed worker's last checkpoint of the partition, so the
    model sees every record once (outputs after that checkpoint come twice,
    with the same ids). A partition's model depends only on its own records, so
    the models do not depend on which worker learnt what.
``per_key``
    The same, with one model per value of ``decode.key_field`` inside each
    partition. When producers key records by that field (Kafka's default
    partitioner sends a key to one partition), that is one model per key.
``shared``
    One model for all workers (:class:`SharedWorker`), kept identical by
    summing each micro-batch's weight deltas with a torch.distributed
    all-reduce (see :mod:`streamal.distributed` for what it means for the
    learning rate and the order of updates). The workers advance in lockstep,
    one micro-batch each per sync step (possibly empty). A checkpoint is
    global and taken at the same step by all: rank 0 writes the model, the
    position of every partition and every rank's alert and drift state in one
    file, so only rank 0 needs the checkpoint directory; on start, rank 0 reads
    it and broadcasts it. Positions travel with every step, so a partition that
    moves in a rebalance continues exactly where the model has learnt up to.
    If a worker dies, the others' next collective fails and they exit too
    (crash-only): restart them all (Kubernetes, compose ``restart``, or
    ``torchrun --max-restarts``) and they resume from the last global
    checkpoint, which keeps the model's exactly-once effect. The world is fixed
    (``WORLD_SIZE``): change the number of workers by restarting all of them.

Every worker has the :class:`~streamal.runtime.Pipeline` interface
(``run(max_records, stop)``, ``request_stop()``, ``models``, ``counters``) and
returns a :class:`~streamal.runtime.RunSummary` of the partitions it held.
"""

from __future__ import annotations

from typing import Any

from streamal.runtime.scaleout.partitioned import PartitionedWorker
from streamal.runtime.scaleout.shared import SharedWorker

__all__ = ["MODES", "PartitionedWorker", "SharedWorker", "make_worker"]

MODES = ("per_partition", "per_key", "shared")


def make_worker(mode: str, *, per_key: str | None = None, **kwargs: Any) -> Any:
    """The worker of ``mode``, built from :class:`~streamal.runtime.Pipeline`'s arguments.

    ``per_key`` names the key field of ``per_key`` mode (required there, refused in
    ``shared`` mode). ``shared`` also takes ``backend``, ``delta_scale``,
    ``step_records``, ``sync_timeout`` and ``check_every`` (see :class:`SharedWorker`).
    """
    if mode not in MODES:
        raise ValueError(f"scale-out mode must be one of {MODES}, got {mode!r}")
    if mode == "shared":
        return SharedWorker(per_key=per_key, **kwargs)
    for name in ("backend", "delta_scale", "step_records", "sync_timeout", "check_every"):
        kwargs.pop(name, None)
    if mode == "per_key" and per_key is None:
        raise ValueError("per_key mode needs the key field (decode.key_field)")
    return PartitionedWorker(per_key=per_key, **kwargs)
