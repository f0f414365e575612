"""bench.table_dtype re-exports a finished run's checkpoint: as float32 the run's own bundle,
as float16 a smaller one that loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.table_dtype import export_both, main
from model.bundle import Bundle
from model.manifest import ONNX_DATA_FILE
from model.vocabulary import VOCABULARY_FILE


def test_the_float32_export_is_the_runs_bundle_and_float16_is_smaller(
        synthetic_afm: Path, tmp_path: Path) -> None:
    bundles = export_both(synthetic_afm, tmp_path)
    for name in (ONNX_DATA_FILE, VOCABULARY_FILE):
        assert (bundles["float32"] / name).read_bytes() == (synthetic_afm / name).read_bytes()
    half = bundles["float16"] / ONNX_DATA_FILE
    assert half.stat().st_size < (synthetic_afm / ONNX_DATA_FILE).stat().st_size
    assert Bundle.load(bundles["float16"]).manifest.digest != Bundle.load(synthetic_afm).manifest.digest


def test_a_directory_without_a_run_is_a_one_line_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path), "--data", "x", "--format", "criteo", "--out", str(tmp_path)]) == 2
    assert "no finished run" in capsys.readouterr().err
