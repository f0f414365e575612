"""Training is deterministic for a given seed and thread count: the same run twice gives the
same numbers, to the last bit, with dropout, L2 on the batch rows and a schedule on."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers import train_bundle

TIMINGS = {"train_seconds", "samples_per_second"}
OPTIONS = [
    "train.epochs=2", "data.synthetic.rows=3000", "model.pair_dropout=0.2",
    "model.attention_dropout=0.1", "train.embedding_l2=0.001", "train.linear_l2=0.001",
    "train.warmup_epochs=1", "train.lr_decay=cosine",
]


@pytest.fixture
def two_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("tables", ["train.sparse_tables=false", "train.sparse_tables=true"])
def test_same_seed_and_threads_give_identical_metrics(tmp_path: Path, two_threads: None, tables: str) -> None:
    runs = [train_bundle("synthetic-afm.toml", tmp_path / f"run{k}", [*OPTIONS, tables]) for k in range(2)]
    assert runs[0].metrics == runs[1].metrics
    assert runs[0].training["seed"] == 2017 and runs[0].training["threads"] == 2
    assert runs[0].training["sparse_tables"] is tables.endswith("true")  # as resolved, not "auto"
    histories = [(tmp_path / f"run{k}" / "history.json").read_text() for k in range(2)]
    epochs = [json.loads(h)["epochs"] for h in histories]
    strip = [[{k: v for k, v in row.items() if k not in TIMINGS} for row in run] for run in epochs]
    assert strip[0] == strip[1]
