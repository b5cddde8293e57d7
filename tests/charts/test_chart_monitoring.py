"""The chart's Grafana dashboard ConfigMap and PrometheusRule: off by default, rendered when asked for,
in the shapes Grafana's sidecar and the Prometheus Operator read, and only over metrics meshblock exports
(tests/control/test_dashboard_metrics.py checks that against a running cluster)."""

from __future__ import annotations

import json
import re

import pytest

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) is not installed")

from tests.charts.chartkit import CHART_DIR, NAMESPACE, RELEASE, VARIANTS, render  # noqa: E402

DASHBOARD = CHART_DIR / "dashboards" / "meshblock.json"
ON = VARIANTS["dashboards-and-alerts"]
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


@pytest.fixture(scope="module")
def rendered(chart):
    return {name: render(chart, VARIANTS[name]) for name in ("default", "service-monitor", "dashboards-and-alerts")}


def dashboards(r):
    return [o for o in r.of_kind("ConfigMap") if o["metadata"]["name"].endswith("-dashboards")]


@pytest.mark.parametrize("variant", ["default", "service-monitor"])
def test_nothing_by_default(rendered, variant):
    r = rendered[variant]
    assert dashboards(r) == [] and r.of_kind("PrometheusRule") == []
    assert "PrometheusRule" not in r.notes and "Grafana" not in r.notes


def test_dashboard_configmap_carries_the_sidecar_label_and_the_json(rendered):
    r = rendered["dashboards-and-alerts"]
    (cm,) = dashboards(r)
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Storage"}
    (name,) = cm["data"]
    assert name.endswith(".json")
    dash = json.loads(cm["data"][name])
    assert dash == json.loads(DASHBOARD.read_text())
    assert dash["uid"] and dash["title"] and dash["panels"]
    assert f"{RELEASE}-meshblock-dashboards" in r.notes


def test_dashboard_label_and_namespace_are_configurable(chart):
    values = {"metrics": {"enabled": True, "dashboards": {"enabled": True, "label": "grafana.io/dashboard",
                                                          "labelValue": "meshblock", "namespace": "monitoring"}}}
    (cm,) = dashboards(render(chart, values))
    assert cm["metadata"]["labels"]["grafana.io/dashboard"] == "meshblock"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "monitoring"


def test_dashboard_panels_have_unique_ids_queries_and_places():
    dash = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert {"h", "w", "x", "y"} <= p["gridPos"].keys() and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        if p["type"] != "row":
            assert p["title"] and p["targets"], p
            assert all(t["expr"].strip() and t["refId"] for t in p["targets"]), p["title"]
            assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p["title"]


def test_prometheus_rule_is_well_formed(rendered):
    r = rendered["dashboards-and-alerts"]
    rule = r.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "prom"
    rules = [x for g in rule["spec"]["groups"] for x in g["rules"]]
    assert rules and all(g["name"] for g in rule["spec"]["groups"])
    for x in rules:
        assert x["alert"] and x["expr"].strip(), x
        assert DURATION.match(x["for"]), x
        assert x["labels"]["severity"] in ("warning", "critical"), x
        assert x["annotations"]["summary"], x
    names = [x["alert"] for x in rules]
    assert len(names) == len(set(names))
    assert set(names) == {"MeshblockNodeDown", "MeshblockVolumesDegraded", "MeshblockVolumesFaulted",
                          "MeshblockRebuildStalled", "MeshblockNoControllerLeader", "MeshblockPoolAlmostFull"}
    # Prometheus' own templating reaches the rule unevaluated by Helm
    by = {x["alert"]: x for x in rules}
    assert "{{ $labels.node }}" in by["MeshblockNodeDown"]["annotations"]["summary"]
    assert by["MeshblockPoolAlmostFull"]["expr"].endswith("> 0.85")
    assert f"PrometheusRule {RELEASE}-meshblock" in r.notes


def test_alert_thresholds_follow_the_values(chart):
    values = {"metrics": {"enabled": True, "prometheusRule": {"enabled": True, "volumeDegradedFor": "30m",
                                                              "poolUsedRatio": 0.9, "nodeDownFor": "5m"}}}
    rules = {x["alert"]: x for g in render(chart, values).one("PrometheusRule")["spec"]["groups"] for x in g["rules"]}
    assert rules["MeshblockVolumesDegraded"]["for"] == "30m"
    assert rules["MeshblockNodeDown"]["for"] == "5m"
    assert rules["MeshblockPoolAlmostFull"]["expr"].endswith("> 0.9")


@pytest.mark.parametrize("values, message", [
    ({"metrics": {"dashboards": {"enabled": True}}}, "metrics.dashboards.enabled needs metrics.enabled"),
    ({"metrics": {"prometheusRule": {"enabled": True}}}, "metrics.prometheusRule.enabled needs metrics.enabled"),
])
def test_monitoring_objects_need_metrics(chart, values, message):
    with pytest.raises(helm.HelmRenderError) as ei:
        render(chart, values)
    assert message in str(ei.value)


@pytest.mark.parametrize("bad, where", [
    ({"metrics": {"prometheusRule": {"volumeDegradedFor": "ten minutes"}}}, "volumeDegradedFor"),
    ({"metrics": {"prometheusRule": {"poolUsedRatio": 85}}}, "poolUsedRatio"),
    ({"metrics": {"dashboards": {"label": "not a label"}}}, "label"),
])
def test_values_schema_rejects_bad_monitoring_values(chart, bad, where):
    with pytest.raises(helm.HelmValuesError) as ei:
        chart.validate_schema(bad)
    assert where in str(ei.value)


def test_values_yaml_states_the_monitoring_defaults(chart):
    m = chart.values["metrics"]
    assert m["dashboards"]["enabled"] is False and m["prometheusRule"]["enabled"] is False
    assert (m["dashboards"]["label"], m["dashboards"]["labelValue"]) == ("grafana_dashboard", "1")
    assert m["prometheusRule"]["poolUsedRatio"] == 0.85
    assert ON["metrics"]["enabled"]
