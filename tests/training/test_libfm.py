"""libFM rows: parsing (CRLF, vectorised), field vocabularies, OOV, and the real Frappe files."""

import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import FRAPPE, needs_frappe
from training import libfm


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.replace("\n", "\r\n").encode())
    return path


def test_reads_crlf_rows(tmp_path: Path) -> None:
    rows = libfm.read_libfm(_write(tmp_path / "a.libfm", "1 0:1 5:1 9:1\n-1 1:1 5:1 8:1\n\n"))
    assert rows.labels.tolist() == [1.0, -1.0]
    assert rows.ids.tolist() == [[0, 5, 9], [1, 5, 8]]


@pytest.mark.parametrize(
    ("text", "message"),
    [("1 0:1 5:1\n1 0:1\n", "same number"), ("1 0:0.5 3:1\n", "one-hot"), ("", "no rows")],
)
def test_refuses_rows_it_cannot_represent(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        libfm.read_libfm(_write(tmp_path / "bad.libfm", text))


def test_unseen_ids_map_to_the_field_oov(tmp_path: Path) -> None:
    train = libfm.read_libfm(_write(tmp_path / "t.libfm", "1 0:1 5:1\n1 1:1 5:1\n"))
    space = libfm.feature_space(train, ["user", "item"])
    valid = libfm.read_libfm(_write(tmp_path / "v.libfm", "1 0:1 6:1\n1 99:1 5:1\n"))
    data = libfm.encode(space, valid, valid.labels)
    assert data.oov == 2
    assert data.indices[0, 1, 0] == space.oov_index(1)
    assert data.indices[1, 0, 0] == space.oov_index(0)
    assert data.indices[0, 0, 0] == space.index_of(0, "0")
    # The service's encoder maps the same raw values to the same indices.
    served = space.encode([{"user": "0", "item": "6"}, {"user": 99, "item": 5}])
    np.testing.assert_array_equal(served.indices, data.indices)


def test_field_names_must_match_the_rows(tmp_path: Path) -> None:
    rows = libfm.read_libfm(_write(tmp_path / "t.libfm", "1 0:1 5:1\n"))
    with pytest.raises(ValueError, match="3 field names"):
        libfm.feature_space(rows, ["a", "b", "c"])
    assert libfm.feature_space(rows, []).field_names == ["field0", "field1"]


@needs_frappe()
def test_frappe_train_loads_fast_and_whole() -> None:
    started = time.perf_counter()
    rows = libfm.read_libfm(FRAPPE / "frappe.train.libfm")
    seconds = time.perf_counter() - started
    assert rows.ids.shape == (202_027, 10)
    assert int((rows.labels == 1).sum()) == 67_604
    assert seconds < 30  # "a few seconds" alone; generous for a loaded CI machine
