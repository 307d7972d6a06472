"""The semi-supervised classifier: the label is one more block of the input."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from river import base

from streamal.encoding import validate_features
from streamal.estimators.base import ActivationEstimator, frame_values
from streamal.estimators.class_prior import ClassPrior
from streamal.estimators.feature_range import RangeMoments
from streamal.inference import candidate_activations
from streamal.network import ActivationNetwork
from streamal.rule import stable_rate_factor, truncated_linear_gain

MAX_LABEL_LENGTH = 256

SCALINGS = ("range", "std")
"""The ``scaling`` values: a quarter of the running range, or the running standard deviation."""

Pseudo = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""Self-training rows of a micro-batch: row indices, predicted classes, rates."""


def validate_label(y: Any) -> Any:
    """``None`` for a missing label (``None`` or NaN), else a ``str``, ``int`` or ``bool``.

    Examples
    --------
    >>> validate_label(float("nan")) is None
    True
    >>> validate_label(3.0)
    Traceback (most recent call last):
    ...
    ValueError: label must be a str, int or bool (or None when absent), got 3.0
    """
    if y is None or (isinstance(y, float) and math.isnan(y)):
        return None
    if isinstance(y, (bool, np.bool_)):
        return bool(y)
    if isinstance(y, numbers.Integral):
        return int(y)
    if isinstance(y, str):
        if len(y) > MAX_LABEL_LENGTH:
            raise ValueError(f"label is {len(y)} characters long; the limit is {MAX_LABEL_LENGTH}")
        return str(y)
    raise ValueError(f"label must be a str, int or bool (or None when absent), got {y!r}")


class ActivationClassifier(ActivationEstimator, base.MiniBatchClassifier):
    """Online semi-supervised classifier by activation learning (paper §III).

    The label enters the network as its own input block: class ``k`` is a
    row of ``label_repeat`` equal units, the block scaled to norm
    ``label_weight``. Records without a label are learnt with the block masked
    (their features still shape the network); prediction evaluates every known
    class in one batched pass and picks the one with the highest output
    activation (optionally mixed with the nearest labelled record's vote: see
    ``nearest``). With ``feedback``, a labelled record also *unlearns* its
    strongest wrong class: ``Δ = γ(g)(Δ⁺ − λΔ⁻)`` (paper eq. 13–14), with ``g``
    the gap between the two normalised activations. Classes are discovered
    online; a new class late in the stream simply adds a block.

    A short stream gives the rule few steps, and a few labels give the label
    block fewer still, so the defaults learn each micro-batch harder than one
    plain step (measured in BENCHMARKS.md, "Semi-supervised classification"):

    * **rehearsal**: the last ``replay_size`` labelled records are kept, and
      ``replay`` of them, drawn at random (with replacement, from a generator
      seeded by ``seed``), are learnt again with every micro-batch. This was
      the largest gain with 10 % and 1 % of the labels;
    * the per-record rates of a micro-batch (``label_rate`` for labelled
      records, the feedback's signed rates) are scaled down when their mean
      magnitude exceeds 1, so that no micro-batch steps further than ``lr``
      allows, however many labelled or repeated records it holds; and further
      when ``lr`` times the largest eigenvalue of the batch's second moment
      exceeds 0.9, beyond which the rule's fixed point is unstable
      (:func:`~streamal.rule.stable_rate_factor`): a stream of one repeated
      record then converges instead of oscillating, while varied records,
      whose eigenvalue is far smaller, keep the full ``lr``;
    * every micro-batch is learnt ``passes`` times, ``warmup_passes`` times
      while fewer than ``warmup`` records have been learnt (the weights start
      small and must grow before they discriminate);
    * **range scaling**: each feature is centred by its running mean and
      divided by a quarter of its running range (``scaling="range"``), not by
      its standard deviation, then clipped to ``±clip`` before the record is
      scaled to unit length. Every feature then stays within about ±4, where
      the z-score of a pixel that is almost always 0 reaches 7 and more on the
      records where it is not, and had to be clipped hard
      (:mod:`~streamal.estimators.feature_range`);
    * two layers of 512 units: slower to start than one layer, but the
      second layer's nonlinearity gave the best accuracy once warm;
    * **imprinting**: when a class is registered, its label-block rows of the
      bottom layer are set to the bottom layer's response to the features of
      the record that brought it (scaled to norm ``imprint``), instead of
      small random weights, so the class is recognisable from its first label;
    * **prior correction**: the activations are shifted by
      ``temperature · (log(labelled frequency) − log(predicted frequency))``
      per class (:mod:`~streamal.estimators.class_prior`), so that a class
      learnt from more labels does not take more than its share of the
      predictions. Both frequencies change only when records are learnt;
    * **self-training**: once ``warmup`` records and ``self_train_after``
      labels per known class have been learnt, an unlabelled record is learnt
      a second time with the class the model predicts for it, at the rate
      ``self_train · (p₁ − p₂)``, the margin between its two most probable
      classes (computed before the micro-batch's steps). With fewer labels its
      own predictions are too often wrong to learn from;
    * **nearest labelled record** (opt-in, off by default): the probabilities
      are mixed, with weight ``nearest``, with a vote for the class of the
      rehearsal buffer's record closest to the query (cosine of the encoded
      features). This is an instance-based vote beside the paper's eq. 8, so it
      is off unless asked for; it helps most while the network is still young.

    The rehearsal buffer, the prior, the feature ranges and the count of labels
    learnt are part of the state (``save``/``load`` and pickle restore them
    exactly) and, like everything else, are updated only when
    a micro-batch is learnt, so ``learn_many`` stays identical to a loop of
    ``learn_one``.

    Parameters
    ----------
    hidden
        Units per layer (``None``: one layer sized from the first record). Keep
        each layer narrower than the one below: a layer as wide as its input
        converges to an isometry on a long stream (its activation becomes its
        input's norm for every record), and with it the predictions collapse
        (``(512, 512)`` fell to one class after 35 000 MNIST records, where
        ``(512, 256)`` stays at 93 %).
    activation, lr, decay, batch_size, bias, max_features, device, seed
        As for :class:`~streamal.ActivationDetector` (``decay`` also averages
        the prior's predicted class frequencies).
    label_weight
        Norm of the label block (the features block has norm 1).
    label_repeat
        Units per class in the label block (the paper tiles each class over
        a row of 28 units on MNIST).
    temperature
        Softmax temperature of ``predict_proba_one`` over normalised
        activations (paper eq. 8).
    feedback
        Learn labelled records (rehearsed ones included) with feedback:
        positive and negative sample. After a step that unlearnt (negative
        rates), weight rows longer than 1 are scaled back to 1, which keeps the
        weights finite (unlearning alone sent them to NaN); not in a model
        shared by ``SharedLearner``. Off by default: with the other defaults
        it gained nothing (BENCHMARKS.md).
    unlearn
        The unlearning factor ``λ``.
    gain_slope
        Slope of the truncated linear gain ``γ(g) = clip(1 − slope·g, 0, 1)``.
    label_rate
        Rate of labelled records (rehearsed ones included) relative to
        unlabelled ones, before the micro-batch's rates are capped. Values of
        2 and 4 measured the same as 1 once rates are capped.
    replay
        Labelled records rehearsed with each micro-batch (at most as many as
        the buffer holds; 0 turns rehearsal off).
    replay_size
        How many of the most recent labelled records the rehearsal buffer keeps.
    passes
        Learning steps per micro-batch.
    warmup, warmup_passes
        While fewer than ``warmup`` records have been learnt, each
        micro-batch takes ``warmup_passes`` steps instead of ``passes``.
    scaling
        How each feature is scaled after centring by its running mean:
        ``"range"``, by a quarter of its running range, or ``"std"``, by its
        running standard deviation (the detector's z-scores; ``clip=1.5``
        was best with them).
    clip
        Scaled feature values are clipped to ``±clip``.
    imprint
        Norm of a new class's label-block rows, set from the first record of
        the class (0: left at their small random start).
    prior
        Correct the activations for the class prior (see above); the predicted
        class frequencies are averaged with ``decay`` per learnt record.
    nearest
        Weight, between 0 and 1, of the nearest labelled record's vote in the
        probabilities (0, the default: the softmax of the activations alone,
        paper eq. 8). The vote needs the rehearsal
        buffer, so it is off when ``replay`` or ``replay_size`` is 0.
    self_train
        Rate factor of an unlabelled record learnt with its predicted class
        (see above; 0 turns self-training off).
    self_train_after
        Labels per known class to learn before self-training starts.

    Examples
    --------
    >>> from river import datasets, metrics
    >>> from streamal import ActivationClassifier
    >>> model = ActivationClassifier(seed=0)
    >>> metric = metrics.Accuracy()
    >>> for i, (x, y) in enumerate(datasets.ImageSegments().take(1000)):
    ...     y_pred = model.predict_one(x)
    ...     if y_pred is not None:
    ...         metric.update(y, y_pred)
    ...     model.learn_one(x, y if i % 10 == 0 else None)   # 10 % of the labels
    >>> metric.get() > 0.6
    True
    """

    def __init__(
        self,
        hidden: tuple[int, ...] | None = (512, 256),
        activation: str = "std_abs",
        lr: float = 1.0,
        decay: float = 0.99,
        batch_size: int = 4,
        bias: float = 0.35,
        max_features: int = 1024,
        device: str = "cpu",
        seed: int | None = None,
        label_weight: float = 1.0,
        label_repeat: int = 1,
        temperature: float = 0.05,
        feedback: bool = False,
        unlearn: float = 0.9,
        gain_slope: float = 5.0,
        label_rate: float = 1.0,
        replay: int = 32,
        replay_size: int = 256,
        passes: int = 2,
        warmup: int = 300,
        warmup_passes: int = 6,
        scaling: str = "range",
        clip: float = 3.0,
        imprint: float = 0.8,
        prior: bool = True,
        nearest: float = 0.0,
        self_train: float = 4.0,
        self_train_after: int = 5,
    ):
        self.hidden = hidden
        self.activation = activation
        self.lr = lr
        self.decay = decay
        self.batch_size = batch_size
        self.bias = bias
        self.max_features = max_features
        self.device = device
        self.seed = seed
        self.label_weight = label_weight
        self.label_repeat = label_repeat
        self.temperature = temperature
        self.feedback = feedback
        self.unlearn = unlearn
        self.gain_slope = gain_slope
        self.label_rate = label_rate
        self.replay = replay
        self.replay_size = replay_size
        self.passes = passes
        self.warmup = warmup
        self.warmup_passes = warmup_passes
        self.scaling = scaling
        self.clip = clip
        self.imprint = imprint
        self.prior = prior
        self.nearest = nearest
        self.self_train = self_train
        self.self_train_after = self_train_after

    @property
    def _multiclass(self) -> bool:
        return True

    @classmethod
    def _unit_test_params(cls):
        yield {
            "hidden": (8, 6),
            "batch_size": 4,
            "seed": 0,
            "label_repeat": 2,
            "replay": 4,
            "replay_size": 16,
            "warmup": 8,
            "warmup_passes": 2,
        }

    # ---- classes ------------------------------------------------------------
    @property
    def classes(self) -> list[Any]:
        """The classes seen so far, in order of first appearance."""
        return list(getattr(self, "_classes", []))

    def _ensure_state(self) -> None:
        if getattr(self, "_schema", None) is not None:
            return
        if self.passes < 1 or self.warmup_passes < 1:
            raise ValueError("passes and warmup_passes must be at least 1")
        if self.replay < 0 or self.replay_size < 0:
            raise ValueError("replay and replay_size must not be negative")
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        if not self.self_train >= 0 or self.self_train_after < 0:
            raise ValueError("self_train and self_train_after must not be negative")
        if not self.clip > 0:
            raise ValueError(f"clip must be positive, got {self.clip}")
        if not self.imprint >= 0:
            raise ValueError(f"imprint must not be negative, got {self.imprint}")
        if not 0 <= self.nearest <= 1:
            raise ValueError(f"nearest must be between 0 and 1, got {self.nearest}")
        self._prior = ClassPrior(self.decay) if self.prior else None
        self._classes: list[Any] = []
        self._replay_values: list[np.ndarray] = []  # raw, schema-aligned; NaN = missing
        self._replay_labels: list[Any] = []
        self._n_labelled = 0
        super()._ensure_state()
        if self.scaling == "range":
            self._moments = RangeMoments()
        # the rehearsal draws get their own generator, seeded from the labels one
        seed = int(torch.randint(2**62, (), generator=self._rngs["labels"]))
        self._rngs["replay"] = torch.Generator().manual_seed(seed)

    def _label_units(self) -> int:
        return len(self._classes) * self.label_repeat

    def _register_labels(self, labels: Sequence[Any]) -> None:
        assert self._network is not None
        for label in labels:
            if label is not None and label not in self._classes:
                self._classes.append(label)
                self._network.bottom.grow_inputs(self.label_repeat, self._rngs["labels"])
                if self._prior is not None:
                    self._prior.add_classes(1)

    def _register(self, columns: Sequence[str], chunk: np.ndarray, labels: Sequence[Any]) -> None:
        """As the base's, then imprint the classes this chunk brought."""
        known = len(self._classes)
        super()._register(columns, chunk, labels)
        if self.imprint and len(self._classes) > known:
            new = self._classes[known:]
            first = [list(labels).index(label) for label in new]
            records = [dict(zip(columns, chunk[r].tolist())) for r in first]
            self._imprint(range(known, len(self._classes)), self._query_values(records))

    @torch.no_grad()
    def _imprint(self, classes: range, values: np.ndarray) -> None:
        """Set the label rows of ``classes`` to the bottom layer's response to ``values``.

        Registration happens when a record is queued, before it is learnt, and in
        the same order in ``learn_one``, ``learn_many`` and a shared model's step
        (every worker registers every worker's labels), so all of them imprint alike.
        """
        assert self._network is not None
        x, _ = self._encode(values)
        weight = self._network.bottom.weight
        response = x @ weight[: x.shape[1]]
        norms = torch.linalg.vector_norm(response, dim=1, keepdim=True).clamp_min(1e-12)
        rows = response / norms * (self.imprint / math.sqrt(self.label_repeat))
        for k, row in zip(classes, rows):
            start = x.shape[1] + k * self.label_repeat
            weight[start : start + self.label_repeat] = row

    def _candidates(self, device: torch.device) -> torch.Tensor:
        """``(K, K·R)`` label blocks, one per class, each of norm ``label_weight``."""
        eye = torch.eye(len(self._classes), device=device)
        block = eye.repeat_interleave(self.label_repeat, dim=1)
        return block * (self.label_weight / math.sqrt(self.label_repeat))

    def _export_extra(self) -> dict[str, Any]:
        return {"classes": list(self._classes), "replay_labels": list(self._replay_labels),
                "n_labelled": self._n_labelled}

    def _import_extra(self, meta: Mapping[str, Any]) -> None:
        self._classes = list(meta["classes"])
        self._replay_labels = list(meta["replay_labels"])
        self._n_labelled = int(meta.get("n_labelled", len(self._replay_labels)))

    def _export_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, meta = super()._export_state()
        arrays["replay.values"] = self._padded(self._replay_values, len(self._schema))
        if isinstance(self._moments, RangeMoments):
            arrays["moments.low"] = self._moments.low.copy()
            arrays["moments.high"] = self._moments.high.copy()
        if self._prior is not None:
            arrays["prior.labelled"] = self._prior.labelled.copy()
            arrays["prior.predicted"] = self._prior.predicted.copy()
        return arrays, meta

    def _import_state(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        super()._import_state(arrays, meta)
        self._replay_values = list(np.array(arrays["replay.values"], dtype=float))
        if isinstance(self._moments, RangeMoments):  # a state saved without it: range unknown
            width = len(self._moments.count)
            self._moments.low = np.array(arrays.get("moments.low", np.full(width, np.nan)), float)
            self._moments.high = np.array(arrays.get("moments.high", np.full(width, np.nan)), float)
        if self._prior is not None and "prior.labelled" in arrays:
            self._prior.labelled = np.array(arrays["prior.labelled"], dtype=float)
            self._prior.predicted = np.array(arrays["prior.predicted"], dtype=float)
        elif self._prior is not None:  # a state saved without the prior: start it afresh
            self._prior.add_classes(len(self._classes))

    @staticmethod
    def _padded(rows: Sequence[np.ndarray], width: int) -> np.ndarray:
        """Rows as one ``(len(rows), width)`` array; features added since a row was kept: NaN."""
        out = np.full((len(rows), width), np.nan)
        for r, row in enumerate(rows):
            out[r, : len(row)] = row
        return out

    # ---- encoding -----------------------------------------------------------
    def _encode(self, values: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        """As the detector's, with each feature scaled as ``scaling`` says and clipped to
        ``±clip`` first (handed on as the values that standardise to those numbers)."""
        moments = self._moments
        if isinstance(moments, RangeMoments):
            scaled = (values - moments.mean) / moments.range_scale()
        else:
            scaled = moments.standardise(values)
        return super()._encode(moments.unstandardise(np.clip(scaled, -self.clip, self.clip)),
                               *args, **kwargs)

    # ---- learning -----------------------------------------------------------
    def learn_one(self, x: dict, y: Any = None) -> None:  # type: ignore[override]
        """Queue ``x`` (with its label ``y``, or ``None`` when it has none) for learning."""
        clean = validate_features(x)
        label = validate_label(y)
        self._ingest(list(clean), np.array([list(clean.values())]).reshape(1, -1), [label])

    def learn_many(self, X: pd.DataFrame, y: pd.Series | None = None) -> None:
        """Learn rows of ``X``; missing labels in ``y`` are NaN/None. Same as a learn_one loop."""
        values = frame_values(X)
        labels = [None] * len(values) if y is None else [validate_label(v) for v in y]
        if len(labels) != len(values):
            raise ValueError(f"X has {len(values)} rows but y has {len(labels)} labels")
        self._ingest([str(c) for c in X.columns], values, labels)

    def _learn_values(self, values: np.ndarray, labels: Sequence[Any]) -> None:
        """One micro-batch: add rehearsed labelled records, take the steps, remember labels."""
        self._n_labelled += sum(label is not None for label in labels)
        rows, row_labels = values, list(labels)
        kept = len(self._replay_labels)
        if self.replay and kept:
            draw = torch.randint(kept, (min(self.replay, kept),), generator=self._rngs["replay"])
            picked = draw.tolist()
            old = self._padded([self._replay_values[i] for i in picked], values.shape[1])
            rows = np.concatenate([values, old])
            row_labels += [self._replay_labels[i] for i in picked]
        x, mask = self._encode(rows)
        pseudo = self._pseudo_labels(x[: len(values)], labels)
        steps = self.warmup_passes if self._n_learnt < self.warmup else self.passes
        for _ in range(steps):
            self._learn_batch(x, mask, row_labels, pseudo)
        if self._prior is not None and self._classes:
            self._prior.count([self._classes.index(lab) for lab in labels if lab is not None])
            proba = torch.softmax(self._activations(x[: len(values)], prior=False).double()
                                  / self.temperature, dim=1)
            self._prior.observe(proba.cpu().numpy())
        if self.replay and self.replay_size:
            for row, label in zip(values, labels):
                if label is not None:
                    self._replay_values.append(np.array(row, dtype=float))
                    self._replay_labels.append(label)
            excess = len(self._replay_labels) - self.replay_size
            if excess > 0:
                del self._replay_values[:excess], self._replay_labels[:excess]

    def _pseudo_labels(self, x: torch.Tensor, labels: Sequence[Any]) -> Pseudo | None:
        """Self-training: ``(rows, classes, rates)`` for the unlabelled rows of encoded
        records ``x``, each to be learnt with its predicted class at ``self_train`` times
        the margin of its two most probable classes; ``None`` while self-training is off."""
        if not (
            self.self_train
            and self._n_learnt >= self.warmup
            and len(self._classes) > 1
            and self._n_labelled >= self.self_train_after * len(self._classes)
        ):
            return None
        rows = torch.tensor([r for r, lab in enumerate(labels) if lab is None], dtype=torch.long,
                            device=x.device)
        if not len(rows):
            return None
        proba = torch.softmax(self._activations(x[rows]).double() / self.temperature, dim=1)
        top = proba.topk(2, dim=1)
        margin = (top.values[:, 0] - top.values[:, 1]).to(x.dtype)
        return rows, top.indices[:, 0], self.self_train * margin

    def _learn_batch(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        labels: Sequence[Any],
        pseudo: Pseudo | None = None,
    ) -> None:
        """One step of the rule on encoded records (labels: ``None`` when absent), with
        the self-training rows ``pseudo`` (see :meth:`_pseudo_labels`) added."""
        assert self._network is not None
        device = x.device
        n_label = self._label_units()
        candidates = self._candidates(device)
        labelled = torch.tensor([lab is not None for lab in labels], device=device)
        index = torch.tensor(
            [self._classes.index(lab) if lab is not None else 0 for lab in labels], device=device
        )
        block = candidates[index] * labelled.unsqueeze(1) if n_label else x.new_zeros(len(x), 0)
        inputs = torch.cat([x, block], dim=1)
        masks = torch.cat([mask, labelled.unsqueeze(1).float().expand(-1, n_label)], dim=1)
        rates = torch.ones(len(labels), device=device)
        rates[labelled] = self.label_rate
        if self.feedback and len(self._classes) > 1 and bool(labelled.any()):
            rows = labelled.nonzero().squeeze(1)
            wrong, gain = self._strongest_wrong(x[rows], index[rows], candidates)
            rates[rows] = gain * self.label_rate
            inputs = torch.cat([inputs, torch.cat([x[rows], candidates[wrong]], dim=1)])
            masks = torch.cat([masks, masks[rows]])
            rates = torch.cat([rates, -self.unlearn * self.label_rate * gain])
        if pseudo is not None:
            rows, classes, pseudo_rates = pseudo
            inputs = torch.cat([inputs, torch.cat([x[rows], candidates[classes]], dim=1)])
            present = torch.cat([mask[rows], mask.new_ones(len(rows), n_label)], dim=1)
            masks = torch.cat([masks, present])
            rates = torch.cat([rates, pseudo_rates])
        rates = rates / rates.abs().mean().clamp(min=1.0)  # a step never exceeds lr's
        rates = rates * stable_rate_factor(inputs * masks, rates, self._network.lr)
        self._network.learn(inputs, rate=rates, mask=masks)

    def _install_network(self, net: ActivationNetwork) -> None:
        # Unlearning grows weights without bound (see ActivationNetwork.max_row_norm);
        # the rule leads to unit rows, so a bound of 1 stops only that growth.
        super()._install_network(net)
        net.max_row_norm = 1.0 if self.feedback else None

    def _activations(self, x: torch.Tensor, prior: bool = True) -> torch.Tensor:
        """``(B, K)`` activations over input strength, each class in the label block,
        shifted by the prior correction unless ``prior`` is false."""
        assert self._network is not None
        n_label = self._label_units()
        padded = torch.cat([x, x.new_zeros(len(x), n_label)], dim=1)
        units = slice(x.shape[1], x.shape[1] + n_label)
        act = candidate_activations(self._network, padded, units, self._candidates(x.device))
        act = act / (1.0 + self.label_weight**2)
        if prior and self._prior is not None:
            shift = torch.from_numpy(self.temperature * self._prior.log_ratio())
            act = act + shift.to(device=act.device, dtype=act.dtype)
        return act

    def _strongest_wrong(
        self, x: torch.Tensor, truth: torch.Tensor, candidates: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        act = self._activations(x)
        right = act.gather(1, truth.unsqueeze(1)).squeeze(1)
        others = act.scatter(1, truth.unsqueeze(1), float("-inf"))
        best_wrong, wrong = others.max(dim=1)
        return wrong, truncated_linear_gain(right - best_wrong, self.gain_slope)

    # ---- prediction ---------------------------------------------------------
    def _proba(self, values: np.ndarray) -> np.ndarray:
        x, _ = self._encode(values)
        act = self._activations(x)
        proba = torch.softmax(act.double() / self.temperature, dim=1)
        if self.nearest and self._replay_labels:
            vote = self._nearest_vote(x, values.shape[1])
            proba = (1.0 - self.nearest) * proba + self.nearest * vote
        return proba.cpu().numpy()

    def _nearest_vote(self, x: torch.Tensor, width: int) -> torch.Tensor:
        """``(B, K)``: one-hot class of each encoded record's nearest labelled record.

        Nearest by the cosine of the encoded features among the rehearsal buffer's
        records, encoded like the query (``width`` raw features, today's moments).
        """
        kept, _ = self._encode(self._padded(self._replay_values, width))
        similarity = F.normalize(x, dim=1) @ F.normalize(kept, dim=1).T
        classes = torch.tensor([self._classes.index(lab) for lab in self._replay_labels],
                               device=x.device)
        nearest = classes[similarity.argmax(dim=1)]
        return F.one_hot(nearest, len(self._classes)).to(torch.float64)

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict[Any, float]:
        """Class probabilities: softmax of the activations, mixed with the nearest
        labelled record's vote when ``nearest`` > 0 (``{}`` before any class)."""
        self._ensure_state()
        if not self._classes:
            return {}
        proba = self._proba(self._query_values([validate_features(x)]))[0]
        return dict(zip(self._classes, proba.tolist()))

    def predict_proba_many(self, X: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities of the rows of ``X``, one column per class."""
        self._ensure_state()
        if not self._classes:
            return pd.DataFrame(index=X.index)
        proba = self._proba(self._query_values(X))
        return pd.DataFrame(proba, columns=self._classes, index=X.index)

    def predict_one(self, x: dict, **kwargs: Any) -> Any:
        """The most probable class (``None`` before any class)."""
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.__getitem__) if proba else None

    def predict_many(self, X: pd.DataFrame) -> pd.Series:
        """Predicted classes of the rows of ``X``."""
        proba = self.predict_proba_many(X)
        if proba.shape[1] == 0:
            return pd.Series([None] * len(X), index=X.index, dtype=object)
        return proba.idxmax(axis=1)

