"""The Helm chart: it renders with every documented set of values, what it renders is valid
Kubernetes, and the pieces agree with each other and with the meshblock command they run."""

from __future__ import annotations

import pytest

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) is not installed")
kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (test extra) is not installed")

from tests.charts.chartkit import (  # noqa: E402
    CHART_DIR, DRIVER, NAMESPACE, RELEASE, VARIANTS, container, env_value, flag, flags, mount_at,
    pod_spec, render, volume,
)

# Kubernetes versions the manifests are validated against: the chart's floor (Chart.yaml kubeVersion) and
# the newest one kubernetes-validate bundles here.
KUBE_VERSIONS = ["1.31", "1.37"]
# Kinds from CRDs, which the bundled core schemas cannot describe. ServiceMonitor and PrometheusRule (Prometheus
# Operator) are not validated here (test_chart_monitoring.py checks the rule's shape); VolumeSnapshotClass is
# checked against the snapshot API's fields in its own test.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule", "VolumeSnapshotClass", "VolumeGroupSnapshotClass"}


@pytest.fixture(scope="module")
def rendered(chart):
    return {name: render(chart, values) for name, values in VARIANTS.items()}


# -- rendering, schemas, lint ------------------------------------------------------------------------------

def test_chart_metadata(chart):
    assert chart.name == "meshblock"
    assert chart.metadata["kubeVersion"].startswith(">=1.31")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_documented_values_pass_the_values_schema(chart, variant):
    chart.validate_schema(VARIANTS[variant])


@pytest.mark.parametrize("bad, where", [
    ({"store": {"engine": "postgres"}}, "engine"),
    ({"controller": {"replicas": 0}}, "replicas"),
    ({"agent": {"cpumask": "all"}}, "cpumask"),
    ({"storageClasses": [{"name": "x", "parameters": {"replicas": "three"}}]}, "replicas"),
    ({"storageClasses": [{"name": "x", "parameters": {"csi.storage.k8s.io/fstype": "btrfs"}}]}, "fstype"),
    ({"storageClasses": [{"name": "x", "parameters": {"replicas": "6"}}]}, "replicas"),
    ({"storageClasses": [{"name": "x", "parameters": {"copies": "2"}}]}, "copies"),
])
def test_values_schema_rejects_bad_values(chart, bad, where):
    with pytest.raises(helm.HelmValuesError) as ei:
        chart.validate_schema(bad)
    assert where in str(ei.value)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("kube", KUBE_VERSIONS)
def test_every_manifest_is_valid_kubernetes(rendered, variant, kube):
    r = rendered[variant]
    assert r.objects, "nothing rendered"
    skipped, problems = set(), []
    for obj, source in zip(r.objects, r.sources):
        try:
            kv.validate(obj, kube, strict=True)
        except kv.SchemaNotFoundError:
            if obj["kind"] not in CRD_KINDS:
                problems.append(f"{source}: no core schema for {obj['apiVersion']} {obj['kind']}")
            skipped.add(obj["kind"])
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            problems.append(f"{source}: {obj['kind']}/{obj['metadata']['name']}: {path}: {e.message[:300]}")
    assert not problems, f"not valid for Kubernetes {kube}:\n" + "\n".join(problems)
    expected = ({"VolumeSnapshotClass"} | ({"ServiceMonitor"} if variant == "service-monitor" else set())
                | ({"VolumeGroupSnapshotClass"} if variant == "group-snapshots" else set())
                | ({"PrometheusRule"} if variant == "dashboards-and-alerts" else set()))
    assert skipped == expected


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_objects_are_unique_and_namespaced_in_the_release(rendered, variant):
    seen = set()
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "CSIDriver", "StorageClass", "VolumeSnapshotClass",
                      "VolumeGroupSnapshotClass"}
    for obj in rendered[variant].objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, f"{key} rendered twice"
        seen.add(key)
        if obj["kind"] in cluster_scoped:
            assert "namespace" not in obj["metadata"], key
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE, key


@pytest.mark.parametrize("variant", ["default", "etcd-3-controllers", "service-monitor", "dashboards-and-alerts"])
def test_chart_lints_clean(variant):
    report = helm.lint(str(CHART_DIR), VARIANTS[variant], strict=True, namespace=NAMESPACE,
                       kube_version="v1.37.0")
    assert report["errors"] == []
    worse_than_info = [m for m in report["messages"] if m["severity"] >= 2]
    assert worse_than_info == []


def test_lint_reports_values_the_schema_rejects():
    report = helm.lint(str(CHART_DIR), {"store": {"engine": "postgres"}}, strict=True)
    assert any(m["severity"] == 3 and "engine" in m["error"] for m in report["messages"])


# -- values that cannot work fail to render, saying why ----------------------------------------------------

def test_sqlite_with_several_controllers_fails_with_the_reason(chart):
    with pytest.raises(helm.HelmRenderError) as ei:
        render(chart, {"controller": {"replicas": 3}})
    msg = str(ei.value)
    assert "controller.replicas=3 needs store.engine=etcd" in msg
    assert "SQLite store serves exactly one controller" in msg


@pytest.mark.parametrize("values, message", [
    ({"store": {"engine": "etcd"}}, "store.engine=etcd needs store.etcd.endpoints"),
    ({"tls": {"serverSecretName": "only-server"}}, "tls.clientSecretName is not"),
    ({"tls": {"clientSecretName": "only-client"}}, "tls.serverSecretName is not"),
    ({"metrics": {"serviceMonitor": {"enabled": True}}}, "metrics.serviceMonitor.enabled needs metrics.enabled"),
])
def test_incomplete_values_fail_with_the_reason(chart, values, message):
    with pytest.raises(helm.HelmRenderError) as ei:
        render(chart, values)
    assert message in str(ei.value)


# -- the controller ----------------------------------------------------------------------------------------

def test_sqlite_controller_is_one_statefulset_pod_with_its_database_on_a_claim(rendered):
    from meshblock.store.sqlite import sqlite_path

    r = rendered["default"]
    sts = r.workload("controller")
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 1
    assert r.named("Service", sts["spec"]["serviceName"])["spec"]["clusterIP"] == "None"
    c = container(sts, "controller")
    db = sqlite_path(flag(c, "--store"))
    _, vol = mount_at(sts, c, db)
    assert "persistentVolumeClaim" in vol
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"


def test_sqlite_without_persistence_keeps_the_database_in_an_emptydir(rendered):
    from meshblock.store.sqlite import sqlite_path

    sts = rendered["sqlite-ephemeral"].workload("controller")
    assert "volumeClaimTemplates" not in sts["spec"]
    c = container(sts, "controller")
    _, vol = mount_at(sts, c, sqlite_path(flag(c, "--store")))
    assert "emptyDir" in vol


def test_etcd_controllers_are_a_deployment_of_three_on_the_given_endpoints(rendered):
    from meshblock.store.etcd import parse_etcd_url

    r = rendered["etcd-3-controllers"]
    dep = r.workload("controller")
    assert dep["kind"] == "Deployment" and dep["spec"]["replicas"] == 3
    assert not [o for o in r.of_kind("StatefulSet")]
    c = container(dep, "controller")
    cfg = parse_etcd_url(flag(c, "--store"))
    endpoints = VARIANTS["etcd-3-controllers"]["store"]["etcd"]["endpoints"]
    assert [f"{h}:{p}" for h, p in cfg.endpoints] == endpoints
    assert cfg.prefix == "/mb-prod"
    # each controller campaigns under its own pod name
    assert flag(c, "--identity") == "$(POD_NAME)"
    assert env_value(c, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    anti = pod_spec(dep)["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


@pytest.mark.parametrize("variant", ["default", "etcd-3-controllers"])
def test_admin_service_reaches_the_controller_api_port(rendered, variant):
    r = rendered[variant]
    ctl = r.workload("controller")
    svc = r.named("Service", f"{RELEASE}-meshblock-controller")
    labels = ctl["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    port = svc["spec"]["ports"][0]
    c = container(ctl, "controller")
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert named[port["targetPort"]] == port["port"]
    assert flag(c, "--listen").endswith(f":{port['port']}")
    # only the leader answers the readiness probe, so the Service only sends clients to it
    assert c["readinessProbe"]["exec"]["command"][:3] == ["meshblock", "cluster", "status"]
    assert env_value(c, "MESHBLOCK_ENDPOINT")["value"] == f"localhost:{port['port']}"


def test_controller_runs_unprivileged_without_an_api_token(rendered):
    ctl = rendered["default"].workload("controller")
    spec = pod_spec(ctl)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    c = container(ctl, "controller")
    assert c["securityContext"].get("privileged", False) is False
    assert c["securityContext"]["allowPrivilegeEscalation"] is False


# -- TLS ---------------------------------------------------------------------------------------------------

def _secret_for(workload, c, path):
    _, vol = mount_at(workload, c, path)
    return vol["secret"]["secretName"], path.rsplit("/", 1)[1]


@pytest.mark.parametrize("variant", ["default", "tls-from-secrets"])
def test_controller_and_clients_use_the_same_pki(rendered, variant):
    r = rendered[variant]
    ctl = r.workload("controller")
    c = container(ctl, "controller")
    server = {f: _secret_for(ctl, c, flag(c, f)) for f in ("--tls-cert", "--tls-key", "--tls-client-ca")}
    if variant == "default":
        server_secret, client_secret = f"{RELEASE}-meshblock-controller-tls", f"{RELEASE}-meshblock-client-tls"
    else:
        server_secret, client_secret = "mb-server-cert", "mb-client-cert"
    assert server == {"--tls-cert": (server_secret, "tls.crt"), "--tls-key": (server_secret, "tls.key"),
                      "--tls-client-ca": (server_secret, "ca.crt")}
    # every client of the admin API: both CSI plugins, and the controller's own readiness probe
    clients = [(r.workload("csi-controller"), "csi-plugin"), (r.workload("csi-node"), "csi-plugin")]
    for wl, name in clients:
        cc = container(wl, name)
        got = {f: _secret_for(wl, cc, flag(cc, f)) for f in ("--ca", "--cert", "--key")}
        assert got == {"--ca": (client_secret, "ca.crt"), "--cert": (client_secret, "tls.crt"),
                       "--key": (client_secret, "tls.key")}, wl["metadata"]["name"]
    probe = {e: _secret_for(ctl, c, env_value(c, e)["value"]) for e in ("MESHBLOCK_CA", "MESHBLOCK_CERT",
                                                                        "MESHBLOCK_KEY")}
    assert probe == {"MESHBLOCK_CA": (client_secret, "ca.crt"), "MESHBLOCK_CERT": (client_secret, "tls.crt"),
                     "MESHBLOCK_KEY": (client_secret, "tls.key")}
    secrets = {s["metadata"]["name"]: s for s in r.of_kind("Secret")}
    if variant == "default":
        assert set(secrets) == {server_secret, client_secret}
        for s in secrets.values():
            assert s["type"] == "kubernetes.io/tls" and set(s["data"]) == {"tls.crt", "tls.key", "ca.crt"}
        assert secrets[server_secret]["data"]["ca.crt"] == secrets[client_secret]["data"]["ca.crt"]
    else:
        assert secrets == {}, "named Secrets must not be generated as well"


# -- the agents --------------------------------------------------------------------------------------------

def test_agents_run_privileged_on_the_host_network_of_labelled_nodes(rendered):
    r = rendered["default"]
    ds = r.workload("agent")
    spec = pod_spec(ds)
    assert ds["kind"] == "DaemonSet"
    assert spec["nodeSelector"] == {"meshblock.io/storage-node": "true"}
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    c = container(ds, "agent")
    assert c["securityContext"]["privileged"] is True
    assert volume(ds, "dev")["hostPath"]["path"] == "/dev"
    _, data = mount_at(ds, c, flag(c, "--data-dir") + "/node-id")
    assert data["hostPath"]["path"] == "/var/lib/meshblock"


def test_custom_node_selector_and_labels_reach_the_agents_only(rendered):
    r = rendered["custom-node-selector"]
    assert pod_spec(r.workload("agent"))["nodeSelector"] == {"storage.example.com/tier": "nvme"}
    assert pod_spec(r.workload("csi-node"))["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert sorted(flags(container(r.workload("agent"), "agent"), "--label")) == ["rack=r7", "zone=a"]
    assert "storage.example.com/tier=nvme" in r.notes


def test_agent_exports_on_the_node_ip_and_registers_with_the_admin_service(rendered):
    r = rendered["default"]
    ds = r.workload("agent")
    c = container(ds, "agent")
    assert flag(c, "--nvmf-address") == "$(HOST_IP)"
    assert env_value(c, "HOST_IP")["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    assert flag(c, "--name") == "$(NODE_NAME)"
    assert env_value(c, "NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    svc = r.named("Service", f"{RELEASE}-meshblock-controller")
    address = f"{svc['metadata']['name']}.{NAMESPACE}.svc:{svc['spec']['ports'][0]['port']}"
    assert flag(c, "--controller") == address
    for wl in (r.workload("csi-controller"), r.workload("csi-node")):
        assert flag(container(wl, "csi-plugin"), "--admin-endpoint") == address
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    # metrics: where the readiness probe asks /readyz (the metrics themselves are served there too)
    assert ports == {"api": 7444, "nvmf": 4420, "nvmf-head": 4421, "metrics": 9502}
    assert flag(c, "--nvmf-port") == "4420"
    # the agent's API is reached across nodes over mutual TLS, with the client certificate that names
    # the shared agent name the controller checks
    assert flag(c, "--advertise") == "$(HOST_IP):7444"
    assert "0.0.0.0:7444" in flag(c, "--listen").split(",")
    assert flag(c, "--tls-cert").startswith("/etc/meshblock/client-tls/")
    assert flag(container(r.workload("controller"), "controller"), "--agent-tls-name") == "meshblock-agent"


def test_hugepages_pool_device_and_polling(rendered):
    ds = rendered["hugepages-and-device"].workload("agent")
    c = container(ds, "agent")
    res = c["resources"]
    assert res["limits"]["hugepages-2Mi"] == res["requests"]["hugepages-2Mi"] == "1Gi"
    assert res["limits"]["memory"] == "3Gi"       # the other defaults stay
    _, vol = mount_at(ds, c, "/dev/hugepages/x")
    assert vol["emptyDir"]["medium"] == "HugePages-2Mi"
    assert flag(c, "--pool-device") == "/dev/disk/by-id/nvme-pool0"
    assert flag(c, "--polling") == "" and flag(c, "--interrupt-mode") is None
    assert (flag(c, "--cpumask"), flag(c, "--head-cpumask")) == ("0x3", "0xc")
    default = rendered["default"].workload("agent")
    dc = container(default, "agent")
    assert "hugepages-2Mi" not in str(dc["resources"]) and flag(dc, "--pool-device") is None
    assert flag(dc, "--interrupt-mode") == ""


# -- the commands parse as the meshblock CLI defines them ---------------------------------------------------

FAKE_ENV = {"POD_NAME": "mb-meshblock-controller-0", "NODE_NAME": "node-a", "HOST_IP": "10.0.0.7",
            "NAMESPACE": NAMESPACE}


def _parse(command: str, args: list[str]):
    import click

    from meshblock.cli.main import cli
    from tests.charts.chartkit import expand

    cmd = cli.get_command(click.Context(cli), command)
    if cmd is None:
        pytest.skip(f"`meshblock {command}` is not in this source tree yet")
    try:
        return cmd.make_context(command, expand(args, FAKE_ENV)).params
    except click.UsageError as e:
        pytest.fail(f"`meshblock {command}` rejects the chart's arguments: {e.format_message()}")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_controller_and_agent_arguments_parse_with_the_meshblock_command(rendered, variant):
    r = rendered[variant]
    c = container(r.workload("controller"), "controller")
    assert c["command"] == ["meshblock"] and c["args"][0] == "controller"
    p = _parse("controller", c["args"][1:])
    assert p["tls_cert"] and p["tls_key"] and p["tls_client_ca"], "a TCP listener needs all three TLS files"
    assert (p["metrics_port"] != 0) == bool(VARIANTS[variant].get("metrics", {}).get("enabled"))
    assert p["head_lease"] is True and p["node_timeout"] == 3
    a = container(r.workload("agent"), "agent")
    assert a["command"] == ["meshblock"] and a["args"][0] == "agent"
    p = _parse("agent", a["args"][1:])
    assert p["nvmf_address"] == "10.0.0.7" and p["name"] == "node-a"
    assert p["pool_size"] == 64 << 30


@pytest.mark.parametrize("component, role", [("csi-controller", "--controller"), ("csi-node", "--node")])
def test_csi_plugin_arguments_parse_with_the_meshblock_command(rendered, component, role):
    c = container(rendered["default"].workload(component), "csi-plugin")
    assert c["command"] == ["meshblock"] and c["args"][0] == "csi" and role in c["args"]
    _parse("csi", c["args"][1:])


# -- CSI ---------------------------------------------------------------------------------------------------

def _socket_path(endpoint: str) -> str:
    assert endpoint.startswith("unix://"), endpoint
    return endpoint[len("unix://"):]


@pytest.mark.parametrize("variant", ["default", "kubelet-elsewhere"])
def test_node_plugin_socket_is_where_the_registrar_tells_kubelet(rendered, variant):
    r = rendered[variant]
    ds = r.workload("csi-node")
    kubelet = r.values.get("csi", {}).get("kubeletDir", "/var/lib/kubelet")
    plugin = container(ds, "csi-plugin")
    sock = _socket_path(flag(plugin, "--endpoint"))
    m, vol = mount_at(ds, plugin, sock)
    host_sock = vol["hostPath"]["path"] + sock[len(m["mountPath"].rstrip("/")):]
    assert host_sock == f"{kubelet}/plugins/{DRIVER}/csi.sock"
    reg = container(ds, "node-driver-registrar")
    assert flag(reg, "--kubelet-registration-path") == host_sock
    rm, rvol = mount_at(ds, reg, flag(reg, "--csi-address"))
    assert rvol["hostPath"]["path"] + flag(reg, "--csi-address")[len(rm["mountPath"]):] == host_sock
    _, regdir = mount_at(ds, reg, "/registration/x")
    assert regdir["hostPath"]["path"] == f"{kubelet}/plugins_registry"
    probe = container(ds, "liveness-probe")
    pm, pvol = mount_at(ds, probe, flag(probe, "--csi-address"))
    assert pvol["hostPath"]["path"] + flag(probe, "--csi-address")[len(pm["mountPath"]):] == host_sock
    # the pods' volumes are mounted under kubelet's directory, and must propagate back to the host
    km, kvol = mount_at(ds, plugin, f"{kubelet}/pods/x")
    assert kvol["hostPath"]["path"] == kubelet and km["mountPropagation"] == "Bidirectional"


def test_node_plugin_is_privileged_with_the_host_paths_nvme_and_iscsi_need(rendered):
    ds = rendered["default"].workload("csi-node")
    spec = pod_spec(ds)
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    plugin = container(ds, "csi-plugin")
    assert plugin["securityContext"]["privileged"] is True
    # the node's open-iscsi: its initiator name, node records and their lock are the host's
    for path in ("/dev", "/sys", "/run/udev", "/lib/modules", "/etc/nvme", "/etc/iscsi", "/run/lock/iscsi"):
        _, vol = mount_at(ds, plugin, path + "/x")
        assert vol["hostPath"]["path"] == path, path
    assert flag(plugin, "--node-id") == "$(NODE_NAME)"
    assert env_value(plugin, "NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    # liveness endpoints on the host network are the ports the probes ask
    ports = {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
    assert flag(container(ds, "liveness-probe"), "--health-port") == str(ports["healthz"])
    assert flag(container(ds, "node-driver-registrar"), "--http-endpoint") == f":{ports['registrar']}"


def test_controller_sidecars_share_the_plugin_socket(rendered):
    dep = rendered["default"].workload("csi-controller")
    plugin = container(dep, "csi-plugin")
    sock = _socket_path(flag(plugin, "--endpoint"))
    _, vol = mount_at(dep, plugin, sock)
    assert "emptyDir" in vol
    names = [c["name"] for c in pod_spec(dep)["containers"]]
    assert names == ["csi-plugin", "csi-provisioner", "csi-attacher", "csi-snapshotter", "csi-resizer",
                     "liveness-probe"]
    for name in names[1:]:
        c = container(dep, name)
        assert flag(c, "--csi-address") == sock, name
        assert mount_at(dep, c, sock)[1] == vol, name
        if name != "liveness-probe":
            assert flag(c, "--leader-election") == "", name
    prov = container(dep, "csi-provisioner")
    assert flag(prov, "--feature-gates") == "Topology=true"
    assert flag(prov, "--extra-create-metadata") == ""
    probe_port = plugin["livenessProbe"]["httpGet"]["port"]
    ports = {p["name"]: p["containerPort"] for p in plugin["ports"]}
    assert flag(container(dep, "liveness-probe"), "--health-port") == str(ports[probe_port])


def test_group_snapshots_flag_follows_the_value(rendered):
    on = container(rendered["group-snapshots"].workload("csi-controller"), "csi-snapshotter")
    off = container(rendered["default"].workload("csi-controller"), "csi-snapshotter")
    assert flag(on, "--feature-gates") == "CSIVolumeGroupSnapshot=true"
    assert flag(off, "--feature-gates") is None
    cls = rendered["group-snapshots"].one("VolumeGroupSnapshotClass")
    assert cls["apiVersion"] == "groupsnapshot.storage.k8s.io/v1beta2"
    assert (cls["metadata"]["name"], cls["driver"], cls["deletionPolicy"]) == \
        ("meshblock-group-snapshots", DRIVER, "Delete")
    assert not rendered["default"].of_kind("VolumeGroupSnapshotClass")


def test_sidecar_images_are_pinned_upstream_releases(rendered):
    images = {c["name"]: c["image"] for wl in (rendered["default"].workload("csi-controller"),
                                               rendered["default"].workload("csi-node"))
              for c in pod_spec(wl)["containers"] if c["name"] != "csi-plugin"}
    for name, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo.startswith("registry.k8s.io/sig-storage/"), name
        assert tag.startswith("v") and tag.count(".") == 2 and tag != "canary", name


def test_csi_driver_object(rendered):
    d = rendered["default"].one("CSIDriver")
    assert d["metadata"]["name"] == DRIVER
    assert d["spec"] == {"attachRequired": True, "podInfoOnMount": False, "volumeLifecycleModes": ["Persistent"],
                         "fsGroupPolicy": "File"}


@pytest.mark.parametrize("driver", [DRIVER, "blocks.example.org"])
def test_driver_name_agrees_everywhere(chart, driver):
    r = render(chart, {"csi": {"driverName": driver}})
    assert r.one("CSIDriver")["metadata"]["name"] == driver
    classes = r.of_kind("StorageClass")
    assert len(classes) == 3 and {sc["provisioner"] for sc in classes} == {driver}
    assert r.one("VolumeSnapshotClass")["driver"] == driver
    reg = container(r.workload("csi-node"), "node-driver-registrar")
    assert flag(reg, "--kubelet-registration-path") == f"/var/lib/kubelet/plugins/{driver}/csi.sock"


def test_storage_classes(rendered):
    classes = {sc["metadata"]["name"]: sc for sc in rendered["default"].of_kind("StorageClass")}
    assert set(classes) == {"meshblock-ext4", "meshblock-xfs", "meshblock-block"}
    for sc in classes.values():
        assert sc["allowVolumeExpansion"] is True
        assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
        assert sc["reclaimPolicy"] == "Delete"
        assert sc["parameters"]["replicas"] == "3" and "spread" in sc["parameters"]
        assert "storageclass.kubernetes.io/is-default-class" not in sc["metadata"].get("annotations", {})
    assert classes["meshblock-ext4"]["parameters"]["csi.storage.k8s.io/fstype"] == "ext4"
    assert classes["meshblock-xfs"]["parameters"]["csi.storage.k8s.io/fstype"] == "xfs"
    assert "csi.storage.k8s.io/fstype" not in classes["meshblock-block"]["parameters"]


def test_custom_storage_class_values(chart):
    r = render(chart, {"storageClasses": [{"name": "zonal", "isDefault": True, "reclaimPolicy": "Retain",
                                           "parameters": {"replicas": "2", "spread": "zone"}}],
                       "storageClassDefaults": {"volumeBindingMode": "Immediate"}})
    sc = r.one("StorageClass")
    assert sc["parameters"] == {"replicas": "2", "spread": "zone"}
    assert sc["reclaimPolicy"] == "Retain" and sc["volumeBindingMode"] == "Immediate"
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"


def test_volume_snapshot_class_has_the_fields_the_snapshot_api_requires(rendered):
    vsc = rendered["default"].one("VolumeSnapshotClass")
    assert vsc["apiVersion"] == "snapshot.storage.k8s.io/v1"
    assert set(vsc) == {"apiVersion", "kind", "metadata", "driver", "deletionPolicy"}
    assert vsc["driver"] == DRIVER and vsc["deletionPolicy"] in ("Delete", "Retain")
    assert "namespace" not in vsc["metadata"]


def test_snapshot_class_can_be_left_out(chart):
    assert render(chart, {"snapshotClass": {"enabled": False}}).of_kind("VolumeSnapshotClass") == []


# -- RBAC --------------------------------------------------------------------------------------------------

def _granted(r, sa: str) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, scope) the ServiceAccount may use; scope "cluster" or the namespace."""
    out = set()
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for b in r.of_kind(kind):
            if not any(s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == NAMESPACE
                       for s in b["subjects"]):
                continue
            role = r.named(b["roleRef"]["kind"], b["roleRef"]["name"])
            assert role is not None, f"{kind} {b['metadata']['name']} refers to a role that is not rendered"
            scope = "cluster" if kind == "ClusterRoleBinding" else b["metadata"]["namespace"]
            for rule in role["rules"]:
                for g in rule["apiGroups"]:
                    for res in rule["resources"]:
                        for v in rule["verbs"]:
                            out.add((g, res, v, scope))
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_service_account_is_rendered_and_bound_where_it_gets_a_token(rendered, variant):
    r = rendered[variant]
    for wl in r.workloads():
        spec = pod_spec(wl)
        sa_name = spec.get("serviceAccountName")
        assert sa_name, f"{wl['metadata']['name']} runs as the namespace's default ServiceAccount"
        sa = r.named("ServiceAccount", sa_name)
        assert sa is not None, f"{wl['metadata']['name']} uses ServiceAccount {sa_name}, which is not rendered"
        if spec.get("automountServiceAccountToken", sa.get("automountServiceAccountToken", True)):
            assert _granted(r, sa_name), f"ServiceAccount {sa_name} gets a token but no permission"
        else:
            assert sa.get("automountServiceAccountToken") is False


SIDECAR_NEEDS = {
    "provisioner": [("", "persistentvolumes", "create"), ("", "persistentvolumes", "delete"),
                    ("", "persistentvolumeclaims", "update"), ("storage.k8s.io", "storageclasses", "watch"),
                    ("storage.k8s.io", "csinodes", "get"), ("", "nodes", "get"), ("", "events", "create"),
                    ("snapshot.storage.k8s.io", "volumesnapshotcontents", "get")],
    "attacher": [("", "persistentvolumes", "patch"), ("storage.k8s.io", "volumeattachments", "patch"),
                 ("storage.k8s.io", "volumeattachments/status", "patch")],
    "snapshotter": [("snapshot.storage.k8s.io", "volumesnapshotclasses", "get"),
                    ("snapshot.storage.k8s.io", "volumesnapshotcontents", "update"),
                    ("snapshot.storage.k8s.io", "volumesnapshotcontents/status", "patch"),
                    ("groupsnapshot.storage.k8s.io", "volumegroupsnapshotcontents", "update")],
    "resizer": [("", "persistentvolumeclaims/status", "patch"), ("", "persistentvolumes", "patch"),
                ("", "pods", "list"), ("", "events", "create")],
}


@pytest.mark.parametrize("sidecar", sorted(SIDECAR_NEEDS))
def test_csi_controller_service_account_has_what_each_sidecar_needs(rendered, sidecar):
    r = rendered["default"]
    sa = pod_spec(r.workload("csi-controller"))["serviceAccountName"]
    granted = _granted(r, sa)
    for g, res, verb in SIDECAR_NEEDS[sidecar]:
        assert (g, res, verb, "cluster") in granted, (sidecar, g, res, verb)
    # leader election: a Lease in the release namespace
    for verb in ("get", "create", "update"):
        assert ("coordination.k8s.io", "leases", verb, NAMESPACE) in granted
    assert not any(v == "*" or res == "*" for _, res, v, _ in granted), "no wildcard permissions"


# -- metrics -----------------------------------------------------------------------------------------------

def test_service_monitor_selects_the_metrics_services(rendered):
    r = rendered["service-monitor"]
    sm = r.one("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    selected = [s for s in r.of_kind("Service")
                if sm["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in selected} == {"controller", "agent"}
    port_names = {e["port"] for e in sm["spec"]["endpoints"]}
    for svc in selected:
        component = svc["metadata"]["labels"]["app.kubernetes.io/component"]
        wl = r.workload(component)
        assert svc["spec"]["selector"].items() <= wl["spec"]["template"]["metadata"]["labels"].items()
        (port,) = [p for p in svc["spec"]["ports"] if p["name"] in port_names]
        c = container(wl, component)
        named = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert named[port["targetPort"]] == port["port"] == int(flag(c, "--metrics-port"))
        # Prometheus scrapes the pod's address: the process must serve there, not on loopback
        assert flag(c, "--metrics-address") == "$(POD_IP)"
        assert env_value(c, "POD_IP")["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"


def test_no_metrics_objects_by_default(rendered):
    r = rendered["default"]
    assert r.of_kind("ServiceMonitor") == []
    assert not [s for s in r.of_kind("Service") if "metrics" in s["metadata"]["name"]]
    assert flag(container(r.workload("controller"), "controller"), "--metrics-port") is None


def test_notes_tell_how_to_label_nodes_and_reach_the_api(rendered):
    notes = rendered["default"].notes
    assert "kubectl label node <node> meshblock.io/storage-node=true" in notes
    assert f"{RELEASE}-meshblock-controller.{NAMESPACE}.svc:9500" in notes
    assert "must contain SPDK" in notes
    ha = rendered["etcd-3-controllers"].notes
    assert "deployment/mb-meshblock-controller" in ha and "3 x Deployment" in ha


def test_values_documented_in_values_yaml_are_the_defaults(chart):
    """values.yaml is what users read; the defaults the tests rely on must be the ones it states."""
    v = chart.values
    assert v["store"]["engine"] == "sqlite" and v["controller"]["replicas"] == 1
    assert v["agent"]["nodeSelector"] == {"meshblock.io/storage-node": "true"}
    assert v["csi"]["driverName"] == DRIVER


def test_head_lease_can_be_turned_off(chart):
    r = render(chart, {"controller": {"headLease": False}})
    assert _parse("controller", container(r.workload("controller"), "controller")["args"][1:])["head_lease"] is False
