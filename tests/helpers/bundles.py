"""Bundles for tests: copies with manifest changes, a models root of two versions, and the
ways a bundle can be broken (each with a word its refusal must name)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.manifest import sha256_file


def copy_bundle(source: Path, target: Path, **manifest_changes: Any) -> Path:
    """A bundle's files copied, with manifest fields changed (e.g. version="2")."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(manifest_changes)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def models_root(root: Path, bundle: Path) -> Path:
    """v1 and v2 of a model side by side in `root`, as a models root."""
    copy_bundle(bundle, root / "v1")
    copy_bundle(bundle, root / "v2", version="2")
    return root


def truncate_onnx(path: Path) -> None:
    onnx = path / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:2000])
    set_manifest(path, onnx_sha256=sha256_file(onnx))


def flip_a_byte(path: Path) -> None:
    onnx = path / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-10] ^= 0xFF
    onnx.write_bytes(bytes(data))


def set_manifest(path: Path, **changes: Any) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.update(changes)
    (path / "manifest.json").write_text(json.dumps(manifest))


def set_text(path: Path, text: str) -> None:
    path.write_text(text)


def drop_a_field(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["fields"] = manifest["fields"][:-1]
    names = [f["name"] for f in manifest["fields"]]
    manifest["pairs"] = [p for p in manifest["pairs"] if p[0] in names and p[1] in names]
    manifest["importance"] = []
    (path / "manifest.json").write_text(json.dumps(manifest))


def misfit_reference(path: Path) -> None:
    """The drift reference of a model with its fields in another order."""
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["reference"]["fields"].reverse()
    (path / "manifest.json").write_text(json.dumps(manifest))


def remove_a_key(path: Path) -> None:
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["task"]
    (path / "manifest.json").write_text(json.dumps(manifest))


BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated onnx": (truncate_onnx, "onnxruntime cannot load"),
    "sha256 mismatch": (flip_a_byte, "does not match"),
    "missing onnx": (lambda p: (p / "model.onnx").unlink(), "missing"),
    "manifest without a key": (remove_a_key, "task"),
    "unknown format version": (lambda p: set_manifest(p, format_version=99), "format_version"),
    "fields disagree with the onnx": (drop_a_field, "fields"),
    "bias not the graph's": (lambda p: set_manifest(p, bias=12.5), "bias"),
    "reference of other fields": (misfit_reference, "reference"),
    "not json": (lambda p: set_text(p / "manifest.json", "{"), "manifest.json"),
}
