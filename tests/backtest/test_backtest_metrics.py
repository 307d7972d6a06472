"""The backtest's numbers equal hand-computed ones on tiny tables."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from streamal.backtest.metrics import anomaly_metrics, classification_metrics, nab_metrics

# Ten records of one series. With warmup = 2 the first two (a fresh model's 1.0 scores) are
# left out; the other eight have positives at 0.9, 0.8, 0.15 and negatives at 0.1, 0.2,
# 0.3, 0.25, 0.05; alerts on the 0.9 (an anomaly) and the 0.25 (a normal record).
SCORES = [1.0, 1.0, 0.1, 0.2, 0.9, 0.3, 0.8, 0.15, 0.25, 0.05]
LABELS = [False, False, False, False, True, False, True, True, False, False]
ALERTS = [False, False, False, False, True, False, False, False, True, False]


def tiny(order: list[int] | None = None) -> pd.DataFrame:
    rows = pd.DataFrame({"series": "a", "event_time": [float(t) for t in range(10)],
                         "score": SCORES, "alert": ALERTS, "label": LABELS})
    return rows if order is None else rows.iloc[order].reset_index(drop=True)


def test_anomaly_metrics_equal_the_hand_computed_values() -> None:
    m = anomaly_metrics(tiny(), warmup=2)
    assert m["evaluated"] == 8 and m["anomalous"] == 3
    # ROC-AUC: pairs (positive above negative) 5 + 5 + 2 of 3 x 5 = 12 / 15
    assert m["roc_auc"] == pytest.approx(12 / 15)
    # PR-AUC: recall steps of 1/3 at precisions 1 (0.9), 1 (0.8) and 3/6 (0.15)
    assert m["pr_auc"] == pytest.approx((1 + 1 + 0.5) / 3)
    # SKAB: TP 1, FP 1, FN 2, TN 4 -> F1 = 1 / (1 + 3 / 2), FAR = 1 / 5, MAR = 2 / 3
    assert m["counts"] == {"tp": 1, "fp": 1, "fn": 2, "tn": 4}
    assert (m["f1"], m["far"], m["mar"]) == pytest.approx((0.4, 0.2, 2 / 3))


def test_the_warmup_is_counted_in_event_time_per_series() -> None:
    shuffled = tiny([9, 0, 5, 1, 2, 3, 4, 6, 7, 8])  # emitted out of time order
    assert anomaly_metrics(shuffled, warmup=2)["roc_auc"] == pytest.approx(12 / 15)
    # without the warm-up the two 1.0 scores of normal records rank above every anomaly
    assert anomaly_metrics(tiny(), warmup=0)["roc_auc"] == pytest.approx(12 / 21)


def test_rows_without_a_label_are_left_out() -> None:
    rows = tiny()
    rows["label"] = rows["label"].astype(object)
    rows.loc[8, "label"] = None  # the false alarm is no longer counted
    m = anomaly_metrics(rows, warmup=2)
    assert m["evaluated"] == 7 and m["counts"]["fp"] == 0


def test_skab_counts_are_pooled_over_series() -> None:
    two = pd.concat([tiny(), tiny().assign(series="b")], ignore_index=True)
    m = anomaly_metrics(two, warmup=2)
    assert m["counts"] == {"tp": 2, "fp": 2, "fn": 4, "tn": 8}
    assert m["f1"] == pytest.approx(0.4)


def test_nab_scores_the_alerts_with_the_three_profiles() -> None:
    # 40 records (probation 6), one window on rows 20..29, one alert on its first row
    rows = pd.DataFrame({"series": "a", "event_time": [float(t) for t in range(40)],
                         "alert": [t == 20 for t in range(40)], "score": 0.0, "label": False})
    found, warnings = nab_metrics(rows, {"a": [(20.0, 29.0), (100.0, 110.0)]})
    assert found["standard"]["score"] == pytest.approx(100.0)
    assert found["reward_low_FN_rate"]["score"] == pytest.approx(100.0)
    assert found["standard"]["tp"] == 1 and found["windows"] == 1
    assert warnings and "holds no record" in warnings[0]
    # an alert late in the window earns less: y = -(29 - 24 + 1) / 10 = -0.6
    rows["alert"] = [t == 24 for t in range(40)]
    found, _ = nab_metrics(rows, {"a": [(20.0, 29.0)]})
    credit = (2 / (1 + math.exp(3)) - 1) / (2 / (1 + math.exp(5)) - 1)
    assert found["standard"]["raw"] == pytest.approx(credit)
    assert found["standard"]["score"] == pytest.approx(100 * (credit + 1) / 2)


def test_classification_metrics_equal_the_hand_computed_values() -> None:
    rows = pd.DataFrame({
        "event_time": [float(t) for t in range(6)],
        "label": ["a", "a", "b", "b", "a", "b"],
        "prediction": [None, "a", "b", "b", "a", "a"],
        "given_label": ["a", None, None, "b", None, None],
    })
    m = classification_metrics(rows)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert (m["accuracy_labelled"], m["accuracy_unlabelled"]) == pytest.approx((0.5, 0.75))
    assert (m["labelled"], m["unlabelled"]) == (2, 4)
    # p_o = 4/6; p_e = (3 x 3 (a) + 3 x 2 (b)) / 36 = 15/36 -> kappa = (24 - 15) / (36 - 15)
    assert m["kappa"] == pytest.approx(9 / 21)
    parts = m["accuracy_over_time"]
    assert [p["records"] for p in parts] == [1] * 6
    assert [p["accuracy"] for p in parts] == [0, 1, 1, 1, 1, 0]


def test_mixed_label_types_are_not_compared_as_text() -> None:
    rows = pd.DataFrame({"event_time": [0.0, 1.0], "label": [1, "1"],
                         "prediction": ["1", 1], "given_label": [None, None]})
    assert classification_metrics(rows)["accuracy"] == 0.0
