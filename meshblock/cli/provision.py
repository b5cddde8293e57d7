"""`meshblock spdk install|info` and `meshblock csi-sanity install`: provision the pinned builds."""

from __future__ import annotations

import os
from pathlib import Path

import click

_TRUE = ("1", "true", "yes", "on")


def _skipped(flag: bool, env: str) -> bool:
    return flag or os.environ.get(env, "").strip().lower() in _TRUE


@click.group()
def spdk() -> None:
    """The SPDK build meshblock runs (its data plane)."""


@spdk.command("install")
@click.option("--prefix", type=click.Path(path_type=Path), default=None,
              help="Install prefix (default: /opt/meshblock/spdk-VERSION as root, "
                   "~/.local/share/meshblock/spdk-VERSION otherwise, where discovery finds it).")
@click.option("--source", default=None, envvar="MESHBLOCK_SPDK_SOURCE",
              help="A source archive or directory of the pinned release (default: the official repository; "
                   "env MESHBLOCK_SPDK_SOURCE).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=os.cpu_count() or 2, show_default=True)
@click.option("--crypto/--no-crypto", default=False, show_default=True,
              help="Build the crypto bdev (with intel-ipsec-mb), which makes the build longer.")
@click.option("--keep-build", is_flag=True, help="Keep the build tree under ~/.cache/meshblock/build.")
@click.option("--force", is_flag=True, help="Build and install again even if the same build is installed.")
@click.option("--skip", is_flag=True, help="Do nothing (env MESHBLOCK_SKIP_SPDK_BUILD=1): this host brings its own "
                                           "SPDK (MESHBLOCK_SPDK_DIR, PATH or /opt/spdk).")
def spdk_install(prefix, source, jobs, crypto, keep_build, force, skip) -> None:
    """Build the pinned SPDK release from source and install it where meshblock finds it.

    Does nothing when the same version and options are installed already, when MESHBLOCK_SPDK_DIR names
    another build, or with --skip."""
    from ..provision import spdk as recipe
    from ..provision.build import ProvisionError
    from ..spdk.discovery import ENV_VAR, SpdkNotFoundError, find_spdk

    if _skipped(skip, recipe.SKIP_ENV):
        click.echo("spdk: build skipped (--skip or MESHBLOCK_SKIP_SPDK_BUILD); meshblock uses "
                   "MESHBLOCK_SPDK_DIR, PATH or /opt/spdk")
        return
    if os.environ.get(ENV_VAR):
        try:
            found = find_spdk()
        except SpdkNotFoundError as e:
            raise click.ClickException(str(e))
        click.echo(f"spdk: {ENV_VAR} is set: meshblock uses the build at {found.describe()}; nothing to install")
        return
    build = recipe.SpdkBuild(prefix=(prefix or recipe.default_prefix()).absolute(), crypto=crypto, jobs=jobs)
    try:
        recipe.install(build, source, keep_build=keep_build, force=force)
    except ProvisionError as e:
        raise click.ClickException(str(e))


@spdk.command("info")
def spdk_info() -> None:
    """Which SPDK build meshblock uses, and what it was built with."""
    from ..provision.build import read_stamp
    from ..spdk.discovery import SpdkNotFoundError, find_spdk

    try:
        found = find_spdk()
    except SpdkNotFoundError as e:
        raise click.ClickException(str(e))
    click.echo(f"SPDK: {found.describe()}")
    stamp = read_stamp(found.root) if found.root else None
    if stamp:
        click.echo(f"  version {stamp.get('version')}, built {stamp.get('built_at', '?')} from {stamp.get('source')}")
        click.echo(f"  configure {' '.join(stamp.get('configure', []))}")
    for name, path in sorted(found.programs.items()):
        click.echo(f"  {name}: {path}")


@click.group("csi-sanity")
def csi_sanity() -> None:
    """The CSI conformance suite the tests run against meshblock's CSI driver."""


@csi_sanity.command("install")
@click.option("--prefix", type=click.Path(path_type=Path), default=None,
              help="Install prefix (default: /opt/meshblock/csi-test-COMMIT as root, ~/.local/share/meshblock/... "
                   "otherwise).")
@click.option("--source", default=None, envvar="MESHBLOCK_CSI_TEST_SOURCE",
              help="A csi-test source archive or directory at the pinned commit (env MESHBLOCK_CSI_TEST_SOURCE).")
@click.option("--keep-build", is_flag=True)
@click.option("--force", is_flag=True, help="Build and install again even if the same build is installed.")
@click.option("--skip", is_flag=True, help="Do nothing (env MESHBLOCK_SKIP_CSI_SANITY_BUILD=1).")
def csi_sanity_install(prefix, source, keep_build, force, skip) -> None:
    """Build csi-sanity from the pinned csi-test commit (Go from the test extras; no network with --source)."""
    from ..provision import csi_sanity as recipe
    from ..provision.build import ProvisionError

    if _skipped(skip, recipe.SKIP_ENV):
        click.echo("csi-sanity: build skipped")
        return
    if os.environ.get(recipe.BINARY_ENV):
        click.echo(f"csi-sanity: {recipe.BINARY_ENV} is set; nothing to install")
        return
    try:
        recipe.install(recipe.CsiSanityBuild((prefix or recipe.default_prefix()).absolute()), source,
                       keep_build=keep_build, force=force)
    except ProvisionError as e:
        raise click.ClickException(str(e))
