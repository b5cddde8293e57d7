"""The OCI image that scripts/build-image makes: unpacked as a runtime would, it runs a cluster.

The image's root file system runs under chroot (the kernel's /proc, /sys and /dev mounted, a private
/dev/shm), with the environment its configuration names: `meshblock up` starts a controller and
three nodes whose SPDK targets are the image's, a replicated volume is made and published, and a
host outside the image (SPDK's spdk_dd from the image's prefix: this kernel has no nvme-tcp) writes
a random pattern over NVMe/TCP and reads it back. Set MESHBLOCK_IMAGE_ARCHIVE to test an archive
that is already built instead of running scripts/build-image.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from meshblock.spdk.discovery import find_spdk
from meshblock.spdk.supervisor import pid_alive
from tests.image.buildimage import BUILD_IMAGE, module
from tests.support.initiator import SpdkHost

pytestmark = [pytest.mark.image, pytest.mark.spdk, pytest.mark.timeout(1800)]

MiB = 1 << 20
HOME_IN_IMAGE = "/root/mbhome"
ARCHIVE_ENV = "MESHBLOCK_IMAGE_ARCHIVE"


def processes_in(root: Path) -> list[int]:
    """Processes whose root directory is root: the ones started inside the image."""
    root_s = str(root.resolve())
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.readlink(d / "root") == root_s:
                    found.append(int(d.name))
            except OSError:
                continue
    return sorted(found)


def stop_processes(root: Path, pids: list[int]) -> None:
    """SIGTERM, then SIGKILL, each pid that still runs inside root (checked before every signal)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in pids if p in processes_in(root)]
        for p in alive:
            os.kill(p, sig)
        deadline = time.monotonic() + 10
        while alive and time.monotonic() < deadline:
            alive = [p for p in alive if pid_alive(p)]
            time.sleep(0.2)
        if not alive:
            return


def image_archive() -> Path:
    given = os.environ.get(ARCHIVE_ENV)
    if given:
        if not Path(given).is_file():
            pytest.fail(f"{ARCHIVE_ENV}={given}: no such file")
        return Path(given)
    bi = module()
    prefix = bi.default_spdk_prefix()
    if not (prefix / "bin" / "nvmf_tgt").is_file():
        pytest.skip(f"no SPDK prefix at {prefix} to put into the image: `meshblock spdk install` (as root) builds "
                    f"it there, or set MESHBLOCK_IMAGE_SPDK_PREFIX")
    if shutil.which("apt-get") is None and not (shutil.which("mmdebstrap") and shutil.which("umoci")):
        pytest.skip("scripts/build-image needs mmdebstrap and umoci (Debian packages), and there is no apt-get")
    output = bi.default_output()
    # scripts/build-image leaves an archive whose inputs are unchanged as it is (then it takes a second)
    p = subprocess.run([sys.executable, str(BUILD_IMAGE), "--output", str(output)], check=False,
                       capture_output=True, text=True, timeout=1500)
    print(p.stdout, p.stderr, sep="\n")
    assert p.returncode == 0, f"scripts/build-image failed:\n{p.stdout}\n{p.stderr}"
    return output


def unpack(archive: Path, work: Path) -> tuple[Path, dict, dict]:
    """The image's root file system (umoci unpack, as a runtime does), its configuration and runtime spec."""
    layout = work / "oci"
    layout.mkdir()
    subprocess.run(["tar", "-C", str(layout), "-xf", str(archive)], check=True)
    index = json.loads((layout / "index.json").read_text())
    assert len(index["manifests"]) == 1, index
    desc = index["manifests"][0]
    tag = desc["annotations"]["org.opencontainers.image.ref.name"]

    def blob(digest: str) -> dict:
        algo, hexd = digest.split(":")
        return json.loads((layout / "blobs" / algo / hexd).read_text())

    config = blob(blob(desc["digest"])["config"]["digest"])
    bundle = work / "bundle"
    p = subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)], check=False,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    shutil.rmtree(layout)
    spec = json.loads((bundle / "config.json").read_text())
    return bundle / "rootfs", config, {"tag": tag, "annotations": desc["annotations"], "process": spec["process"]}


async def test_image_runs_a_cluster_that_serves_a_replicated_volume(tmp_path, timings):
    if os.geteuid() != 0:
        pytest.skip("needs root: the image's root file system runs under chroot with /proc, /sys and /dev mounted")
    bi = module()
    version = bi.version()
    with timings.phase("build"):
        archive = image_archive()
    if shutil.which("umoci") is None:
        pytest.skip("umoci (Debian package) is needed to unpack the image")
    with timings.phase("unpack"):
        rootfs, config, meta = unpack(archive, tmp_path)

    # the configuration a runtime (and the chart, which runs `meshblock`) relies on
    assert meta["tag"] == version
    if not os.environ.get(ARCHIVE_ENV):  # build-image names the image for containerd's import
        assert meta["annotations"]["io.containerd.image.name"] == f"docker.io/library/meshblock:{version}"
    cfg = config["config"]
    assert cfg["Entrypoint"] == ["meshblock"]
    assert cfg["Labels"]["org.opencontainers.image.version"] == version
    assert f"MESHBLOCK_SPDK_DIR={bi.SPDK_DIR}" in cfg["Env"]
    assert not (rootfs / "etc/nvme/hostnqn").exists() and not (rootfs / "etc/iscsi/initiatorname.iscsi").exists()
    env = dict(e.split("=", 1) for e in meta["process"]["env"])
    env.update(HOME="/root", MESHBLOCK_HOME=HOME_IN_IMAGE)

    def mb(*args: str, timeout: float = 180, user: str = "0:0") -> subprocess.CompletedProcess:
        return subprocess.run(["/usr/sbin/chroot", f"--userspec={user}", str(rootfs), "meshblock", *args],
                              check=False, env=env, capture_output=True, text=True, timeout=timeout)

    # the chart runs the controller as user 65532 on a read-only root file system
    unprivileged = mb("--version", user="65532:65532")
    assert unprivileged.returncode == 0 and version in unprivileged.stdout, unprivileged.stderr

    started: list[int] = []
    try:
        with bi.chroot_mounts(rootfs, sys_and_shm=True):
            try:
                with timings.phase("up"):
                    up = mb("up", "--nodes", "3", "--pool-size", "1GiB", "-o", "json")
                    started = processes_in(rootfs)
                assert up.returncode == 0, up.stderr + up.stdout
                nodes = json.loads(up.stdout)["nodes"]
                assert [n["nvmf_address"] for n in nodes[1:]] == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
                # controller, 3 agents, 3 data targets: all running from the image
                assert len(started) >= 7, started
                exes = [os.readlink(f"/proc/{p}/exe") for p in started]
                spdk_bin = str(rootfs.resolve() / bi.SPDK_DIR.lstrip("/") / "bin")
                assert sum(e.startswith(spdk_bin + "/") for e in exes) >= 3, exes

                with timings.phase("volume"):
                    created = mb("volume", "create", "v", "--size", "64MiB", "--replicas", "3", "-o", "json")
                    assert created.returncode == 0, created.stderr + created.stdout
                    vol = json.loads(created.stdout)
                    host_nqn = f"nqn.2014-08.org.nvmexpress:uuid:{uuid.uuid4()}"
                    pub = mb("volume", "publish", "v", "--host-nqn", host_nqn)
                    assert pub.returncode == 0, pub.stderr
                    conn = mb("volume", "connect", "v", "--host-nqn", host_nqn, "-o", "json")
                    assert conn.returncode == 0, conn.stderr
                info = json.loads(conn.stdout)
                assert vol["state"] == "available" and vol["size_bytes"] == 64 * MiB
                assert info["subnqn"] == vol["nqn"] and info["host_nqn"] == host_nqn
                path = next(p for p in info["paths"] if p["ana_state"] in ("optimized", ""))
                assert path["traddr"] in ("127.0.0.11", "127.0.0.12", "127.0.0.13")

                with timings.phase("data"):
                    install = find_spdk({"MESHBLOCK_SPDK_DIR": str(rootfs / bi.SPDK_DIR.lstrip("/"))})
                    host = SpdkHost(install, tmp_path / "host", host_nqn)
                    data = os.urandom(16 * MiB)
                    (tmp_path / "pattern.bin").write_bytes(data)
                    w = await host.write(tmp_path / "pattern.bin", info["subnqn"], path["traddr"],
                                         int(path["trsvcid"]))
                    assert w.returncode == 0, w.output
                    r = await host.read(tmp_path / "back.bin", len(data), info["subnqn"], path["traddr"],
                                        int(path["trsvcid"]))
                    assert r.returncode == 0, r.output
                    assert (tmp_path / "back.bin").read_bytes() == data
                    for f in ("pattern.bin", "back.bin"):
                        (tmp_path / f).unlink()

                got = mb("volume", "get", "v", "-o", "json")
                assert got.returncode == 0, got.stderr
                vol = json.loads(got.stdout)
                assert vol["state"] == "available" and host_nqn in vol["hosts"]
                replicas = vol["replica_status"]
                assert len(replicas) == 3 and all(r["state"] == "online" for r in replicas), replicas
                assert len({r["node_name"] for r in replicas}) == 3

                with timings.phase("down"):
                    down = mb("down")
                    assert down.returncode == 0, down.stderr
                    deadline = time.monotonic() + 15
                    while processes_in(rootfs) and time.monotonic() < deadline:
                        await asyncio.sleep(0.2)
                assert "stopped 3 agents, 1 controller" in down.stdout
                assert processes_in(rootfs) == [], "processes of the image still run after `meshblock down`"
            finally:
                stop_processes(rootfs, processes_in(rootfs))
    finally:
        mounted = bi.unmount_all(rootfs)
        still = bi.mountpoints_under(rootfs)
        home = rootfs / HOME_IN_IMAGE.lstrip("/")
        if home.is_dir():  # the cluster's logs stay with the test's temporary directory
            shutil.copytree(home, tmp_path / "mbhome", ignore=shutil.ignore_patterns("pool.img", "*.sock"),
                            dirs_exist_ok=True)
        if not still:  # never delete through a mount of the host's /dev or /sys
            shutil.rmtree(rootfs.parent, ignore_errors=True)
    assert not mounted, f"needed lazy unmounts (something kept them busy): {mounted}"
    assert not still, f"still mounted: {still}"
