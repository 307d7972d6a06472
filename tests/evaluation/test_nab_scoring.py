"""NAB scorer on small hand-made series (no shared data needed).

Reproduction of NAB's published numbers lives in ``bench/nab_scorer_check.py``.
Conventions of the hand cases: 40 rows, probation ``P = floor(0.15 * 40) = 6``, one
window on rows 20..29 (width ``w = 10``), standard profile (A_tp = A_fn = 1, A_fp = 0.11),
``f(x) = 2 / (1 + exp(5x)) - 1``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamal.evaluation.nab import (
    NAB_PROFILES,
    NabProfile,
    nab_row_weights,
    nab_score,
    nab_sweep,
    probationary_length,
    scaled_sigmoid,
    windows_from_labels,
)

N = 40
WINDOW = {"s": [(20, 29)]}
# f(-1) = 2 / (1 + e^-5) - 1 = 2 / 1.006737947 - 1 = 0.986614298
F_MINUS_1 = 0.9866142981514303


def one_series(alarm_rows: list[int], n: int = N) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    scores = np.zeros(n)
    scores[alarm_rows] = 1.0
    return {"s": (np.arange(n), scores)}


# ----------------------------------------------------------------------------- rules


def test_probationary_length_matches_nab():
    # min(floor(0.15 n), 0.15 * 5000 = 750)
    assert probationary_length(40) == 6  # floor(6.0)
    assert probationary_length(4032) == 604  # floor(604.8)
    assert probationary_length(1882) == 282  # floor(282.3)
    assert probationary_length(5000) == 750
    assert probationary_length(22695) == 750  # capped
    assert probationary_length(0) == 0


def test_scaled_sigmoid_values():
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(-1.0) == pytest.approx(F_MINUS_1, abs=1e-12)
    # x = 3 is still the sigmoid: 2 / (1 + e^15) - 1 = -0.999999388
    assert scaled_sigmoid(3.0) == pytest.approx(-0.999999388195, abs=1e-12)
    assert scaled_sigmoid(3.0000001) == -1.0
    assert scaled_sigmoid(50.0) == -1.0


def test_sigmoid_credit_inside_window_hand_values():
    w = nab_row_weights(np.arange(N), [(20, 29)]).weight
    # row 20: y = -(29 - 20 + 1)/10 = -1 -> f(-1)/f(-1) = 1 exactly
    assert w[20] == 1.0
    # row 24: y = -0.6; f(-0.6) = 2/(1 + e^-3) - 1 = 2/1.049787068 - 1 = 0.905148254
    #         credit = 0.905148254 / 0.986614298 = 0.917428680
    assert w[24] == pytest.approx(0.917428680, abs=1e-9)
    # row 29 (last): y = -0.1; f(-0.1) = 2/(1 + e^-0.5) - 1 = 2/1.606530660 - 1 = 0.244918662
    #         credit = 0.244918662 / 0.986614298 = 0.248241550
    assert w[29] == pytest.approx(0.248241550, abs=1e-9)
    # credit falls monotonically through the window
    assert np.all(np.diff(w[20:30]) < 0)


def test_false_positive_penalty_hand_values():
    w = nab_row_weights(np.arange(N), [(20, 29)]).weight
    # before any window: full -A_fp
    assert w[10] == -0.11
    # row 33: x = (33 - 29)/(10 - 1) = 0.444444; f = 2/(1 + e^2.222222) - 1
    #         = 2/10.227814 - 1 = -0.804455; times 0.11 -> -0.088490
    assert w[33] == pytest.approx(-0.0884900280, abs=1e-9)
    # row 39: x = 10/9; f = 2/(1 + e^5.555556) - 1 = 2/259.670631 - 1 = -0.992298 -> -0.109153
    assert w[39] == pytest.approx(-0.1091527729, abs=1e-9)
    # x > 3 gives exactly -A_fp: window rows 20..22 (w' - 1 = 2), row 29: x = 7/2 = 3.5
    w2 = nab_row_weights(np.arange(N), [(20, 22)]).weight
    assert w2[29] == -0.11


def test_only_previous_window_matters_for_fp_cost():
    # two windows; a detection between them is scored against the first only
    w = nab_row_weights(np.arange(60), [(10, 14), (40, 44)]).weight
    # row 16: x = (16 - 14)/(5 - 1) = 0.5; f(0.5) = 2/(1 + e^2.5) - 1 = -0.848284 -> -0.093311
    assert w[16] == pytest.approx(0.11 * (2 / (1 + math.exp(2.5)) - 1), abs=1e-15)
    assert w[39] == -0.11  # x = 25/4 > 3 although window 2 starts next row


# ----------------------------------------------------------------------------- scores


def test_never_alarming_detector_scores_zero():
    series = {
        "a": (np.arange(100), np.zeros(100)),
        "b": (np.arange(80), np.full(80, 0.5)),
        "c": (np.arange(50), np.zeros(50)),
    }
    windows = {"a": [(30, 39), (70, 79)], "b": [(40, 49)], "c": []}
    for profile in NAB_PROFILES:
        res = nab_score(series, windows, profile=profile, threshold=0.9)
        assert res.normalized_score == 0.0
        # null = -A_fn * 3 windows; perfect = A_tp * 3
        assert res.raw_score == res.null_score == -3 * NAB_PROFILES[profile].a_fn
        assert res.perfect_score == 3.0
        assert (res.tp, res.fp) == (0, 0)
        swept = nab_score(series, windows, profile=profile)
        assert swept.threshold == 1.1  # nothing detected wins against alarming everywhere
        assert swept.normalized_score == 0.0


def test_perfect_detector_scores_hundred():
    windows = {"a": [(30, 39), (70, 79)], "b": [(40, 49)], "c": []}
    lengths = {"a": 100, "b": 80, "c": 50}
    series = {}
    for name, n in lengths.items():
        scores = np.zeros(n)
        for start, _ in windows[name]:
            scores[start] = 1.0  # alarm on each window's first row only
        series[name] = (np.arange(n), scores)
    for profile in NAB_PROFILES:
        res = nab_score(series, windows, profile=profile, threshold=0.5)
        assert res.raw_score == 3.0
        assert res.normalized_score == 100.0
        assert (res.tp, res.fp, res.fn) == (3, 0, 27)
        swept = nab_score(series, windows, profile=profile)
        assert swept.threshold == 1.0
        assert swept.normalized_score == 100.0


def test_mid_window_detection():
    res = nab_score(one_series([24]), WINDOW, threshold=0.5)
    # raw = f(-0.6)/f(-1) = 0.917428680; normalised 100 (0.917428680 + 1)/(1 + 1)
    assert res.raw_score == pytest.approx(0.9174286804284079, abs=1e-12)
    assert res.normalized_score == pytest.approx(95.87143402142, abs=1e-9)
    assert (res.tp, res.fp, res.fn, res.tn, res.total) == (1, 0, 9, 24, 34)


def test_missed_window_and_false_positives():
    # row 2 is probationary (ignored); 10 costs -0.11; 33 and 39 as in the weight test
    res = nab_score(one_series([2, 10, 33, 39]), WINDOW, threshold=0.5)
    # -1 (missed window) - 0.11 - 0.0884900280 - 0.1091527729 = -1.3076428009
    assert res.raw_score == pytest.approx(-1.3076428009, abs=1e-9)
    assert (res.tp, res.fp, res.fn, res.tn, res.total) == (0, 3, 10, 21, 34)
    assert res.normalized_score == pytest.approx(100 * (-1.3076428009 + 1) / 2, abs=1e-7)


def test_threshold_is_inclusive_and_earliest_detection_counts():
    scores = np.full(N, 0.1)
    scores[[3, 12, 21, 28, 30, 36]] = [0.95, 0.3, 0.7, 0.9, 0.65, 0.64]
    res = nab_score({"s": (np.arange(N), scores)}, WINDOW, threshold=0.65)
    # detections: row 3 (probation, ignored), 21 and 28 (window), 30 (score == threshold)
    # window: earliest is row 21, y = -0.9: f(-0.9) = 2/(1 + e^-4.5) - 1 = 0.978026 -> /f(-1)
    #         = 0.991295; row 30: x = 1/9, f = 2/(1 + e^0.555556) - 1 = -0.270847 -> -0.029793
    # raw = 0.991295 - 0.029793 = 0.961502
    assert res.raw_score == pytest.approx(0.9615021150054573, abs=1e-9)
    assert (res.tp, res.fp, res.fn, res.tn) == (2, 1, 8, 23)


def test_extra_detections_in_a_hit_window_change_nothing():
    first = nab_score(one_series([21]), WINDOW, threshold=0.5)
    more = nab_score(one_series([21, 22, 25, 29]), WINDOW, threshold=0.5)
    assert more.raw_score == first.raw_score
    assert more.tp == 4


def test_reward_low_fn_profile_weights():
    res = nab_score(one_series([]), WINDOW, profile="reward_low_FN_rate", threshold=0.5)
    assert res.raw_score == res.null_score == -2.0
    assert res.perfect_score == 1.0
    fp = nab_score(one_series([10]), WINDOW, profile="reward_low_FP_rate", threshold=0.5)
    assert fp.raw_score == pytest.approx(-1.0 - 0.22, abs=1e-15)
    custom = NabProfile(a_tp=2.0, a_fp=0.5, a_fn=1.0)
    hit = nab_score(one_series([20, 10]), WINDOW, profile=custom, threshold=0.5)
    assert hit.raw_score == pytest.approx(2.0 - 0.5, abs=1e-15)
    assert hit.profile == "custom"


def test_window_inside_probation_counts_for_perfect_only():
    # NAB: a window with no row past probation earns/costs nothing, but NAB's perfect
    # score counts every labelled window.
    res = nab_score(one_series([]), {"s": [(1, 3), (20, 29)]}, threshold=0.5)
    assert res.null_score == -1.0
    assert res.perfect_score == 2.0
    assert res.per_series["s"].n_scored_windows == 1
    # ... and the probationary window is still the "previous window" for FP costs:
    # row 10: x = (10 - 3)/(3 - 1) = 3.5 > 3 -> -0.11; row 6: x = 3/2 -> 0.11 f(1.5)
    w = nab_row_weights(np.arange(N), [(1, 3), (20, 29)]).weight
    assert w[6] == pytest.approx(0.11 * (2 / (1 + math.exp(7.5)) - 1), abs=1e-15)


# ----------------------------------------------------------------------------- sweep


def test_sweep_candidates_and_tie_rule():
    scores = np.zeros(N)
    scores[[22, 25]] = [0.8, 0.6]  # both in the window: 0.6 ties with 0.8
    sw = nab_sweep({"s": (np.arange(N), scores)}, WINDOW)
    assert sw.thresholds.tolist() == [1.1, 0.8, 0.6, 0.0]
    assert sw.raw_scores[1] == sw.raw_scores[2]
    assert sw.tied_thresholds == (0.8, 0.6)
    assert sw.best_threshold == 0.8  # highest of the tied
    res = nab_score({"s": (np.arange(N), scores)}, WINDOW)
    assert res.threshold == 0.8
    assert res.tp == 1


def test_sweep_pools_series_under_one_threshold():
    # series a wants 0.9 (its 0.5 row is a FP); series b's only hit scores 0.5
    a = np.zeros(N)
    a[[20, 35]] = [0.9, 0.5]
    b = np.zeros(N)
    b[20] = 0.5
    series = {"a": (np.arange(N), a), "b": (np.arange(N), b)}
    windows = {"a": [(20, 29)], "b": [(20, 29)]}
    res = nab_score(series, windows)
    # at 0.9: 1 - 1 = 0; at 0.5: 1 + 1 + 0.11 f(6/9) = 2 - 0.102422 -> 0.5 wins
    assert res.threshold == 0.5
    assert res.raw_score == pytest.approx(2 + 0.11 * scaled_sigmoid(6 / 9), abs=1e-12)


def test_nan_scores_never_detect():
    scores = np.full(N, np.nan)
    scores[20] = 1.0
    res = nab_score({"s": (np.arange(N), scores)}, WINDOW)
    assert res.threshold == 1.0
    assert res.raw_score == 1.0


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=12, max_value=70),
    data=st.data(),
)
def test_sweep_equals_brute_force(n, data):
    scores = np.array(
        data.draw(
            st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.7, 0.9, 1.0]), min_size=n, max_size=n)
        )
    )
    cuts = sorted(data.draw(st.sets(st.integers(0, n - 1), max_size=6)))
    windows = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
    series = {"s": (np.arange(n), scores)}
    profile = data.draw(st.sampled_from(sorted(NAB_PROFILES)))
    sw = nab_sweep(series, {"s": windows}, profile=profile)
    for t, raw in zip(sw.thresholds, sw.raw_scores, strict=True):
        direct = nab_score(series, {"s": windows}, profile=profile, threshold=float(t))
        assert raw == pytest.approx(direct.raw_score, abs=1e-9)
    best = max(sw.raw_scores)
    assert sw.best_threshold == max(
        t for t, r in zip(sw.thresholds, sw.raw_scores, strict=True) if r == best
    )


# ----------------------------------------------------------------------------- inputs


def test_labels_with_timestamps_and_input_forms():
    times = pd.date_range("2020-01-01 00:00:00", periods=N, freq="5min")
    labels = {"s": [["2020-01-01 01:40:00.000000", "2020-01-01 02:25:00.000000"]]}
    windows = windows_from_labels(labels)
    scores = np.zeros(N)
    scores[24] = 1.0
    frame = pd.DataFrame(
        {"timestamp": times.strftime("%Y-%m-%d %H:%M:%S"), "anomaly_score": scores}
    )
    forms = [
        {"s": frame},
        {"s": pd.Series(scores, index=times)},
        {"s": (times, scores)},
    ]
    for form in forms:
        res = nab_score(form, windows, threshold=0.5)
        assert res.raw_score == pytest.approx(0.9174286804284079, abs=1e-12)


def test_unsorted_timestamps_follow_row_order():
    # clock steps back one hour (as in NAB's machine_temperature series)
    t = np.concatenate([np.arange(0, 30), np.arange(18, 38)])  # row 30 has time 18
    scores = np.zeros(t.size)
    scores[[33, 45]] = 1.0
    windows = {"s": [(20, 25)]}  # time 20 first appears on row 20, time 25 on row 25
    res = nab_score({"s": (t, scores)}, windows, threshold=0.5)
    by_row = nab_score({"s": (np.arange(t.size), scores)}, {"s": [(20, 25)]}, threshold=0.5)
    assert res.raw_score == by_row.raw_score
    assert (res.tp, res.fp) == (0, 2)


def test_window_bounds_between_rows_on_sorted_times():
    res = nab_score(one_series([20]), {"s": [(19.5, 29.5)]}, threshold=0.5)
    assert res.raw_score == 1.0


def test_errors():
    with pytest.raises(ValueError, match="unknown NAB profile"):
        nab_score(one_series([]), WINDOW, profile="nope")
    with pytest.raises(KeyError):
        nab_score(one_series([]), {"other": []})
    with pytest.raises(ValueError, match="overlapping"):
        windows_from_labels({"s": [["2020-01-01", "2020-01-03"], ["2020-01-02", "2020-01-04"]]})
    with pytest.raises(ValueError, match="overlapping"):
        nab_score(one_series([]), {"s": [(10, 20), (15, 25)]})
    with pytest.raises(ValueError, match="no row"):
        nab_score(one_series([]), {"s": [(100, 120)]})
    with pytest.raises(TypeError):
        nab_score(one_series([]), {"s": [("2020-01-01", "2020-01-02")]})


def test_series_without_windows_has_nan_normalised_score():
    res = nab_score(one_series([10]), {"s": []}, threshold=0.5)
    assert res.raw_score == pytest.approx(-0.11)
    assert math.isnan(res.normalized_score)
