"""Rolling restarts and upgrades of the agents: the readiness probe, the DaemonSet's update strategy
and the PodDisruptionBudget (docs/operations.md, "Rolling restarts and upgrades")."""

from __future__ import annotations

import pytest

from tests.charts.chartkit import NAMESPACE, VARIANTS, container, flag, render


@pytest.fixture(scope="module")
def rendered(chart):
    return {name: render(chart, VARIANTS[name]) for name in ("default", "service-monitor", "no-readiness-gates")}


def test_agents_are_ready_only_when_their_readyz_says_so(rendered):
    r = rendered["default"]
    c = container(r.workload("agent"), "agent")
    probe = c["readinessProbe"]
    assert probe["httpGet"]["path"] == "/readyz"
    # the probe's port is the one the agent serves /readyz on, on the address kubelet reaches
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports[probe["httpGet"]["port"]] == int(flag(c, "--metrics-port")) == 9502
    assert flag(c, "--metrics-address") == "$(POD_IP)"
    # the agent waits up to 4 s for the controller's answer: the probe must wait longer
    assert probe["timeoutSeconds"] >= 5
    # a node that stops being ready says so at the next probe
    assert probe["failureThreshold"] == 1 and probe["periodSeconds"] == 5
    assert "livenessProbe" not in c, "a node that is not ready must not be restarted for it"


def test_the_daemonset_rolls_one_agent_at_a_time(rendered):
    ds = rendered["default"].workload("agent")
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}


def test_a_disruption_budget_lets_evictions_take_one_agent_at_a_time(rendered):
    r = rendered["default"]
    (pdb,) = r.of_kind("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1" and pdb["metadata"]["namespace"] == NAMESPACE
    assert pdb["spec"]["maxUnavailable"] == 1
    # it selects the agents, and only them
    labels = r.workload("agent")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    others = [w for w in r.workloads() if w["metadata"]["labels"]["app.kubernetes.io/component"] != "agent"]
    assert others and not any(pdb["spec"]["selector"]["matchLabels"].items()
                              <= w["spec"]["template"]["metadata"]["labels"].items() for w in others)


def test_metrics_and_readiness_share_the_agents_port(rendered):
    c = container(rendered["service-monitor"].workload("agent"), "agent")
    assert [p["name"] for p in c["ports"]].count("metrics") == 1
    assert c["args"].count(f"--metrics-port={flag(c, '--metrics-port')}") == 1
    assert c["readinessProbe"]["httpGet"]["port"] == "metrics"


def test_readiness_and_the_budget_can_be_turned_off(rendered, chart):
    r = rendered["no-readiness-gates"]
    c = container(r.workload("agent"), "agent")
    assert "readinessProbe" not in c and r.of_kind("PodDisruptionBudget") == []
    assert flag(c, "--metrics-port") is None     # nothing served on the port then
    r = render(chart, {"agent": {"maxUnavailable": 2, "podDisruptionBudget": {"maxUnavailable": 2}}})
    assert r.workload("agent")["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 2
    assert r.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 2


def test_readiness_values_are_documented_defaults(chart):
    a = chart.values["agent"]
    assert a["readiness"] == {"enabled": True, "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 1}
    assert a["maxUnavailable"] == 1 and a["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}
