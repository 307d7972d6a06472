"""Prequential classification metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamal.evaluation.classification import (
    cohen_kappa,
    labelled_split_accuracy,
    prequential_accuracy,
    rolling_accuracy,
)


def test_prequential_accuracy():
    assert prequential_accuracy([1, 0, 1, 1], [1, 0, 0, 1]) == 0.75
    assert prequential_accuracy(["a", "b"], ["a", None]) == 0.5  # no prediction = wrong
    assert prequential_accuracy(np.array([1, 2]), np.array([1.0, 2.0])) == 1.0
    assert math.isnan(prequential_accuracy([], []))
    with pytest.raises(ValueError):
        prequential_accuracy([1, 2], [1])


def test_rolling_accuracy_window_and_cumulative():
    y = [1, 1, 1, 1, 1]
    p = [1, 0, 0, 1, 1]  # correct: 1 0 0 1 1
    # window 3: [1/1, 1/2, 1/3, 1/3, 2/3]
    assert rolling_accuracy(y, p, window=3) == pytest.approx([1, 0.5, 1 / 3, 1 / 3, 2 / 3])
    # cumulative: [1/1, 1/2, 1/3, 2/4, 3/5]
    assert rolling_accuracy(y, p) == pytest.approx([1, 0.5, 1 / 3, 0.5, 0.6])
    assert rolling_accuracy(y, p, window=1).tolist() == [1, 0, 0, 1, 1]
    assert rolling_accuracy(y, p, window=10)[-1] == pytest.approx(0.6)
    with pytest.raises(ValueError):
        rolling_accuracy(y, p, window=0)


def test_cohen_kappa_hand_values():
    # binary: p_o = 3/4; p_e = (2/4)(1/4) + (2/4)(3/4) = 1/2 -> (3/4 - 1/2)/(1/2) = 1/2
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == 0.5
    # three classes, 6 records
    y = ["a", "a", "b", "b", "c", "c"]
    p = ["a", "b", "b", "b", "c", "a"]
    # p_o = 4/6; true freq a2 b2 c2, pred freq a2 b3 c1
    # p_e = (2*2 + 2*3 + 2*1)/36 = 12/36 = 1/3 -> (2/3 - 1/3)/(2/3) = 1/2
    assert cohen_kappa(y, p) == pytest.approx(0.5)
    assert cohen_kappa([0, 1], [1, 0]) == -1.0
    assert math.isnan(cohen_kappa([1, 1], [1, 1]))  # p_e = 1


def test_cohen_kappa_with_missing_prediction():
    # None never agrees: p_o = 1/2; true a1 b1, pred a1 None1 -> p_e = 1/4 -> (1/4)/(3/4) = 1/3
    assert cohen_kappa(["a", "b"], ["a", None]) == pytest.approx(1 / 3)


def test_cohen_kappa_against_sklearn_if_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300))
    assert cohen_kappa(y, p) == pytest.approx(metrics.cohen_kappa_score(y, p), abs=1e-12)


def test_labelled_split_accuracy():
    y = [0, 1, 1, 0, 1, 0]
    p = [0, 1, 0, 1, 1, 0]  # correct: 1 1 0 0 1 1
    lab = [True, False, True, False, False, True]
    r = labelled_split_accuracy(y, p, lab)
    # overall 4/6; labelled rows 0, 2, 5 -> 2/3; unlabelled rows 1, 3, 4 -> 2/3
    assert r.overall == pytest.approx(4 / 6)
    assert r.labelled == pytest.approx(2 / 3)
    assert r.unlabelled == pytest.approx(2 / 3)
    assert (r.n_labelled, r.n_unlabelled) == (3, 3)
    all_lab = labelled_split_accuracy([1, 0], [1, 1], [1, 1])
    assert all_lab.labelled == 0.5 and math.isnan(all_lab.unlabelled)
    with pytest.raises(ValueError):
        labelled_split_accuracy([1, 0], [1, 1], [True])
