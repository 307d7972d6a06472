"""The paper's MNIST experiments (§IV), run on the engine's tensor API.

Input: the 784 pixels scaled to unit norm next to a 10×28 label block (row
``k`` all ones for class ``k``) scaled to unit norm; layers of 1064 units,
``std_abs`` between them, micro-batches of 100, all layers learning together.
A record is classified by :func:`streamal.inference.candidate_activations`:
the image goes in with an empty label block and each class's block is added
through the label rows of the bottom layer.

Runs (``--run``, one or more; each writes ``<out>/<run>*.json``):

``l1`` / ``l2``  1 or 2 layers without feedback, one network per ``--lrs``
    value; 5 000 training images held out for validation (early stopping and
    the choice of learning rate). ``l2`` also evaluates robustness (masked
    bottom rows, a random line) and saves generated / completed digits.
``fb``       2 layers with feedback (λ = 0.9, γ from ``truncated_linear_gain``
    under the reading given by ``--gain``), plus robustness.
``small``    600 training samples and 1/2/5/10-shot (no feedback).
``online``   single-pass prequential accuracy over the 60 000 training records
    (file order, batches of 100) for the engine and for a backprop MLP.
``stream``   the default ``ActivationClassifier`` (river API) over the same stream,
    with every label and with 10 %, next to an online MLP on the same labels.
``bp``       a backprop reference (1064-1064-10, batch norm, ReLU, Adam) on
    all data and on 600 samples, with the same robustness tests.

``--report`` reads the JSON files of ``--out`` and prints the results table.

Usage (from the repository root)::

    python bench/paper_mnist.py --quick --run l1 l2 fb small online bp   # CPU smoke
    python bench/paper_mnist.py [DATA] --device cuda --run l2 --lrs 0.1
    python bench/paper_mnist.py --report --out bench/out/paper_mnist
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from streamal import ActivationClassifier
from streamal.inference import candidate_activations, complete, generate
from streamal.network import ActivationNetwork
from streamal.rule import truncated_linear_gain

DEFAULT_DATA = Path("..") / "shared" / "data" / "mnist" / "mnist.npz"
DEFAULT_FEWSHOT = Path("..") / "shared" / "data" / "mnist" / "selected_fewshot_images.npy"
PIXELS, ROW, CLASSES = 784, 28, 10
WIDTH = PIXELS + CLASSES * ROW  # 1064
LABELS = slice(PIXELS, WIDTH)
PAPER = {  # test error in % (few-shot: accuracy in %)
    "l1": 13.6,
    "l2": 3.30,
    "fb": 1.36,
    "n600": 9.74,
    "shot1": 48.4,
    "shot10": 85.0,
    "bp600": 16.17,
}


# ---- data ------------------------------------------------------------------
def unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-8)


def label_blocks(device) -> torch.Tensor:
    """``(10, 280)``: class ``k`` is row ``k`` of a 10×28 block of ones, scaled to unit norm."""
    return torch.eye(CLASSES, device=device).repeat_interleave(ROW, dim=1) / math.sqrt(ROW)


def records(pixels: torch.Tensor, labels: torch.Tensor | None, device) -> torch.Tensor:
    """Network inputs: unit-norm image, then the label block (zeros when ``labels`` is None)."""
    image = unit_rows(pixels)
    if labels is None:
        return torch.cat([image, image.new_zeros(len(image), CLASSES * ROW)], dim=1)
    return torch.cat([image, label_blocks(device)[labels]], dim=1)


class Data:
    def __init__(self, path: Path, fewshot: Path, device, quick: bool):
        raw = np.load(path)
        f = lambda a: torch.as_tensor(a.reshape(len(a), -1) / 255.0, dtype=torch.float32)  # noqa: E731
        self.x_train, self.y_train = f(raw["x_train"]), torch.as_tensor(raw["y_train"]).long()
        self.x_test, self.y_test = f(raw["x_test"]), torch.as_tensor(raw["y_test"]).long()
        self.fewshot = (
            torch.as_tensor(np.load(fewshot), dtype=torch.float32) if fewshot.exists() else None
        )
        if quick:  # small test sets keep the CPU smoke run short
            self.x_test, self.y_test = self.x_test[:1000], self.y_test[:1000]
        move = lambda t: t.to(device)  # noqa: E731
        self.x_train, self.y_train = move(self.x_train), move(self.y_train)
        self.x_test, self.y_test = move(self.x_test), move(self.y_test)
        if self.fewshot is not None:
            self.fewshot = move(self.fewshot)
        n_val = 500 if quick else 5000
        # like the authors' input pipeline: the first images are the validation split
        self.val = (self.x_train[:n_val], self.y_train[:n_val])
        self.fit = (self.x_train[5000:], self.y_train[5000:])


# ---- the engine ------------------------------------------------------------
def new_network(layers: int, lr: float, seed: int, device) -> ActivationNetwork:
    net = ActivationNetwork.dense(
        WIDTH, [WIDTH] * layers, activation="std_abs", lr=lr, decay=0.995, seed=seed
    )
    return net.to(device)


@torch.no_grad()
def class_activations(
    net: ActivationNetwork, pixels: torch.Tensor, chunk: int = 2000
) -> torch.Tensor:
    cands = label_blocks(pixels.device)
    out = [
        candidate_activations(net, records(p, None, p.device), LABELS, cands)
        for p in pixels.split(chunk)
    ]
    return torch.cat(out)


def predictor(net: ActivationNetwork):
    """The class of each image: the label block with the largest output activation."""
    return lambda pixels: class_activations(net, pixels).argmax(dim=1)


def error(net: ActivationNetwork, pixels: torch.Tensor, labels: torch.Tensor) -> float:
    """Classification error in %."""
    pred = class_activations(net, pixels).argmax(dim=1)
    return 100.0 * float((pred != labels).float().mean())


class Feedback:
    """Learn the true label, unlearn the strongest wrong one: Δ = γ(Δ⁺ − λΔ⁻) (eq. 13–14).

    ``gain="lead"``: γ = truncated_linear_gain(g) = clip(1 − 5g, 0, 1) (non-increasing,
    the docstring's reading); ``"printed"``: γ = clip(5g + 1, 0, 1) as printed in §IV-B.
    ``g`` is the gap of raw activations (the input has norm √2). With ``normalise`` γ is
    divided by its running mean (decay 0.01) so the average rate stays near 1 as the
    error falls, as the authors' released code does.
    """

    def __init__(self, gain: str, unlearn: float = 0.9, normalise: bool = True):
        self.gain, self.unlearn, self.normalise = gain, unlearn, normalise
        self.level = 1.0

    def step(self, net: ActivationNetwork, pixels: torch.Tensor, labels: torch.Tensor) -> float:
        act = class_activations(net, pixels)
        right = act.gather(1, labels[:, None]).squeeze(1)
        best_wrong, wrong = act.scatter(1, labels[:, None], float("-inf")).max(dim=1)
        gap = right - best_wrong
        gamma = truncated_linear_gain(gap if self.gain == "lead" else -gap)
        if self.normalise:
            self.level = 0.99 * self.level + 0.01 * float(gamma.mean())
            gamma = gamma / max(self.level, 0.01)
        x = torch.cat(
            [records(pixels, labels, pixels.device), records(pixels, wrong, pixels.device)]
        )
        # the rule averages over the 2B rows: ×2 gives the paper's per-sample rates
        rate = 2.0 * torch.cat([gamma, -self.unlearn * gamma])
        net.learn(x, rate=rate)
        return float((gap <= 0).float().mean())


class Deadline:
    """Cuts a schedule short so that a run ends in time (the GPU run has a hard limit)."""

    def __init__(self, seconds: float | None):
        self.end = None if seconds is None else time.monotonic() + seconds

    def share(self, runs_left: int, reserve: float = 0.0) -> float | None:
        if self.end is None:
            return None
        return max(1.0, (self.end - time.monotonic() - reserve) / max(runs_left, 1))


def train(
    net,
    pixels,
    labels,
    steps,
    *,
    batch=100,
    feedback=None,
    evaluate=None,
    eval_every=None,
    budget=None,
    seed=0,
    log="",
):
    """The schedule: ``steps`` micro-batches, learning rate ×0.1 for the last 10 %.

    With a ``budget`` (seconds) the number of steps shrinks to what fits, measured as
    training goes. ``evaluate(step)`` is called every ``eval_every`` steps and at the end.
    Returns the number of steps run.
    """
    gen = torch.Generator(device=pixels.device).manual_seed(seed)
    n, batch = len(pixels), min(batch, len(pixels))
    base_lr, start, step, order = net.lr, time.monotonic(), 0, None
    eval_every = eval_every or max(steps // 20, 1)
    position, target, dropped = n, steps, False
    mark = (start, 0)  # time and step of the last pace estimate
    while step < steps:
        if budget is not None and step and step % 200 == 0 and not dropped:
            # re-estimated from the recent pace, up to the planned schedule, until the drop
            now = time.monotonic()
            recent = (now - mark[0]) / (step - mark[1])
            mark = (now, step)
            steps = max(step + 1, min(target, step + int((budget - (now - start)) / recent)))
        dropped = dropped or step >= int(0.9 * steps)
        net.lr = base_lr * (0.1 if dropped else 1.0)
        if position + batch > n:
            order, position = torch.randperm(n, generator=gen, device=pixels.device), 0
        idx = order[position : position + batch]
        position += batch
        if feedback is None:
            net.learn(records(pixels[idx], labels[idx], pixels.device))
        else:
            feedback.step(net, pixels[idx], labels[idx])
        step += 1
        if evaluate is not None and (step % eval_every == 0 or step == steps):
            evaluate(step)
    net.lr = base_lr
    if log:
        print(f"{log}: {step} steps in {time.monotonic() - start:.1f}s", flush=True)
    return step


def train_with_validation(data, layers, lr, steps, args, budget, feedback=None, tag=""):
    """Train on 55 000 images; test error at the best validation error and at the end."""
    net = new_network(layers, lr, args.seed, args.device)
    best = {"val": float("inf")}
    curve = []

    def evaluate(step):
        val, test = error(net, *data.val), error(net, data.x_test, data.y_test)
        curve.append((step, val, test))
        print(f"  {tag} step {step}: val {val:.2f}% test {test:.2f}%", flush=True)
        if val < best["val"]:
            best.update(val=val, test=test, step=step)

    ran = train(
        net,
        *data.fit,
        steps,
        feedback=feedback,
        evaluate=evaluate,
        budget=budget,
        seed=args.seed,
        log=tag,
    )
    last = curve[-1]
    result = {
        "lr": lr,
        "layers": layers,
        "steps": ran,
        "epochs": ran * 100 / len(data.fit[0]),
        "val_best": best["val"],
        "test_at_best_val": best["test"],
        "best_step": best["step"],
        "val_final": last[1],
        "test_final": last[2],
        "curve": curve,
    }
    return net, result


# ---- robustness, generation, completion ------------------------------------
def mask_bottom(pixels: torch.Tensor, rows: int) -> torch.Tensor:
    out = pixels.clone().reshape(-1, ROW, ROW)
    if rows:
        out[:, ROW - rows :, :] = 0.0
    return out.reshape(-1, PIXELS)


def random_lines(pixels: torch.Tensor, width: int, seed: int = 0) -> torch.Tensor:
    """One random straight line of ``width`` pixels across each image, then binarised at 0.5.

    The line runs from row ``a`` at the left edge to row ``b`` at the right edge (or the
    same with rows and columns swapped, at random), as in the paper's Fig. 10(c).
    """
    g = torch.Generator().manual_seed(seed)
    n = len(pixels)
    a, b = torch.randint(0, ROW, (n, 1), generator=g), torch.randint(0, ROW, (n, 1), generator=g)
    vertical = torch.randint(0, 2, (n,), generator=g).bool()
    t = torch.arange(ROW).float()[None, :] / (ROW - 1)
    centre = a + t * (b - a)  # (n, 28): line position along each column
    pos = torch.arange(ROW).float()[None, :, None]  # (1, 28 rows, 1)
    lo = centre[:, None, :] - (width - 1) / 2.0
    line = ((pos >= torch.floor(lo + 0.5) - 0.0) & (pos < torch.floor(lo + 0.5) + width)).float()
    line = torch.where(vertical[:, None, None], line.transpose(1, 2), line)
    out = pixels.reshape(-1, ROW, ROW).cpu() + line
    return (out > 0.5).float().reshape(-1, PIXELS).to(pixels.device)


def robustness(predict, data) -> dict:
    """Error (%) on test images with the bottom ``a`` rows zeroed and with a random line."""
    x, y = data.x_test, data.y_test
    err = lambda p: 100.0 * float((predict(p) != y).float().mean())  # noqa: E731
    masked = {str(a): err(mask_bottom(x, a)) for a in (0, 4, 7, 10, 14, 17)}
    lines = {str(w): err(random_lines(x, w)) for w in (1, 2, 3)}
    return {"masked_rows": masked, "line_width": lines}


def save_grid(images: torch.Tensor, rows: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    imgs = images.detach().float().cpu().reshape(-1, ROW, ROW)
    imgs = imgs / imgs.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)
    cols = math.ceil(len(imgs) / rows)
    grid = torch.zeros(rows * (ROW + 2), cols * (ROW + 2))
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        grid[
            r * (ROW + 2) + 1 : r * (ROW + 2) + 1 + ROW, c * (ROW + 2) + 1 : c * (ROW + 2) + 1 + ROW
        ] = im
    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, grid.numpy(), cmap="gray", vmin=0.0, vmax=1.0)


def pictures(net, data, args, tag) -> dict:
    """Generated digits (eq. 15–16) and completed bottom halves (eq. 17) as PNG."""
    device, per_class = args.device, 4 if args.quick else 8
    steps = 50 if args.quick else 300
    labels = torch.arange(CLASSES, device=device).repeat_interleave(per_class)
    x = torch.cat(
        [torch.zeros(len(labels), PIXELS, device=device), label_blocks(device)[labels]], 1
    )
    free = torch.zeros_like(x, dtype=torch.bool)
    free[:, :PIXELS] = True
    out = Path(args.pictures)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    for noise, name in ((0.0, "plain"), (0.03, "noise")):
        g = generate(net, x, free, output_noise=noise, steps=steps, generator=gen)
        save_grid(g[:, :PIXELS], CLASSES, out / f"generated_{name}_{tag}.png")
    pixels, truth = data.x_test[:20], data.y_test[:20]
    top = mask_bottom(pixels, 14)
    pred = class_activations(net, top).argmax(dim=1)
    x = records(top, pred, device)
    free = torch.zeros_like(x, dtype=torch.bool)
    free[:, 14 * ROW : PIXELS] = True
    filled = complete(net, x, free, steps=steps, generator=gen)
    save_grid(torch.cat([pixels, top, filled[:, :PIXELS]]), 3, out / f"completed_{tag}.png")
    return {
        "completion_top_half_correct": int((pred == truth).sum()),
        "of": len(truth),
        "files": [
            f"generated_plain_{tag}.png",
            f"generated_noise_{tag}.png",
            f"completed_{tag}.png",
        ],
    }


# ---- backprop reference ----------------------------------------------------
def mlp(width: int, norm: bool, device) -> nn.Module:
    bn = (lambda: nn.BatchNorm1d(width)) if norm else (lambda: nn.Identity())
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(PIXELS, width),
        bn(),
        nn.ReLU(),
        nn.Linear(width, width),
        bn(),
        nn.ReLU(),
        nn.Linear(width, CLASSES),
    ).to(device)


def bp_train(model, pixels, labels, steps, lr=1e-3, seed=0):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device=pixels.device).manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(
            0, len(pixels), (min(100, len(pixels)),), generator=gen, device=pixels.device
        )
        loss = nn.functional.cross_entropy(model(pixels[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


# ---- runs --------------------------------------------------------------------
def run_no_feedback(data, args, layers) -> dict:
    deadline, results = Deadline(args.deadline), {}
    for i, lr in enumerate(args.lrs):
        budget = deadline.share(len(args.lrs) - i, reserve=40.0 if layers == 2 else 5.0)
        tag = f"l{layers}_lr{lr:g}"
        net, res = train_with_validation(data, layers, lr, args.steps, args, budget, tag=tag)
        if layers == 2:
            res["robustness"] = robustness(predictor(net), data)
            res["pictures"] = pictures(net, data, args, tag)
        results[f"{lr:g}"] = res
    return results


def run_feedback(data, args) -> dict:
    results, deadline = {}, Deadline(args.deadline)
    for i, lr in enumerate(args.lrs):
        budget = deadline.share(len(args.lrs) - i, reserve=20.0)
        tag = f"fb_{args.gain}_lr{lr:g}"
        fb = Feedback(args.gain, normalise=not args.no_gain_norm)
        net, res = train_with_validation(
            data, 2, lr, args.steps, args, budget, feedback=fb, tag=tag
        )
        res["robustness"] = robustness(predictor(net), data)
        res.update(gain=args.gain, gain_normalised=not args.no_gain_norm)
        results[f"{lr:g}"] = res
    return results


def run_small(data, args) -> dict:
    """600 samples and n-shot sets, one network per set, ``--lrs`` value and ``--small-seeds``.

    The validation error (the 5 000 held-out training images, none of them in these sets)
    is kept, so that the report can choose the learning rate without the test set.
    """
    deadline, out = Deadline(args.deadline), {}
    sets = {"n600": (data.x_train[-600:], data.y_train[-600:])}  # the authors' 600: the last ones
    if data.fewshot is not None:
        few_y = torch.arange(CLASSES, device=args.device).repeat_interleave(10)
        for n in (1, 2, 5, 10):
            keep = (torch.arange(100, device=args.device) % 10) < n  # first n columns per digit
            sets[f"shot{n}"] = (data.fewshot[keep], few_y[keep])
    sets = {name: sets[name] for name in args.small_sets}
    runs = [(name, lr, seed) for name in sets for lr in args.lrs for seed in args.small_seeds]
    for i, (name, lr, seed) in enumerate(runs):
        px, y = sets[name]
        net = new_network(2, lr, seed, args.device)
        curve: list = []

        def evaluate(step, net=net, curve=curve):
            curve.append((step, error(net, data.x_test, data.y_test)))

        steps = train(
            net,
            px,
            y,
            args.small_steps,
            budget=deadline.share(len(runs) - i, 5.0),
            seed=seed,
            log=f"{name} lr {lr:g} seed {seed}",
            eval_every=max(args.small_steps // 5, 1),
            evaluate=evaluate,
        )
        val = error(net, *data.val)
        out[f"{name}_lr{lr:g}_seed{seed}"] = {
            "set": name,
            "lr": lr,
            "seed": seed,
            "train_size": len(px),
            "steps": steps,
            "val_error": val,
            "test_error": curve[-1][1],
            "curve": curve,
        }
        print(
            f"  {name} lr {lr:g} seed {seed}: val {val:.2f}% test {curve[-1][1]:.2f}%", flush=True
        )
    return out


def run_online(data, args) -> dict:
    """Prequential: each batch of 100 is predicted, then learnt, in file order, one pass."""
    n = 6000 if args.quick else len(data.x_train)
    px, ys = data.x_train[:n], data.y_train[:n]
    out = {}

    def stream(predict, learn):
        correct, t0 = 0, time.monotonic()
        for s in range(0, n, 100):
            p, y = px[s : s + 100], ys[s : s + 100]
            correct += int((predict(p) == y).sum())
            learn(p, y)
        return {"accuracy": 100.0 * correct / n, "records": n, "seconds": time.monotonic() - t0}

    for lr in args.online_lrs:
        for fbk in (False, True):
            net, fb = new_network(2, lr, args.seed, args.device), Feedback("lead") if fbk else None

            def learn(p, y, net=net, fb=fb):
                if fb is not None:
                    fb.step(net, p, y)
                else:
                    net.learn(records(p, y, p.device))

            key = f"al_lr{lr:g}" + ("_fb" if fbk else "")
            out[key] = stream(predictor(net), learn)
            print(f"  online {key}: {out[key]['accuracy']:.2f}%", flush=True)
    for name, opt_fn in (
        ("adam1e-3", lambda m: torch.optim.Adam(m.parameters(), 1e-3)),
        ("sgd0.1m0.9", lambda m: torch.optim.SGD(m.parameters(), 0.1, momentum=0.9)),
    ):
        model = mlp(WIDTH, False, args.device)
        opt = opt_fn(model)

        def predict(p, model=model):
            with torch.no_grad():
                return model(p).argmax(dim=1)

        def learn(p, y, model=model, opt=opt):
            loss = nn.functional.cross_entropy(model(p), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        out[f"mlp_{name}"] = stream(predict, learn)
        print(f"  online mlp_{name}: {out[f'mlp_{name}']['accuracy']:.2f}%", flush=True)
    return out


def run_stream(data, args) -> dict:
    """The default ``ActivationClassifier`` on the MNIST stream, through its river API.

    Each batch of 100 records is predicted with ``predict_many`` and then learnt with
    ``learn_many``, in file order, one pass, with every label or with 10 % of them (a
    fixed random mask; the hidden labels are learnt as unlabelled records). An online
    MLP (Adam 1e-3, the ``online`` run's) learns the same labelled records in the same
    order. The classifier runs on the CPU: its defaults are sized for it.
    """
    n = 6000 if args.quick else len(data.x_train)
    px = data.x_train[:n].cpu().numpy().astype(np.float64)
    ys = data.y_train[:n].cpu().numpy()
    columns = [f"p{i}" for i in range(PIXELS)]
    out = {}
    for fraction in (1.0, 0.1):
        shown = np.random.default_rng(args.seed).random(n) < fraction
        model = ActivationClassifier(seed=args.seed)
        mlp_model = mlp(WIDTH, False, args.device)
        opt = torch.optim.Adam(mlp_model.parameters(), 1e-3)
        right = {"classifier": 0, "mlp": 0}
        cpu_start, start = time.process_time(), time.monotonic()
        for s in range(0, n, 100):
            frame = pd.DataFrame(px[s : s + 100], columns=columns)
            truth = ys[s : s + 100]
            if s:  # nothing can be predicted before the first labels
                predicted = model.predict_many(frame).to_numpy()
                right["classifier"] += int((predicted == truth).sum())
            labels = pd.Series(
                [int(t) if k else None for t, k in zip(truth, shown[s : s + 100])], dtype=object
            )
            model.learn_many(frame, labels)
        cpu = time.process_time() - cpu_start
        pixels, labels_t = data.x_train[:n], data.y_train[:n]
        for s in range(0, n, 100):
            p, y = pixels[s : s + 100], labels_t[s : s + 100]
            with torch.no_grad():
                right["mlp"] += int((mlp_model(p).argmax(dim=1) == y).sum())
            keep = torch.as_tensor(shown[s : s + 100], device=p.device)
            if bool(keep.any()):
                loss = nn.functional.cross_entropy(mlp_model(p[keep]), y[keep])
                opt.zero_grad()
                loss.backward()
                opt.step()
        key = f"labels{fraction:g}"
        out[key] = {
            "records": n,
            "labelled": int(shown.sum()),
            "classifier_accuracy": 100.0 * right["classifier"] / n,
            "mlp_accuracy": 100.0 * right["mlp"] / n,
            "classifier_cpu_seconds": cpu,
            "seconds": time.monotonic() - start,
        }
        print(
            f"  stream {key}: classifier {out[key]['classifier_accuracy']:.2f}% "
            f"mlp {out[key]['mlp_accuracy']:.2f}% ({cpu:.0f} CPU s)",
            flush=True,
        )
    return out


def run_bp(data, args) -> dict:
    out = {}
    for name, (px, y), steps in (
        ("full", data.fit, args.bp_steps),
        ("n600", (data.x_train[-600:], data.y_train[-600:]), args.bp_steps),
    ):
        model = mlp(WIDTH, True, args.device)
        bp_train(model, px, y, steps, seed=args.seed)

        def predict(p, model=model):
            with torch.no_grad():
                return torch.cat([model(c).argmax(dim=1) for c in p.split(2000)])

        err = 100.0 * float((predict(data.x_test) != data.y_test).float().mean())
        out[name] = {"steps": steps, "test_error": err, "robustness": robustness(predict, data)}
        print(f"  bp {name}: {err:.2f}%", flush=True)
    return out


# ---- report ------------------------------------------------------------------
def load_results(out: Path) -> dict:
    found = {}
    for f in sorted(out.glob("*.json")):
        found[f.stem] = json.loads(f.read_text())
    return found


def report(out: Path) -> str:
    r = load_results(out)
    lines = ["| experiment | ours | paper | notes |", "|---|---|---|---|"]

    def pick(prefix):  # best validation over all lr (and files) of a run
        cands = [
            (v["val_best"], k, lr, v)
            for k, d in r.items()
            if k.startswith(prefix)
            for lr, v in d["results"].items()
        ]
        return min(cands, key=lambda c: c[0]) if cands else None

    for key, label, col in (
        ("l1", "1 layer, no feedback (early stop)", "test_at_best_val"),
        ("l2", "2 layers, no feedback", "test_final"),
        ("fb_lead", "2 layers, feedback, γ=clip(1−5g) (lead)", "test_final"),
        ("fb_printed", "2 layers, feedback, γ=clip(5g+1) (printed)", "test_final"),
    ):
        best = pick(key)
        if best:
            v = best[3]
            tried = sorted(
                {lr for k, d in r.items() if k.startswith(key) for lr in d["results"]}, key=float
            )
            note = (
                f"lr {best[2]} (chosen on val among {', '.join(tried)}), {v['steps']} steps "
                f"= {v['epochs']:.1f} epochs; val {v['val_best']:.2f}%; best-val test "
                f"{v['test_at_best_val']:.2f}%, final {v['test_final']:.2f}%"
            )
            ref = PAPER["fb" if key.startswith("fb") else key]
            lines.append(f"| {label} | {v[col]:.2f} % err | {ref} % | {note} |")
    small = [v for k, d in r.items() if k.startswith("small") for v in d["results"].values()]
    for name in sorted({v.get("set", "n600") for v in small}, key=lambda n: (n != "n600", n)):
        runs = [v for v in small if v.get("set", "n600") == name]
        by_lr: dict = {}
        for v in runs:
            by_lr.setdefault(v["lr"], []).append(v)
        # the learning rate with the lowest mean validation error (older files have none)
        lr, chosen = min(
            by_lr.items(), key=lambda kv: np.mean([v.get("val_error", 0.0) for v in kv[1]])
        )
        test = [v["test_error"] for v in chosen]
        spread = f" ± {np.std(test):.2f}" if len(test) > 1 else ""
        seeds = f", mean of {len(test)} seeds ({', '.join(f'{t:.2f}' for t in test)})"
        note = (
            f"{chosen[0]['steps']} steps, lr {lr:g}"
            + (
                f" (chosen on val among {', '.join(f'{x:g}' for x in sorted(by_lr))})"
                if len(by_lr) > 1
                else ""
            )
            + (seeds if len(test) > 1 else "")
        )
        if name == "n600":
            lines.append(
                f"| 600 samples, 2 layers | {np.mean(test):.2f}{spread} % err | 9.74 % | {note} |"
            )
        else:
            paper = {"shot1": "48.4 %", "shot10": "85.0 %"}.get(name, "fig. 9c")
            lines.append(
                f"| {name[4:]}-shot | {100 - np.mean(test):.2f}{spread} % acc | {paper} acc | "
                f"{note} |"
            )
    if "bp" in r:
        for name, v in r["bp"]["results"].items():
            paper = {"full": "~1.4 %", "n600": "16.17 % (3-layer)"}[name]
            lines.append(
                f"| backprop MLP 1064-1064-10 BN, {name} | {v['test_error']:.2f} % err | "
                f"{paper} | Adam 1e-3, {v['steps']} steps |"
            )
    if "online" in r:
        for name, v in r["online"]["results"].items():
            lines.append(
                f"| online prequential {name} | {v['accuracy']:.2f} % acc | — | "
                f"one pass, {v['records']} records, batch 100, {v['seconds']:.1f}s |"
            )
    if "stream" in r:
        for name, v in r["stream"]["results"].items():
            lines.append(
                f"| stream, default ActivationClassifier, {name} | "
                f"{v['classifier_accuracy']:.2f} % acc | — | one pass, {v['records']} records "
                f"({v['labelled']} labelled), predict_many + learn_many per 100; online MLP "
                f"(Adam 1e-3) on the same labels {v['mlp_accuracy']:.2f} %; "
                f"{v['classifier_cpu_seconds']:.0f} CPU s |"
            )
    rob = []
    for key, label in (
        ("l2", "AL 2 layers"),
        ("fb_lead", "AL feedback (lead γ)"),
        ("fb_printed", "AL feedback (printed γ)"),
    ):
        best = pick(key)
        if best and "robustness" in best[3]:
            rob.append((label, best[3]["robustness"]))
    if "bp" in r:
        rob.append(("BP full", r["bp"]["results"]["full"]["robustness"]))
    if rob:
        m = list(rob[0][1]["masked_rows"])
        w = list(rob[0][1]["line_width"])
        lines += [
            "",
            "Robustness, test error % (masked: bottom a of 28 rows zeroed; lines: one "
            "random line of width w, image binarised)",
            "",
            "| model | "
            + " | ".join(f"a={a}" for a in m)
            + " | "
            + " | ".join(f"line w={x}" for x in w)
            + " |",
            "|---" * (1 + len(m) + len(w)) + "|",
        ]
        for label, v in rob:
            lines.append(
                f"| {label} | "
                + " | ".join(f"{v['masked_rows'][a]:.2f}" for a in m)
                + " | "
                + " | ".join(f"{v['line_width'][x]:.2f}" for x in w)
                + " |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("data", nargs="?", default=str(DEFAULT_DATA))
    p.add_argument("--fewshot", default=str(DEFAULT_FEWSHOT))
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--run",
        nargs="+",
        default=[],
        choices=["l1", "l2", "fb", "small", "online", "stream", "bp"],
    )
    p.add_argument("--lrs", default="0.1", help="comma-separated learning rates")
    p.add_argument("--online-lrs", default="0.1,0.3,1.0")
    p.add_argument(
        "--steps", type=int, default=60000, help="full-data schedule (the authors': 60 000)"
    )
    p.add_argument("--small-steps", type=int, default=10000, help="600-sample / few-shot schedule")
    p.add_argument(
        "--small-sets", default="n600,shot1,shot2,shot5,shot10", help="sets of the small run"
    )
    p.add_argument("--small-seeds", default=None, help="comma-separated seeds (default --seed)")
    p.add_argument("--bp-steps", type=int, default=11000)
    p.add_argument("--gain", choices=["lead", "printed"], default="lead")
    p.add_argument("--no-gain-norm", action="store_true")
    p.add_argument("--deadline", type=float, default=None, help="seconds this process may take")
    p.add_argument("--quick", action="store_true", help="short CPU smoke run")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench/out/paper_mnist")
    p.add_argument("--pictures", default=None, help="PNG folder (default: --out)")
    p.add_argument("--report", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    args.pictures = args.pictures or str(out)
    if args.report:
        text = report(out)
        print(text)
        (out / "results.md").write_text(text + "\n")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    args.lrs = [float(v) for v in args.lrs.split(",")]
    args.online_lrs = [float(v) for v in args.online_lrs.split(",")]
    args.small_sets = args.small_sets.split(",")
    args.small_seeds = [int(v) for v in (args.small_seeds or str(args.seed)).split(",")]
    if args.quick:
        args.steps, args.small_steps, args.bp_steps = (
            min(args.steps, 150),
            min(args.small_steps, 60),
            100,
        )
    data = Data(Path(args.data), Path(args.fewshot), args.device, args.quick)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "device": str(torch.cuda.get_device_name(0)) if args.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "torch": torch.__version__,
    }
    for run in args.run:
        t0 = time.monotonic()
        if run in ("l1", "l2"):
            res = run_no_feedback(data, args, int(run[1]))
            name = f"{run}_" + "_".join(f"{lr:g}" for lr in args.lrs)
        elif run == "fb":
            res, name = run_feedback(data, args), f"fb_{args.gain}"
        elif run == "small":
            res = run_small(data, args)
            name = "small_" + "_".join(f"{lr:g}" for lr in args.lrs)
        else:
            res, name = (
                {"online": run_online, "stream": run_stream, "bp": run_bp}[run](data, args),
                run,
            )
        (out / f"{name}.json").write_text(
            json.dumps(
                {"meta": {**meta, "seconds": time.monotonic() - t0}, "results": res}, indent=1
            )
        )
        print(f"{run} done in {time.monotonic() - t0:.1f}s", flush=True)


if __name__ == "__main__":
    main()
