"""Point-wise anomaly metrics against hand-computed values and brute-force oracles."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamal.evaluation.anomaly import (
    BinaryCounts,
    SkabMetrics,
    average_precision,
    binary_counts,
    pr_auc,
    roc_auc,
    skab_metrics,
)


def test_roc_auc_hand_values():
    # positives {0.35, 0.8}, negatives {0.1, 0.4}: wins 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # ties count one half: pos {0.5, 0.9}, neg {0.5, 0.2}
    # (0.5 vs 0.5) = 1/2, (0.5 > 0.2) = 1, (0.9 > 0.5) = 1, (0.9 > 0.2) = 1 -> 3.5/4
    assert roc_auc([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.2]) == 0.875
    assert roc_auc([True, False], [0.0, 1.0]) == 0.0
    assert roc_auc([1, 1, 0, 0], [3, 3, 3, 3]) == 0.5


def test_average_precision_hand_values():
    # order 0.8(+) 0.4(-) 0.35(+) 0.1(-): (P, R) = (1, 1/2), (1/2, 1/2), (2/3, 1), (1/2, 1)
    # AP = (1/2)(1) + 0 + (1/2)(2/3) + 0 = 5/6
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(5 / 6)
    # tie group at the top: scores 0.9 (+), 0.9 (-), 0.1 (+)
    # thresholds 0.9: P = 1/2, R = 1/2; 0.1: P = 2/3, R = 1 -> AP = 1/4 + 1/3 = 7/12
    assert average_precision([1, 0, 1], [0.9, 0.9, 0.1]) == pytest.approx(7 / 12)
    assert pr_auc([0, 1, 1], [0.2, 0.9, 0.7]) == 1.0


def test_degenerate_inputs():
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert math.isnan(roc_auc([0, 0], [0.2, 0.3]))
    assert math.isnan(average_precision([0, 0], [0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        average_precision([0, 1], [0.1])


def _auc_pairs(y, s):
    pos = [v for v, t in zip(s, y, strict=True) if t]
    neg = [v for v, t in zip(s, y, strict=True) if not t]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def _ap_definition(y, s):
    y, s = np.asarray(y, bool), np.asarray(s, float)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        alarm = s >= t
        tp = np.sum(alarm & y)
        recall = tp / y.sum()
        ap += (recall - prev_recall) * tp / alarm.sum()
        prev_recall = recall
    return ap


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.9, 1.0])),
        min_size=2,
        max_size=40,
    )
)
def test_against_brute_force(rows):
    y = [r[0] for r in rows]
    s = [r[1] for r in rows]
    if 0 < sum(y) < len(y):
        assert roc_auc(y, s) == pytest.approx(_auc_pairs(y, s), abs=1e-12)
    if sum(y) > 0:
        assert average_precision(y, s) == pytest.approx(_ap_definition(y, s), abs=1e-12)


def test_against_sklearn_if_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.2
    s = np.round(rng.random(500) + 0.5 * y, 2)  # rounding makes ties
    assert roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(
        metrics.average_precision_score(y, s), abs=1e-12
    )


def test_binary_counts_and_skab_single_file():
    counts = binary_counts([0, 1, 1, 0, 1], [1, 1, 0, 0, 1])
    assert counts == BinaryCounts(tp=2, fp=1, fn=1, tn=1)
    m = skab_metrics([0, 1, 1, 0, 1], [1, 1, 0, 0, 1])
    # F1 = 2 / (2 + (1 + 1)/2) = 2/3; FAR = 1/(1 + 1) = 0.5; MAR = 1/(1 + 2) = 1/3
    assert m.f1 == pytest.approx(2 / 3)
    assert m.far == 0.5 and m.far_percent == 50.0
    assert m.mar == pytest.approx(1 / 3)


def test_skab_pools_counts_over_files():
    y_true = [[1, 1, 1, 1], [0, 0, 0, 1]]
    y_pred = [[1, 1, 1, 1], [1, 1, 1, 0]]
    m = skab_metrics(y_true, y_pred)
    # pooled: TP = 4, FP = 3, FN = 1, TN = 0
    # F1 = 4 / (4 + (1 + 3)/2) = 4/6; FAR = 3/3 = 1; MAR = 1/5
    assert m.counts == BinaryCounts(tp=4, fp=3, fn=1, tn=0)
    assert m.f1 == pytest.approx(2 / 3)
    assert m.far == 1.0
    assert m.mar == pytest.approx(0.2)
    # per-file F1 averaged would differ: file 1 F1 = 1, file 2 F1 = 0 -> 0.5
    assert m.f1 != pytest.approx(0.5)
    # mappings are matched by key, whatever their order
    m2 = skab_metrics({"a": y_true[0], "b": y_true[1]}, {"b": y_pred[1], "a": y_pred[0]})
    assert m2 == m


def test_skab_threshold_on_scores():
    scores = [[0.9, 0.8, 0.1], [0.2, 0.0, 0.7]]
    m = skab_metrics([[0, 1, 1], [0, 0, 1]], scores, threshold=0.7)
    # alarms (>= 0.7): [1, 1, 0], [0, 0, 1] -> TP 2, FP 1, FN 1, TN 2
    assert m.counts == BinaryCounts(tp=2, fp=1, fn=1, tn=2)
    single = skab_metrics(np.array([0, 1]), np.array([0.2, np.nan]), threshold=0.1)
    assert single.counts == BinaryCounts(tp=0, fp=1, fn=1, tn=0)  # NaN never alarms


def test_skab_degenerate_ratios():
    m = SkabMetrics.from_counts(BinaryCounts(tp=0, fp=0, fn=0, tn=3))
    assert math.isnan(m.f1) and math.isnan(m.mar) and m.far == 0.0
    with pytest.raises(ValueError):
        binary_counts([[0, 1], [1]], [[0, 1]])
    with pytest.raises(KeyError):
        binary_counts({"a": [1]}, {"b": [1]})
