"""The certificates the chart generates work: a controller started with the rendered arguments and
Secrets serves mutual TLS to clients that name the controller Service, and the readiness probe the
chart renders succeeds against it."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

helm = pytest.importorskip("helm_python", reason="helm-python-sdk (test extra) is not installed")

import grpc  # noqa: E402

from meshblock.proto.meshblock.v1 import admin_pb2 as pb  # noqa: E402
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc  # noqa: E402
from tests.charts.chartkit import (  # noqa: E402
    CHART_DIR, NAMESPACE, RELEASE, container, expand, mount_at, render,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def default_render():
    with helm.Chart.load(str(CHART_DIR)) as chart:
        return render(chart, {})


def _materialize(r, workload, c, root):
    """Write the Secrets mounted into container ``c`` under ``root``; return {mount path: local dir}."""
    secrets = {s["metadata"]["name"]: s for s in r.of_kind("Secret")}
    where = {}
    for m in c["volumeMounts"]:
        _, vol = mount_at(workload, c, m["mountPath"] + "/x")
        if "secret" not in vol:
            continue
        d = root / m["name"]
        d.mkdir()
        for key, b64 in secrets[vol["secret"]["secretName"]]["data"].items():
            (d / key).write_bytes(base64.b64decode(b64))
        where[m["mountPath"]] = str(d)
    return where


def _relocate(text: str, where: dict[str, str]) -> str:
    for mount, local in where.items():
        text = text.replace(mount + "/", local + "/")
    return text


def _status(target: str, creds, name_override: str | None = None) -> pb.ClusterStatus:
    options = [("grpc.ssl_target_name_override", name_override)] if name_override else []
    with grpc.secure_channel(target, creds, options=options) as ch:
        return pb_grpc.ClusterServiceStub(ch).GetClusterStatus(pb.GetClusterStatusRequest(), timeout=5)


def test_generated_certificates_serve_mutual_tls_under_the_service_name(default_render, tmp_path):
    r = default_render
    ctl = r.workload("controller")
    c = container(ctl, "controller")
    where = _materialize(r, ctl, c, tmp_path)
    port = free_port()
    env = {"POD_NAME": "mb-meshblock-controller-0"}
    args = []
    for a in expand(c["args"], env)[1:]:
        if a.startswith("--store="):
            a = f"--store=sqlite:///{tmp_path / 'state.db'}"
        elif a.startswith("--listen="):
            a = f"--listen=127.0.0.1:{port}"
        args.append(_relocate(a, where))
    log = open(tmp_path / "controller.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "meshblock", "controller", *args], stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "MESHBLOCK_HOME": str(tmp_path)},
                            start_new_session=True)
    try:
        # the readiness probe exactly as rendered, with the pod's environment
        probe_env = {**os.environ, "MESHBLOCK_HOME": str(tmp_path)}
        for e in c["env"]:
            if "value" in e:
                probe_env[e["name"]] = _relocate(e["value"], where)
        probe_env["MESHBLOCK_ENDPOINT"] = probe_env["MESHBLOCK_ENDPOINT"].replace(":9500", f":{port}")
        command = c["readinessProbe"]["exec"]["command"]
        assert command[0] == "meshblock"
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run([sys.executable, "-m", "meshblock", *command[1:]], env=probe_env,
                                   capture_output=True, text=True, timeout=30, check=False)
            if probe.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert probe.returncode == 0, (probe.stderr, (tmp_path / "controller.log").read_text())
        assert '"leader"' in probe.stdout

        client = where["/etc/meshblock/client-tls"]
        ca, cert, key = (Path(client, f).read_bytes() for f in ("ca.crt", "tls.crt", "tls.key"))
        good = grpc.ssl_channel_credentials(ca, key, cert)
        target = f"127.0.0.1:{port}"
        service = f"{RELEASE}-meshblock-controller"
        # every name a client in the cluster may use for the Service verifies
        for name in (service, f"{service}.{NAMESPACE}", f"{service}.{NAMESPACE}.svc",
                     f"{service}.{NAMESPACE}.svc.cluster.local"):
            assert _status(target, good, name).leader == "mb-meshblock-controller-0"
        # another name does not, and a client without a certificate is refused
        with pytest.raises(grpc.RpcError) as ei:
            _status(target, good, "other.example.org")
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as ei:
            _status(target, grpc.ssl_channel_credentials(ca), service)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
