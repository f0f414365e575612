"""Fixtures shared across the suite: real bundles trained on built-in data, once per session
and cached between sessions while the code and configs that made them are unchanged."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import cached_bundle, train_bundle
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


@pytest.fixture(scope="session")
def downsampled_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary AFM trained on a fifth of its negatives, with a Platt map: libFM rows whose
    label (1 in about 15%) depends on a (user, item) pair."""
    data = tmp_path_factory.mktemp("downsampled-data")
    rng = np.random.default_rng(5)
    rows = 6000
    users, items, ctx = rng.integers(0, 20, rows), rng.integers(20, 40, rows), rng.integers(40, 44, rows)
    logit = -2.2 + 2.5 * (((users * 7 + items) % 5) == 0) + 0.3 * (ctx - 42)
    labels = np.where(rng.random(rows) < 1 / (1 + np.exp(-logit)), 1, -1)
    lines = [f"{y} {u}:1 {i}:1 {c}:1" for y, u, i, c in zip(labels, users, items, ctx, strict=True)]
    (data / "train.libfm").write_text("\n".join(lines[:4000]) + "\n")
    (data / "valid.libfm").write_text("\n".join(lines[4000:]) + "\n")
    (data / "run.toml").write_text(
        f'name = "downsampled"\n[data]\nformat = "libfm"\ntrain = "{data / "train.libfm"}"\n'
        f'validation = "{data / "valid.libfm"}"\nfields = ["user", "item", "context"]\n'
        f'task = "binary"\nnegative_keep_rate = 0.2\ncache_dir = "{data / "cache"}"\n'
        '[model]\nembed_dim = 4\nattention_dim = 4\npair_dropout = 0.0\n'
        '[train]\noptimizer = "adam"\nlr = 0.02\nbatch_size = 128\nepochs = 8\npatience = 3\n'
        'calibration = "platt"\nmonitor = "logloss"\n'
    )
    out = tmp_path_factory.mktemp("models") / "downsampled"
    train_bundle(data / "run.toml", out)
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
