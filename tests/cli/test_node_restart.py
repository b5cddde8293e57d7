"""`meshblock node restart` refuses what it must not do before it stops anything (a real restart of a
local cluster is in tests/scenarios/test_local_cluster.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from meshblock.cli.main import cli
from meshblock.spdk.supervisor import pid_alive

REASON = "replica 1a2b3c4d of volume db is rebuilding (40%)"


class _NotReady(BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"not ready: {REASON}\n".encode() if self.path == "/readyz" else b""
        self.send_response(503 if self.path == "/readyz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def cluster(tmp_path):
    """A cluster.json whose node-1 is a stand-in process with a /readyz that says not ready."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _NotReady)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    node_dir = tmp_path / "nodes" / "node-1"
    node_dir.mkdir(parents=True)
    (tmp_path / "cluster.json").write_text(json.dumps({"nodes": [
        {"name": "controller", "pid": stand_in.pid, "data_dir": str(tmp_path / "controller"), "listen": "",
         "nvmf_address": "", "nvmf_port": 0, "metrics_url": ""},
        {"name": "node-1", "pid": stand_in.pid, "data_dir": str(node_dir), "listen": "", "nvmf_address": "127.0.0.11",
         "nvmf_port": 4420, "metrics_url": f"http://127.0.0.1:{httpd.server_port}/metrics"}]}))
    try:
        yield tmp_path, stand_in
    finally:
        stand_in.kill()
        stand_in.wait()
        httpd.shutdown()
        httpd.server_close()


def test_a_node_that_is_not_ready_is_refused_with_the_reason_and_left_running(cluster):
    home, stand_in = cluster
    r = CliRunner().invoke(cli, ["node", "restart", "node-1", "--home", str(home)])
    assert r.exit_code == 1
    msg = " ".join(r.stderr.split())
    assert f"node node-1 is not ready: {REASON}." in msg and "--force" in msg, msg
    assert pid_alive(stand_in.pid)


def test_unknown_nodes_and_homes_are_named(cluster, tmp_path):
    home, _ = cluster
    r = CliRunner().invoke(cli, ["node", "restart", "node-9", "--home", str(home)])
    assert r.exit_code == 1
    assert "no node 'node-9' in the local cluster" in r.stderr and "(its nodes: node-1)" in r.stderr
    r = CliRunner().invoke(cli, ["node", "restart", "controller", "--home", str(home)])
    assert r.exit_code == 1 and "no node 'controller'" in r.stderr
    r = CliRunner().invoke(cli, ["node", "restart", "node-1", "--home", str(tmp_path / "elsewhere")])
    assert r.exit_code == 1 and "no local cluster under" in r.stderr
