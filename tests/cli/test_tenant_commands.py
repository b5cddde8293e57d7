"""`meshblock tenant|identity|audit` and tenancy through the other commands, against a real
controller (and one agent on the fake SPDK target): tokens with --token and MESHBLOCK_TOKEN, a
client certificate's subject over TCP, quota refusals and cross-tenant NOT_FOUND as users see them."""

from __future__ import annotations

import json
import socket

import click
import pytest
from click.testing import CliRunner, Result

from meshblock.cli import admin, tenants
from tests.support.backends import fake_backend
from tests.support.cluster import Cluster
from tests.support.pki import make_pki


@click.group()
def root() -> None:
    """The commands as `meshblock` registers them."""


for _group in (*admin.COMMANDS, tenants.tenant, tenants.identity, tenants.audit):
    root.add_command(_group)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def controller(tmp_path_factory, short_tmp):
    pki = make_pki(short_tmp)
    port = _free_port()
    c = Cluster(fake_backend(tmp_path_factory.mktemp("fakespdk-registry")), short_tmp, nodes=1,
                controller_listen=f"127.0.0.1:{port}",
                controller_args=("--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"),
                                 "--tls-client-ca", str(pki / "ca.pem")))
    try:
        await c.start()
        c.tcp = f"127.0.0.1:{port}"
        c.pki = pki
        yield c
    finally:
        await c.stop()


def run(c: Cluster, *args: str, token: str | None = None, env: dict | None = None, ok: bool = True) -> Result:
    argv = [*args, "--endpoint", c.controller.listen] + (["--token", token] if token else [])
    r = CliRunner().invoke(root, argv, env=env, prog_name="meshblock", catch_exceptions=False)
    assert (r.exit_code == 0) == ok, r.output
    return r


def token_of(r: Result) -> str:
    tok = r.output.strip().splitlines()[-1]
    assert tok.startswith("mbt_"), r.output
    return tok


async def test_tenants_quotas_and_audit_from_the_command_line(controller):
    c = controller
    root_tok = token_of(run(c, "identity", "create", "root", "--role", "admin"))
    run(c, "tenant", "create", "acme", "--max-volumes", "1", "--max-bytes", "64MiB", token=root_tok)
    run(c, "tenant", "create", "globex", token=root_tok)
    acme = token_of(run(c, "identity", "create", "acme-ops", "--tenant", "acme", "--role", "tenant-admin",
                        token=root_tok))
    viewer = token_of(run(c, "identity", "create", "acme-ro", "--tenant", "acme", "--role", "viewer",
                          token=root_tok))
    globex = token_of(run(c, "identity", "create", "globex-ops", "--tenant", "globex", "--role", "tenant-admin",
                          token=root_tok))
    # no token, or an unknown one, is refused now
    r = run(c, "volume", "list", ok=False)
    assert "UNAUTHENTICATED" in r.output and "--token or MESHBLOCK_TOKEN" in r.output
    assert "UNAUTHENTICATED" in run(c, "volume", "list", token="mbt_nope", ok=False).output

    # the token from the environment
    as_acme = {"MESHBLOCK_TOKEN": acme}
    run(c, "volume", "create", "a1", "--size", "32MiB", env=as_acme)
    r = run(c, "volume", "create", "a2", "--size", "16MiB", env=as_acme, ok=False)
    assert "RESOURCE_EXHAUSTED: quota max_volumes of tenant 'acme' exceeded: limit 1 volumes, in use 1" in r.output
    r = run(c, "volume", "resize", "a1", "--size", "128MiB", env=as_acme, ok=False)
    assert "RESOURCE_EXHAUSTED: quota max_bytes of tenant 'acme' exceeded: limit 67108864 bytes" in r.output
    assert "in use 33554432 bytes" in r.output
    run(c, "tenant", "set-quota", "acme", "--max-iops", "1000", "--max-volumes", "2", token=root_tok)
    r = run(c, "volume", "create", "a3", "--size", "4MiB", env=as_acme, ok=False)
    assert "RESOURCE_EXHAUSTED: quota max_iops of tenant 'acme'" in r.output and "without an IOPS limit" in r.output
    run(c, "volume", "set-qos", "a1", "--max-iops", "1000", env=as_acme)
    r = run(c, "volume", "set-qos", "a1", "--max-iops", "2000", env=as_acme, ok=False)
    assert "RESOURCE_EXHAUSTED: quota max_iops of tenant 'acme' exceeded: limit 1000 IOPS, in use 1000" in r.output
    got = json.loads(run(c, "tenant", "get", "-o", "json", env=as_acme).output)
    assert got["name"] == "acme" and got["usage"]["volumes"] == 1 and int(got["usage"]["iops"]) == 1000

    # another tenant: the volume does not exist
    r = run(c, "volume", "get", "a1", token=globex, ok=False)
    assert "NOT_FOUND" in r.output
    assert json.loads(run(c, "volume", "list", "-o", "json", token=globex).output) == []
    assert "NOT_FOUND" in run(c, "volume", "set-qos", "a1", "--max-iops", "3000", token=globex, ok=False).output
    # a viewer reads and does not change
    assert json.loads(run(c, "volume", "get", "a1", "-o", "json", token=viewer).output)["tenant"] == "acme"
    assert "PERMISSION_DENIED" in run(c, "volume", "delete", "a1", "-y", token=viewer, ok=False).output
    assert "PERMISSION_DENIED" in run(c, "tenant", "create", "x", env=as_acme, ok=False).output

    # the admin sees every tenant and the whole log; a tenant admin its own tenant's part
    listed = json.loads(run(c, "tenant", "list", "-o", "json", token=root_tok).output)
    assert [t["name"] for t in listed] == ["acme", "default", "globex"]
    events = json.loads(run(c, "audit", "list", "--tenant", "acme", "-o", "json", token=root_tok).output)
    calls = [(e["identity"], e["method"], e["target"], e["code"]) for e in events]
    assert ("acme-ops", "VolumeService.CreateVolume", "a1", "OK") in calls
    assert ("acme-ops", "VolumeService.CreateVolume", "a2", "RESOURCE_EXHAUSTED") in calls
    assert ("acme-ro", "VolumeService.DeleteVolume", "a1", "PERMISSION_DENIED") in calls
    assert {e["tenant"] for e in events} == {"acme"}
    mine = json.loads(run(c, "audit", "list", "--tenant", "globex", "-o", "json", env=as_acme).output)
    assert mine == []
    table = run(c, "audit", "list", "--since", "1h", token=root_tok).output
    assert "TenantService.CreateIdentity" in table and "acme-ops" in table
    assert "No audit events." in run(c, "audit", "list", "--since", "2099-01-01", token=root_tok).output
    everything = run(c, "audit", "list", "-o", "json", token=root_tok).output
    for tok in (root_tok, acme, viewer, globex):
        assert tok not in everything
    idents = run(c, "identity", "list", token=root_tok).output
    assert "acme-ops" in idents and acme not in idents and acme[:8] in idents


async def test_client_certificate_subject_is_an_identity(controller):
    c = controller
    root_tok = token_of(run(c, "identity", "create", "root", "--role", "admin"))
    run(c, "tenant", "create", "acme", token=root_tok)
    run(c, "identity", "create", "ci", "--tenant", "acme", "--role", "tenant-admin", "--subject", "CN=client",
        token=root_tok)
    run(c, "volume", "create", "dflt", "--size", "8MiB", token=root_tok)
    tls = ["--ca", str(c.pki / "ca.pem"), "--cert", str(c.pki / "client.pem"), "--key", str(c.pki / "client.key")]

    def over_tcp(*args: str, ok: bool = True) -> Result:
        r = CliRunner().invoke(root, [*args, "--endpoint", c.tcp, *tls], prog_name="meshblock",
                               catch_exceptions=False)
        assert (r.exit_code == 0) == ok, r.output
        return r

    # the certificate alone authenticates, as tenant admin of acme
    over_tcp("volume", "create", "mtls", "--size", "8MiB")
    assert [v["name"] for v in json.loads(over_tcp("volume", "list", "-o", "json").output)] == ["mtls"]
    assert "NOT_FOUND" in over_tcp("volume", "get", "dflt", ok=False).output
    events = json.loads(run(c, "audit", "list", "-o", "json", token=root_tok).output)
    e = next(e for e in events if e["target"] == "mtls")
    assert (e["identity"], e["tenant"], e["code"]) == ("ci", "acme", "OK") and e["peer"].startswith("ipv4:127.0.0.1")
    # a token given over TCP takes the place of the certificate's identity
    assert "dflt" in over_tcp("volume", "list", "--token", root_tok).output
