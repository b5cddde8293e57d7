"""Rendering the Helm chart offline and finding things in what it renders."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "charts" / "meshblock"
RELEASE = "mb"
NAMESPACE = "storage"
DRIVER = "csi.meshblock.io"

# The documented variants of the values (besides the defaults): each must render and validate.
ETCD_ENDPOINTS = ["etcd-0.etcd.db.svc:2379", "etcd-1.etcd.db.svc:2379", "etcd-2.etcd.db.svc:2379"]
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "etcd-3-controllers": {"store": {"engine": "etcd", "etcd": {"endpoints": ETCD_ENDPOINTS, "prefix": "/mb-prod"}},
                           "controller": {"replicas": 3}},
    "tls-from-secrets": {"tls": {"serverSecretName": "mb-server-cert", "clientSecretName": "mb-client-cert"}},
    "service-monitor": {"metrics": {"enabled": True, "serviceMonitor": {"enabled": True,
                                                                         "labels": {"release": "prom"}}}},
    "dashboards-and-alerts": {"metrics": {"enabled": True,
                                          "dashboards": {"enabled": True, "annotations": {"grafana_folder": "Storage"}},
                                          "prometheusRule": {"enabled": True, "labels": {"release": "prom"}}}},
    # maps merge with the defaults: null drops the default label
    "custom-node-selector": {"agent": {"nodeSelector": {"storage.example.com/tier": "nvme",
                                                        "meshblock.io/storage-node": None},
                                       "labels": {"zone": "a", "rack": "r7"}}},
    "hugepages-and-device": {"agent": {"hugepages": {"enabled": True, "pageSize": "2Mi", "amount": "1Gi"},
                                       "pool": {"device": "/dev/disk/by-id/nvme-pool0"},
                                       "interruptMode": False, "cpumask": "0x3", "headCpumask": "0xc"}},
    "group-snapshots": {"csi": {"snapshotter": {"volumeGroupSnapshots": True}}},
    "kubelet-elsewhere": {"csi": {"kubeletDir": "/var/snap/microk8s/common/var/lib/kubelet"}},
    "sqlite-ephemeral": {"store": {"sqlite": {"persistence": {"enabled": False}}}},
    "no-readiness-gates": {"agent": {"readiness": {"enabled": False}, "podDisruptionBudget": {"enabled": False}}},
}


@dataclass
class Rendered:
    """The objects of one rendering, with the template each came from."""

    values: dict[str, Any]
    objects: list[dict[str, Any]]
    sources: list[str]
    notes: str = ""
    raw: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, component: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if component is None
                 or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
        assert len(found) == 1, f"expected one {kind} {component or ''}, found {[o['metadata']['name'] for o in found]}"
        return found[0]

    def named(self, kind: str, name: str) -> dict[str, Any] | None:
        for o in self.of_kind(kind):
            if o["metadata"]["name"] == name:
                return o
        return None

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")]

    def workload(self, component: str) -> dict[str, Any]:
        found = [o for o in self.workloads() if o["metadata"]["labels"]["app.kubernetes.io/component"] == component]
        assert len(found) == 1, f"expected one workload {component}, found {len(found)}"
        return found[0]


def render(chart: Any, values: dict[str, Any], namespace: str = NAMESPACE) -> Rendered:
    manifests = chart.render(values, name=RELEASE, namespace=namespace)
    objects, sources, notes = [], [], ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            objects.append(doc)
            sources.append(path)
    return Rendered(values=values, objects=objects, sources=sources, notes=notes, raw=manifests)


# -- pod specs -----------------------------------------------------------------------------------------------

def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    for c in pod_spec(workload)["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"{workload['metadata']['name']} has no container {name}")


def flag(c: dict[str, Any], name: str) -> str | None:
    """The value of --name=value (or a bare --name: "") in a container's args; None when absent."""
    for a in c.get("args", []):
        if a == name:
            return ""
        if a.startswith(name + "="):
            return a[len(name) + 1:]
    return None


def flags(c: dict[str, Any], name: str) -> list[str]:
    return [a[len(name) + 1:] for a in c.get("args", []) if a.startswith(name + "=")]


def volume(workload: dict[str, Any], name: str) -> dict[str, Any]:
    for v in pod_spec(workload).get("volumes", []):
        if v["name"] == name:
            return v
    raise AssertionError(f"{workload['metadata']['name']} has no volume {name}")


def mount_at(workload: dict[str, Any], c: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (volumeMount, volume) of a container that holds ``path`` (the deepest mount containing it)."""
    best = None
    for m in c.get("volumeMounts", []):
        mp = m["mountPath"].rstrip("/")
        inside = path == mp or path.startswith(mp + "/")
        if inside and (best is None or len(mp) > len(best["mountPath"].rstrip("/"))):
            best = m
    assert best is not None, f"container {c['name']}: nothing is mounted at {path}"
    if best.get("name") in [t.get("metadata", {}).get("name") for t in
                            workload["spec"].get("volumeClaimTemplates", [])]:
        return best, {"name": best["name"], "persistentVolumeClaim": {"claimName": best["name"]}}
    return best, volume(workload, best["name"])


def env_value(c: dict[str, Any], name: str) -> dict[str, Any]:
    for e in c.get("env", []):
        if e["name"] == name:
            return e
    raise AssertionError(f"container {c['name']} has no env {name}")


_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """Kubernetes' $(VAR) expansion of container args."""
    return [_VAR.sub(lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
