"""River's own conformance suite on both estimators, with no check skipped.

River streams ``datasets.CreditCard`` for anomaly detectors, which needs a
download; we substitute river's bundled ``datasets.Shuttle`` for it.
"""

from __future__ import annotations

import itertools

import pytest
import river.datasets
from river import checks, datasets

from streamal import ActivationClassifier, ActivationDetector


class _BundledCreditCard:
    """Stands in for ``datasets.CreditCard``: river's bundled Shuttle stream."""

    def take(self, n):
        return (
            (x, y == 1) for x, y in itertools.islice(datasets.Shuttle(), n)
        )


@pytest.fixture
def bundled_anomaly_data(monkeypatch):
    monkeypatch.setattr(river.datasets, "CreditCard", _BundledCreditCard)


def _all_checks(model):
    return list(checks.yield_checks(model))


@pytest.mark.parametrize("estimator", [ActivationDetector, ActivationClassifier])
def test_river_check_estimator(estimator, bundled_anomaly_data):
    for params in estimator._unit_test_params():
        model = estimator(**params)
        ran = []
        for check in _all_checks(model):
            check(model.clone())
            ran.append(check.__name__)
        assert "check_learn_one" in ran
        if estimator is ActivationClassifier:
            assert "check_learn_many_matches_learn_one" in ran
        else:
            assert "check_roc_auc" in ran
