"""Paths and helpers shared by tests (fixtures live in conftest.py, which imports from here,
never the other way round): `bundles` (copies, models roots, broken bundles) and `servers`
(afm-serve processes and wrk, through bench.harness)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from model.manifest import Manifest

if TYPE_CHECKING:  # the training tests need no service install
    from service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token-0123456789"
INSTANCE = {"f0": "v3", "f1": "v17", "f2": "v0", "f3": "v9", "f4": "v21", "f5": "v4"}
SettingsFactory = Callable[..., "Settings"]
SHARED_DATA = REPO.parent / "shared" / "data"
FRAPPE = SHARED_DATA / "frappe"


def train_bundle(config: str | Path, out: Path, overrides: list[str] | None = None) -> Manifest:
    """Train `config` (a path, or a file name under configs/) into the bundle directory `out`."""
    from training.config import load_config
    from training.run import run

    return run(load_config(REPO / "configs" / config, overrides), out)


def needs_frappe() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not (FRAPPE / "frappe.train.libfm").is_file(),
        reason=f"Frappe reference data not found at {FRAPPE} (licensed; CI has it)",
    )
