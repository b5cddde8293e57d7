"""The chart, loaded once per test module that renders it."""

from __future__ import annotations

import pytest

from tests.charts.chartkit import CHART_DIR


@pytest.fixture(scope="module")
def chart():
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) is not installed")
    with helm.Chart.load(str(CHART_DIR)) as c:
        yield c
