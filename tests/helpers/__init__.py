"""Paths and helpers shared by tests (fixtures live in conftest.py, which imports from here,
never the other way round): `bundles` (copies, models roots, broken bundles) and `servers`
(afm-serve processes and wrk, through bench.harness)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from model.manifest import Manifest

if TYPE_CHECKING:  # the training tests need no service install
    from service.ops.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-0123456789"
INSTANCE = {"f0": "v3", "f1": "v17", "f2": "v0", "f3": "v9", "f4": "v21", "f5": "v4"}
SettingsFactory = Callable[..., "Settings"]
SHARED_DATA = REPO.parent / "shared" / "data"
FRAPPE = SHARED_DATA / "frappe"
BUNDLE_CACHE = REPO / ".cache" / "test-bundles"


def train_bundle(config: str | Path, out: Path, overrides: list[str] | None = None) -> Manifest:
    """Train `config` (a path, or a file name under configs/) into the bundle directory `out`."""
    from training.config import load_config
    from training.run import run

    return run(load_config(REPO / "configs" / config, overrides), out)


def cached_bundle(config: str, out: Path, overrides: list[str] | None = None) -> Path:
    """`train_bundle` for a config under configs/, trained once and then copied from
    .cache/test-bundles while nothing that could change the run has changed: the configs,
    the code of model/ and training/, the torch version and OMP_NUM_THREADS.
    AFM_TEST_RETRAIN=1 trains anew."""
    cached = BUNDLE_CACHE / _run_key(config, overrides or [])
    if os.environ.get("AFM_TEST_RETRAIN") == "1" or not (cached / "manifest.json").is_file():
        building = BUNDLE_CACHE / f".{cached.name}.{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        train_bundle(config, building, overrides)
        shutil.rmtree(cached, ignore_errors=True)
        try:
            building.rename(cached)  # whole or not at all, if another session races this one
        except OSError:
            shutil.rmtree(building, ignore_errors=True)
    shutil.copytree(cached, out, dirs_exist_ok=True)
    return out


def _run_key(config: str, overrides: list[str]) -> str:
    digest = hashlib.sha256(json.dumps([config, overrides, version("torch"),
                                        os.environ.get("OMP_NUM_THREADS")]).encode())
    for folder in ("configs", "model", "training"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:24]


def needs_frappe() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not (FRAPPE / "frappe.train.libfm").is_file(),
        reason=f"Frappe reference data not found at {FRAPPE} (licensed; CI has it)",
    )
