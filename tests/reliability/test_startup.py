"""`afm-serve` given a broken bundle refuses to start: one line naming the reason, a
non-zero exit, and never a listening socket (no half-ready server), with two workers too."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bench.harness import SERVE, free_port
from tests.helpers.bundles import BROKEN, copy_bundle
from tests.helpers.servers import reliability_env

pytestmark = pytest.mark.slow


def onnx_a_directory(path: Path) -> None:
    (path / "model.onnx").unlink()
    (path / "model.onnx").mkdir()


def empty_manifest(path: Path) -> None:
    (path / "manifest.json").write_text("")


def no_manifest(path: Path) -> None:
    (path / "manifest.json").unlink()


KINDS: dict[str, tuple[Callable[[Path], None], str]] = {
    **BROKEN,
    "no manifest": (no_manifest, "manifest.json is missing"),
    "empty manifest": (empty_manifest, "manifest.json"),
    "onnx is a directory": (onnx_a_directory, "missing"),
}


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.05)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_afm_serve_refuses_a_broken_bundle_at_start_up(bundle_dir: Path, tmp_path: Path,
                                                       kind: str) -> None:
    breaker, reason = KINDS[kind]
    broken = copy_bundle(bundle_dir, tmp_path / "broken")
    breaker(broken)
    port = free_port()
    args = [*SERVE, "--model-dir", str(broken), "--port", str(port), "--workers", "2"]
    process = subprocess.Popen(args, env=reliability_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None:
            assert not listening(port), f"{kind}: the server listened before refusing"
            assert time.monotonic() < deadline, f"{kind}: afm-serve neither started nor refused"
            time.sleep(0.02)
        stdout, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 1, (kind, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, (kind, stderr)
    assert lines[0].startswith("afm-serve: cannot serve: ") and reason in lines[0], lines[0]
    assert "Traceback" not in stderr + stdout
    assert not listening(port)
