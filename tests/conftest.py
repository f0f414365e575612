"""Fixtures shared across the suite: real bundles trained on built-in data, once per session
and cached between sessions while the code and configs that made them are unchanged."""

import shutil
from pathlib import Path

import pytest

from tests.helpers import cached_bundle
from tests.helpers.skips import skip_reason, skip_summary


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


def pytest_unconfigure(config: pytest.Config) -> None:
    """End the run with one line naming what skipped tests lacked and how to get it (after
    pytest's summary, which -ra already gives reason by reason)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    line = skip_summary((skip_reason(r) for r in reporter.stats.get("skipped", [])), shutil.which)
    if line:
        reporter.write_line(line, yellow=True, bold=True)
