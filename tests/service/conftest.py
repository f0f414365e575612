"""Service fixtures: real bundles trained in the test session (no network, no prior state)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from service.app import create_app
from service.ops.settings import Settings
from tests.helpers import SettingsFactory, train_bundle
from tests.helpers.bundles import models_root as make_models_root

MIXED_SCHEMA = """
main = "clicks.tsv"
target = "click"

[split]
method = "random"
fraction = 0.2

[[fields]]
name = "user"
kind = "categorical"

[[fields]]
name = "tags"
kind = "multi"
pooling = "mean"

[[fields]]
name = "price"
kind = "numeric"

[[fields]]
name = "age"
kind = "bucketized"
boundaries = [18, 35, 56]
"""


@pytest.fixture(scope="session")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary AFM over every field kind: categorical, multi-valued, numeric, bucketised."""
    data = tmp_path_factory.mktemp("mixed-data")
    rng = np.random.default_rng(3)
    lines = ["user\ttags\tprice\tage\tclick"]
    for _ in range(400):
        tags = " ".join(rng.choice(list("abcdef"), size=rng.integers(0, 4), replace=False))
        user, price, age = f"u{rng.integers(0, 12)}", rng.normal(50, 20), rng.integers(10, 80)
        click = int(("a" in tags) ^ (age > 40) ^ (price > 60))
        lines.append(f"{user}\t{tags}\t{price:.2f}\t{age}\t{click}")
    (data / "clicks.tsv").write_text("\n".join(lines) + "\n")
    (data / "schema.toml").write_text(MIXED_SCHEMA)
    config = data / "mixed.toml"
    config.write_text(
        f'name = "mixed-afm"\n[data]\nformat = "tabular"\ntrain = "{data / "schema.toml"}"\n'
        'task = "binary"\n[model]\nkind = "afm"\nembed_dim = 4\nattention_dim = 4\n'
        "pair_dropout = 0.0\n[train]\noptimizer = \"adam\"\nlr = 0.05\nbatch_size = 64\n"
        "epochs = 2\n"
    )
    out = tmp_path_factory.mktemp("models") / "mixed"
    train_bundle(config, out)
    return out


@pytest.fixture
def models_root(tmp_path: Path, bundle_dir: Path) -> Path:
    """v1 and v2 of the synthetic model side by side, as a models root."""
    return make_models_root(tmp_path, bundle_dir)


@pytest.fixture
def make_settings(bundle_dir: Path) -> SettingsFactory:
    def make(**changes: Any) -> Settings:
        values: dict[str, Any] = {"model_dir": bundle_dir, "log_format": "json"}
        values.update(changes)
        return Settings(**values)

    return make


@pytest.fixture
def client(make_settings: SettingsFactory) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(), registry=CollectorRegistry())) as test_client:
        yield test_client


@pytest.fixture
def mixed_client(make_settings: SettingsFactory, mixed_dir: Path) -> Iterator[TestClient]:
    app = create_app(make_settings(model_dir=mixed_dir), registry=CollectorRegistry())
    with TestClient(app) as test_client:
        yield test_client
