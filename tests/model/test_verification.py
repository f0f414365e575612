"""A bundle's files are hashed once per machine: a digest is reused while the file keeps its
identity, and a file that changed after its verification is hashed again and refused."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import model.bundle
from model import verification
from model.bundle import Bundle, BundleError
from model.manifest import ONNX_DATA_FILE
from model.verification import RECORD_FILE, Identity, VerifiedFiles
from model.vocabulary import VOCABULARY_FILE

SETTLED_S = 0.05


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files hashed; each test starts as a fresh process."""
    monkeypatch.setattr(verification, "_here", {})
    monkeypatch.setattr(verification, "SETTLED_S", SETTLED_S)
    names: list[str] = []
    hash_file = verification.hash_file

    def counting(path: Path) -> tuple[str, Identity]:
        names.append(path.name)
        return hash_file(path)

    monkeypatch.setattr(verification, "hash_file", counting)
    monkeypatch.setattr(model.bundle, "hash_file", counting)
    return names


@pytest.fixture
def settled(synthetic_afm: Path, tmp_path: Path) -> Path:
    """A copy of a bundle whose files were last changed more than SETTLED_S ago."""
    bundle = Path(shutil.copytree(synthetic_afm, tmp_path / "bundle"))
    time.sleep(2 * SETTLED_S)
    return bundle


def another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification, "_here", {})


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def replace_with_a_changed_copy(path: Path) -> None:
    copy = path.with_name(path.name + ".new")
    shutil.copyfile(path, copy)
    flip_a_byte(copy)
    os.replace(copy, path)


def test_the_workers_take_the_supervisors_digests(settled: Path, tmp_path: Path,
                                                  hashed: list[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    Bundle.load(settled, verified=VerifiedFiles(tmp_path))
    assert sorted(hashed) == sorted(["model.onnx", ONNX_DATA_FILE, VOCABULARY_FILE])
    Bundle.load(settled, verified=VerifiedFiles())  # a worker in the supervisor's process
    another_process(monkeypatch)
    Bundle.load(settled, verified=VerifiedFiles(tmp_path))  # a worker process
    assert len(hashed) == 3
    Bundle.load(settled)  # without a VerifiedFiles, every file is hashed
    assert len(hashed) == 6


@pytest.mark.parametrize("change", [flip_a_byte, replace_with_a_changed_copy])
@pytest.mark.parametrize("name", [ONNX_DATA_FILE, VOCABULARY_FILE])
def test_a_worker_refuses_a_file_changed_after_the_supervisor_verified_it(
        settled: Path, tmp_path: Path, hashed: list[str], monkeypatch: pytest.MonkeyPatch,
        name: str, change: Callable[[Path], None]) -> None:
    Bundle.load(settled, verified=VerifiedFiles(tmp_path))
    change(settled / name)
    for here in (True, False):  # in the supervisor's process, or in another
        if not here:
            another_process(monkeypatch)
        with pytest.raises(BundleError, match=f"{name} sha256 .* does not match"):
            Bundle.load(settled, verified=VerifiedFiles(tmp_path))
    assert hashed.count(name) == 3


def test_a_file_changed_within_settled_s_of_its_hash_is_hashed_every_time(
        synthetic_afm: Path, tmp_path: Path, hashed: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = Path(shutil.copytree(synthetic_afm, tmp_path / "fresh"))
    monkeypatch.setattr(verification, "SETTLED_S", 60.0)
    Bundle.load(bundle, verified=VerifiedFiles(tmp_path))
    Bundle.load(bundle, verified=VerifiedFiles(tmp_path))
    assert len(hashed) == 6
    assert not (tmp_path / RECORD_FILE).exists()


def test_a_file_changed_while_the_bundle_loads_is_refused(
        settled: Path, hashed: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    session = model.bundle._session

    def replacing_first(path: Path, threads: int) -> object:
        replace_with_a_changed_copy(settled / VOCABULARY_FILE)
        return session(path, threads)

    monkeypatch.setattr(model.bundle, "_session", replacing_first)
    with pytest.raises(BundleError, match=f"{VOCABULARY_FILE} changed while it was loaded"):
        Bundle.load(settled, verified=VerifiedFiles())


@pytest.mark.parametrize("record", ["{", "[]", '{"1:2": [1, 2, 3]}'])
def test_a_damaged_record_costs_a_hash(settled: Path, tmp_path: Path, hashed: list[str],
                                       monkeypatch: pytest.MonkeyPatch, record: str) -> None:
    (tmp_path / RECORD_FILE).write_text(record)
    Bundle.load(settled, verified=VerifiedFiles(tmp_path))
    another_process(monkeypatch)
    Bundle.load(settled, verified=VerifiedFiles(tmp_path))
    assert len(hashed) == 3


def test_the_record_keeps_the_latest_files(tmp_path: Path, hashed: list[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification, "MAX_RECORDS", 2)
    files = [tmp_path / f"f{i}" for i in range(3)]
    for i, path in enumerate(files):
        path.write_text(str(i))
    time.sleep(2 * SETTLED_S)
    verified = VerifiedFiles(tmp_path)
    for path in files:
        verified.sha256(path)
    another_process(monkeypatch)
    for path in reversed(files):
        VerifiedFiles(tmp_path).sha256(path)
    assert hashed == ["f0", "f1", "f2", "f0"]


def test_a_file_with_whole_second_times_waits_longer_to_be_remembered() -> None:
    second = 1_000_000_000
    fine = Identity(1, 2, 3, mtime_ns=5 * second + 123_456, ctime_ns=7 * second + 654_321)
    coarse = Identity(1, 2, 3, mtime_ns=5 * second, ctime_ns=7 * second)
    assert verification._settled_ns(fine) == int(verification.SETTLED_S * second)
    assert verification._settled_ns(coarse) == int(verification.COARSE_SETTLED_S * second)
