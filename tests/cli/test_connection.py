"""How the admin commands find and reach the controller: endpoint resolution, TLS, errors."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from tests.support.pki import make_pki

from meshblock.cli.client import resolve_endpoint
from meshblock.proto.meshblock.v1 import admin_pb2_grpc as pb_grpc
from tests.cli.conftest import invoke
from tests.cli.fake_controller import ClusterServicer, FakeController, Server


@pytest.fixture
def home():
    d = Path(tempfile.mkdtemp(prefix="mbhome-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_default_endpoint_is_the_socket_in_meshblock_home(home):
    s = Server(directory=home).start()
    try:
        s.fc.add_volume("db")
        r = invoke("volume", "list", "-o", "json", env={"MESHBLOCK_HOME": str(home)})
        assert r.exit_code == 0, r.output
        assert [v["name"] for v in json.loads(r.stdout)] == ["db"]
    finally:
        s.stop()


def test_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_endpoint() == f"unix:{tmp_path}/.meshblock/controller.sock"
    monkeypatch.setenv("MESHBLOCK_HOME", "/srv/mb")
    assert resolve_endpoint() == "unix:/srv/mb/controller.sock"
    monkeypatch.setenv("MESHBLOCK_ENDPOINT", "ctl.example:7443")
    assert resolve_endpoint() == "ctl.example:7443"
    assert resolve_endpoint("unix:/run/mb.sock") == "unix:/run/mb.sock"
    assert resolve_endpoint("/run/mb.sock") == "unix:/run/mb.sock"


def test_env_endpoint_and_flag_precedence(server):
    r = invoke("cluster", "status", "-o", "json", env={"MESHBLOCK_ENDPOINT": server.endpoint})
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["leader"] == "controller-0"
    # --endpoint wins over the environment
    r = invoke("cluster", "status", "--endpoint", server.endpoint,
               env={"MESHBLOCK_ENDPOINT": "unix:/nonexistent"})
    assert r.exit_code == 0, r.output


def test_unreachable_local_controller_suggests_meshblock_up(home):
    r = invoke("volume", "list", env={"MESHBLOCK_HOME": str(home)})
    assert r.exit_code == 1
    line = r.stderr.strip()
    assert "\n" not in line
    socket_path = home / "controller.sock"
    assert line.startswith(f"Error: cannot reach the controller at unix:{socket_path} (no such socket)")
    assert "meshblock up" in line


def test_stale_socket_says_nothing_listens(home):
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(home / "controller.sock"))  # bound, never listening
    try:
        r = invoke("node", "list", env={"MESHBLOCK_HOME": str(home)})
    finally:
        sock.close()
    assert r.exit_code == 1
    assert "nothing is listening on it" in r.stderr
    assert "meshblock up" in r.stderr


@pytest.mark.parametrize("env", [{}, {"MESHBLOCK_ENDPOINT": "127.0.0.1:50051"}])
def test_plain_tcp_is_refused(env):
    args = ["volume", "list"] + ([] if env else ["--endpoint", "127.0.0.1:50051"])
    r = invoke(*args, env=env)
    assert r.exit_code == 2
    assert "refusing to connect to 127.0.0.1:50051 without TLS" in r.stderr
    assert "--ca" in r.stderr


def test_cert_without_key_is_a_usage_error(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    r = invoke("volume", "list", "--endpoint", "ctl:7443", "--cert", str(tmp_path / "c.pem"))
    assert r.exit_code == 2
    assert "--cert and --key must be given together" in r.stderr


def test_bad_endpoint_is_a_usage_error():
    r = invoke("volume", "list", "--endpoint", "not an endpoint")
    assert r.exit_code == 2
    assert "is neither unix:/path nor host:port" in r.stderr


def test_missing_ca_file_is_reported(tmp_path):
    r = invoke("volume", "list", "--endpoint", "ctl:7443", "--ca", str(tmp_path / "missing.pem"))
    assert r.exit_code == 1
    assert "cannot read the CA certificate" in r.stderr


# -- TLS against a real TLS server ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_server(pki):
    key_pair = ((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())
    creds = grpc.ssl_server_credentials([key_pair],
                                        root_certificates=(pki / "ca.pem").read_bytes(),
                                        require_client_auth=True)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    pb_grpc.add_ClusterServiceServicer_to_server(ClusterServicer(FakeController()), server)
    port = server.add_secure_port("localhost:0", creds)
    server.start()
    yield f"localhost:{port}"
    server.stop(0).wait(5)


def test_mutual_tls(pki, tls_server):
    r = invoke("cluster", "status", "-o", "json", "--endpoint", tls_server, "--ca", str(pki / "ca.pem"),
               "--cert", str(pki / "client.pem"), "--key", str(pki / "client.key"))
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["leader"] == "controller-0"

    env = {"MESHBLOCK_ENDPOINT": tls_server, "MESHBLOCK_CA": str(pki / "ca.pem"),
           "MESHBLOCK_CERT": str(pki / "client.pem"), "MESHBLOCK_KEY": str(pki / "client.key")}
    r = invoke("cluster", "status", env=env)
    assert r.exit_code == 0, r.output
    assert "controller-0" in r.stdout


def test_tls_without_client_certificate_is_rejected(pki, tls_server):
    r = invoke("cluster", "status", "--endpoint", tls_server, "--ca", str(pki / "ca.pem"))
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: cannot reach the controller at {tls_server}")
    assert "give --cert and --key" in r.stderr
    assert "meshblock up" not in r.stderr


def test_unreachable_tcp_controller_names_the_endpoint(pki):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = invoke("cluster", "status", "--endpoint", f"127.0.0.1:{port}", "--ca", str(pki / "ca.pem"))
    assert r.exit_code == 1
    assert r.stderr.startswith(f"Error: cannot reach the controller at 127.0.0.1:{port}: ")
    assert "Connection refused" in r.stderr
    assert "--cert" not in r.stderr and r.stderr.count("\n") == 1
