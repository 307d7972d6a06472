"""Records per second of ActivationDetector next to river's HalfSpaceTrees and OneClassSVM.

Every model sees the same seeded stream (``--features`` features in [0, 1],
correlated through a few latent factors, plus rare outliers) and, per record,
is scored and then learns it (prequential). The detector, ``hidden=(64, 64)``,
runs at micro-batch sizes 1, 32 and 256, once through ``score_one`` /
``learn_one`` and once through ``score_many`` / ``learn_many`` on frames of
the batch size (built before the clock starts, as a stream of frames would
arrive). Ratios are to HalfSpaceTrees measured in the same run. The clock is
the process's CPU time by default (``--clock wall`` for elapsed time): on a
shared machine it does not count the time the process waits for a core, which
moves elapsed-time rates by tens of percent between runs. Every model runs in
one thread (torch's set by ``--threads``; numba's kernels and river are
single-threaded), so CPU time is the time it computes.

``--profile`` adds a cProfile of the one-record path at batch 32 and of
one-row frames (the top functions by own time). ``--device cuda`` instead
times the paper-size network (1064 inputs, layers of 1064) learning batches of
100 on the GPU, with ``torch.profiler`` kernel time next to wall time to show
what bounds it.

Usage (from the repository root)::

    python bench/throughput.py [--records 4000] [--threads 1] [--profile] [--clock wall]
    python bench/throughput.py --device cuda
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import numpy as np
import pandas as pd
import torch

TARGETS = {  # (batch, path): required ratio to HalfSpaceTrees
    (32, "many"): 5.0,
    (32, "one"): 2.0,
    (1, "one"): 1.0,
    (1, "many"): 1.0,
}


def make_stream(n: int, features: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 4))
    mix = rng.normal(size=(4, features))
    x = latent @ mix + 0.3 * rng.normal(size=(n, features))
    outliers = rng.random(n) < 0.01
    x[outliers] += rng.normal(scale=6.0, size=(outliers.sum(), features))
    x = 1.0 / (1.0 + np.exp(-x / 3.0))  # into (0, 1), HalfSpaceTrees' default range
    return pd.DataFrame(x, columns=[f"f{i:02d}" for i in range(features)])


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def time_one(model, rows: list[dict]) -> float:
    start = clock()
    for x in rows:
        model.score_one(x)
        model.learn_one(x)
    return len(rows) / (clock() - start)


def time_many(model, frames: list[pd.DataFrame]) -> float:
    n = sum(len(f) for f in frames)
    start = clock()
    for frame in frames:
        model.score_many(frame)
        model.learn_many(frame)
    return n / (clock() - start)


def detector(batch: int, device: str = "cpu"):
    from streamal import ActivationDetector

    return ActivationDetector(hidden=(64, 64), batch_size=batch, seed=0, device=device)


def frames_of(frame: pd.DataFrame, batch: int) -> list[pd.DataFrame]:
    """``frame`` cut into frames of ``batch`` rows (the last one may be shorter)."""
    return [frame.iloc[i : i + batch] for i in range(0, len(frame), batch)]


def warm(model, frame: pd.DataFrame, many: bool, batch: int = 1) -> None:
    """Score and learn ``frame`` as the timed loop will: in frames of ``batch`` rows
    with ``many``, so every compiled variant it needs is loaded before the clock
    starts (numba loads one per argument type on first use, a one-off ~10-40 ms)."""
    if many and hasattr(model, "learn_many"):
        for part in frames_of(frame, batch):
            model.score_many(part)
            model.learn_many(part)
    else:
        for x in frame.to_dict("records"):
            model.score_one(x)
            model.learn_one(x)


def cpu_table(args) -> None:
    from river import anomaly

    stream = make_stream(args.records + args.warmup, args.features)
    head, body = stream.iloc[: args.warmup], stream.iloc[args.warmup :].reset_index(drop=True)
    rows = body.to_dict("records")
    results: list[tuple[str, float]] = []

    def run(name, model, many=False, batch=1):
        warm(model, head, many, batch)
        if many:
            speed = time_many(model, frames_of(body, batch))
        else:
            speed = time_one(model, rows)
        results.append((name, speed))
        print(f"  {name}: {speed:,.0f} records/s", flush=True)

    run("HalfSpaceTrees (river defaults)", anomaly.HalfSpaceTrees(seed=0))
    run("OneClassSVM (river, nu=0.2)", anomaly.OneClassSVM(nu=0.2))
    for batch in args.batches:
        run(f"ActivationDetector b={batch} one", detector(batch))
        run(f"ActivationDetector b={batch} many", detector(batch), many=True, batch=batch)
    hst = results[0][1]
    print(
        f"\n{len(rows)} records x {args.features} features, torch threads = "
        f"{torch.get_num_threads()}, score then learn per record, {args.clock} clock\n"
    )
    print("| model | records/s | ratio to HST | target |")
    print("|---|---:|---:|---|")
    for name, speed in results:
        target = ""
        if name.startswith("ActivationDetector"):
            batch, path = int(name.split("b=")[1].split()[0]), name.split()[-1]
            need = TARGETS.get((batch, path))
            if need is not None:
                target = f"≥ {need:g}× : {'met' if speed / hst >= need else 'MISSED'}"
        print(f"| {name} | {speed:,.0f} | {speed / hst:.2f}× | {target} |")
    if args.profile:
        profile(body, 32, many=False)
        profile(body, 1, many=True)


def profile(body: pd.DataFrame, batch: int, many: bool, top: int = 25) -> None:
    """cProfile of the timed loop on 2000 records after 200: the one-record path, or
    with ``many`` frames of ``batch`` rows."""
    model = detector(batch)
    warm(model, body.iloc[:200], many, batch)
    rest = body.iloc[200:2200]
    prof = cProfile.Profile()
    if many:
        frames = frames_of(rest, batch)
        prof.enable()
        time_many(model, frames)
    else:
        rows = rest.to_dict("records")
        prof.enable()
        time_one(model, rows)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(top)
    path = "frames" if many else "one-record path"
    print(f"\ncProfile, {path}, batch {batch}, 2000 records (sorted by own time):")
    print(text.getvalue())
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats("streamal", 30)
    print("cumulative, streamal functions:")
    print(text.getvalue())


def cuda_table(args) -> None:
    """Training samples/s of the paper-size network and where the time goes."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    from streamal.inference import candidate_activations
    from streamal.network import ActivationNetwork

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    print(f"device: {name}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print("| network | batch | step | samples/s | ms/step | CUDA kernel ms/step | kernels/step |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for layers in ((1064, 1064),):
        for batch in args.paper_batches:
            net = ActivationNetwork.dense(1064, list(layers), lr=0.1, decay=0.995, seed=0).to(dev)
            x = torch.nn.functional.normalize(torch.rand(batch, 1064, device=dev), dim=1)
            cands = torch.eye(10, device=dev).repeat_interleave(28, dim=1) / 28**0.5

            def plain(net=net, x=x):
                net.learn(x)

            def feedback(net=net, x=x, cands=cands, batch=batch):
                act = candidate_activations(net, x, slice(784, 1064), cands)
                wrong = act.argmax(dim=1)
                neg = x.clone()
                neg[:, 784:] = cands[wrong]
                rate = torch.cat(
                    [torch.ones(batch, device=dev), -0.9 * torch.ones(batch, device=dev)]
                )
                net.learn(torch.cat([x, neg]), rate=rate)

            for name, step in (("learn", plain), ("feedback", feedback)):
                for _ in range(10):
                    step()
                sync()
                reps = args.reps if batch <= 1000 else max(args.reps // 5, 1)
                t0 = time.perf_counter()
                for _ in range(reps):
                    step()
                sync()
                wall = (time.perf_counter() - t0) / reps
                kernel_ms, events = float("nan"), []
                if cuda:
                    with tprofile(activities=[ProfilerActivity.CUDA]) as prof:
                        for _ in range(20):
                            step()
                        sync()
                    events = [e for e in prof.events() if e.device_type.name == "CUDA"]
                    kernel_ms = sum(e.device_time for e in events) / 1000 / 20
                print(
                    f"| {'-'.join(map(str, (1064, *layers)))} | {batch} | {name} | "
                    f"{batch / wall:,.0f} | {wall * 1e3:.3f} | {kernel_ms:.3f} | "
                    f"{len(events) / 20:.0f} |",
                    flush=True,
                )
    print(
        "\nkernel ms well below ms/step means the step waits on the host (Python and "
        "kernel launches), not on the GPU's arithmetic."
    )
    # the estimator on the GPU: the host-side pipeline for a 20-feature stream
    stream = make_stream(args.records + args.warmup, args.features)
    head, body = stream.iloc[: args.warmup], stream.iloc[args.warmup :].reset_index(drop=True)
    for batch in (32, 256):
        model = detector(batch, device=args.device)
        warm(model, head, many=True, batch=batch)
        print(
            f"ActivationDetector hidden=(64, 64) on {args.device}, b={batch} many: "
            f"{time_many(model, frames_of(body, batch)):,.0f} records/s"
        )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--records", type=int, default=4000)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--features", type=int, default=20)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32, 256])
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: leave)")
    p.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        help="cpu: the process's CPU time (steady on a shared machine; the default on "
        "the CPU), wall: elapsed time (the default with --device cuda)",
    )
    p.add_argument("--profile", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--paper-net",
        action="store_true",
        help="time the paper-size network (implied by --device cuda)",
    )
    p.add_argument("--paper-batches", type=int, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--reps", type=int, default=200)
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda") or args.paper_net
    args.clock = args.clock or ("wall" if gpu else "cpu")
    global clock
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    if gpu:
        cuda_table(args)
    else:
        cpu_table(args)


if __name__ == "__main__":
    main()
