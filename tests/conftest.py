"""Fixtures shared across the suite: real bundles trained on built-in data, once per session
and cached between sessions while the code and configs that made them are unchanged."""

from pathlib import Path

import pytest

from tests.helpers import cached_bundle


@pytest.fixture(scope="session")
def synthetic_afm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The main job's default model, trained as the README's command trains it."""
    out = tmp_path_factory.mktemp("synthetic-afm")
    cached_bundle("synthetic-afm.toml", out)
    return out


@pytest.fixture(scope="session")
def synthetic_fm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic-fm")
    cached_bundle("synthetic-fm.toml", out)
    return out



@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default synthetic AFM (regression), trained briefly: 6 categorical fields.
    Shared by the service and reliability tests."""
    out = tmp_path_factory.mktemp("models") / "synthetic"
    cached_bundle("synthetic-afm.toml", out, ["train.epochs=3", "data.synthetic.rows=4000"])
    return out
