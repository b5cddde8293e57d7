"""Containerfile, scripts/build-image and the chart describe one image: these checks keep them alike."""

from __future__ import annotations

import shlex
import tomllib

import yaml

from meshblock.provision.spdk import VERSION as SPDK_VERSION
from tests.image.buildimage import REPO, module

bi = module()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (REPO / "Containerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def assignments(args: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(args))


def test_two_stages_on_debian_12():
    build, runtime = stages()
    assert build[0] == ("FROM", "debian:12 AS build")
    assert runtime[0] == ("FROM", "debian:12-slim")
    assert bi.SUITE == "bookworm"


def test_the_build_stage_builds_spdk_with_the_projects_own_command_into_the_images_prefix():
    build, runtime = stages()
    runs = " ".join(a for i, a in build if i == "RUN")
    assert f"meshblock spdk install --prefix {bi.SPDK_DIR}" in runs
    assert ("ARG", "MESHBLOCK_SPDK_SOURCE=") in build
    assert ("COPY", f"--from=build {bi.SPDK_DIR}/ {bi.SPDK_DIR}/") in runtime
    assert bi.SPDK_DIR == f"/opt/meshblock/spdk-{SPDK_VERSION}" and bi.SPDK_VERSION == SPDK_VERSION


def test_both_recipes_install_the_one_package_list_and_run_the_same_scripts():
    _, runtime = stages()
    runs = " ".join(a for i, a in runtime if i == "RUN")
    assert "/tmp/meshblock-image/packages.txt | xargs apt-get install -y --no-install-recommends" in runs
    assert "sh /tmp/meshblock-image/install-meshblock" in runs and "sh /tmp/meshblock-image/finish" in runs
    assert ("COPY", "packaging/image/ /tmp/meshblock-image/") in runtime
    # build-image copies the same directory into the root file system and runs the same two scripts
    assert bi.PACKAGING == REPO / "packaging" / "image" and bi.PACKAGES_FILE.name == "packages.txt"
    pkgs = bi.packages()
    assert len(pkgs) == len(set(pkgs))
    for needed in ("python3", "python3-venv", "nvme-cli", "open-iscsi", "e2fsprogs", "xfsprogs", "util-linux",
                   "libaio1", "libnuma1", "libssl3", "libuuid1"):
        assert needed in pkgs


def test_same_configuration_entrypoint_and_labels():
    _, runtime = stages()
    env: dict[str, str] = {}
    labels: dict[str, str] = {}
    for ins, args in runtime:
        if ins == "ENV":
            env.update(assignments(args))
        elif ins == "LABEL":
            labels.update(assignments(args))
    assert env == bi.ENV
    assert ("ENTRYPOINT", '["meshblock"]') in runtime and bi.ENTRYPOINT == ["meshblock"]
    assert ("CMD", '["--help"]') in runtime and bi.CMD == ["--help"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert ("ARG", f"VERSION={version}") in runtime
    expected = bi.labels(version, {"version": SPDK_VERSION})
    expected.pop("org.opencontainers.image.revision", None)
    assert {k: v.replace("$VERSION", version) for k, v in labels.items()} == expected


def test_chart_defaults_name_the_image_build_image_makes():
    values = yaml.safe_load((REPO / "charts/meshblock/values.yaml").read_text())
    chart = yaml.safe_load((REPO / "charts/meshblock/Chart.yaml").read_text())
    version = bi.version()
    assert values["image"]["repository"] == bi.NAME
    assert (values["image"]["tag"] or chart["appVersion"]) == version
    assert values["image"]["spdkDir"] == bi.SPDK_DIR
    assert bi.default_output().name == f"meshblock-{version}.oci.tar"
    assert bi.full_reference(bi.NAME, version) == f"docker.io/library/meshblock:{version}"


def test_full_references_as_containerd_names_them():
    assert bi.full_reference("meshblock", "1.0") == "docker.io/library/meshblock:1.0"
    assert bi.full_reference("acme/meshblock", "1.0") == "docker.io/acme/meshblock:1.0"
    assert bi.full_reference("registry.example.com/st/meshblock", "1.0") == "registry.example.com/st/meshblock:1.0"
    assert bi.full_reference("localhost:5000/meshblock", "1.0") == "localhost:5000/meshblock:1.0"
