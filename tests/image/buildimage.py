"""scripts/build-image loaded as a module: the tests use its settings and its chroot mounts."""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGE = REPO / "scripts" / "build-image"


@functools.cache
def module() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("meshblock_build_image", str(BUILD_IMAGE))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod
