"""Paths and helpers for tests (fixtures live in conftest.py)."""

from pathlib import Path

import pytest

from model.manifest import Manifest

REPO = Path(__file__).resolve().parents[1]
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
