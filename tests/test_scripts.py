"""scripts/: a sourced setup leaves the caller's shell as it was; the main job checks its port
before training and reuses a bundle that verifies."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import REPO

# The shell's state a sourced script must not change: options, shopt settings, directory.
STATE = 'echo "$-|$(set -o | tr -s "\\n\\t " " ")|$(shopt | tr -s "\\n\\t " " ")|$PWD"'


def bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True,
                          env={**base, **env}, timeout=600)


@pytest.mark.parametrize("options", ["set +e +u +o pipefail", "set -euo pipefail", "set -o noclobber"])
def test_sourced_setup_keeps_the_callers_shell_options(options: str, tmp_path: Path) -> None:
    result = bash(f"{options}; {STATE}; source {REPO}/scripts/setup.sh; {STATE}; "
                  'command -v afm-serve; echo "$MALLOC_MMAP_THRESHOLD_"', tmp_path)
    assert result.returncode == 0, result.stderr
    before, after, afm_serve, threshold = result.stdout.splitlines()
    assert before == after
    assert afm_serve == str(REPO / ".venv" / "bin" / "afm-serve")
    assert threshold == "4294967296"


def test_sourced_setup_adds_the_venv_to_path_once(tmp_path: Path) -> None:
    script = f"source {REPO}/scripts/setup.sh; source {REPO}/scripts/setup.sh; echo $PATH"
    path = bash(script, tmp_path).stdout.strip().split(":")
    assert path.count(str(REPO / ".venv" / "bin")) == 1


def test_a_failed_setup_returns_instead_of_closing_the_shell(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "setup.sh", tmp_path / "scripts")
    (tmp_path / "pyproject.toml").write_text("")
    script = f"set -u; source {tmp_path}/scripts/setup.sh; echo \"returned $?\"; {STATE}"
    result = bash(script, tmp_path, PYTHON="false")
    assert "Python 3.11+ is required" in result.stderr
    assert result.stdout.splitlines()[0] == "returned 1"
    assert not (tmp_path / ".venv").exists()


def main_job(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "AFM_PORT": str(port),
           "AFM_MODEL_DIR": str(tmp_path / "bundle"), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(["bash", str(REPO / "scripts" / "main.sh"), *args], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_main_job_checks_the_port_before_training(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        job = main_job(tmp_path, busy.getsockname()[1])
        output, _ = job.communicate(timeout=120)
    assert job.returncode == 2, output
    assert "cannot listen on 127.0.0.1:" in output and "AFM_PORT" in output
    assert "training" not in output and not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("form", ["--port {}", "--port={}"])
def test_main_job_takes_the_port_its_busy_port_advice_names(form: str, tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        job = main_job(tmp_path, 8000, *form.format(port).split())  # --port wins over AFM_PORT
        output, _ = job.communicate(timeout=120)
    assert job.returncode == 2, output
    assert f"cannot listen on 127.0.0.1:{port}" in output and "--port" in output


@pytest.mark.parametrize("args", [["--port"], ["--port", "http"], ["--port", "70000"]])
def test_main_job_refuses_a_port_that_is_not_one(args: list[str], tmp_path: Path) -> None:
    job = main_job(tmp_path, 8000, *args)
    output, _ = job.communicate(timeout=60)
    assert job.returncode == 2 and output.startswith("main.sh: ") and len(output.splitlines()) == 1


def test_main_job_refuses_an_unknown_argument(tmp_path: Path) -> None:
    job = main_job(tmp_path, 0, "--retrian")
    output, _ = job.communicate(timeout=60)
    assert job.returncode == 2 and "unknown argument '--retrian'" in output


def test_main_job_serves_a_bundle_that_is_already_there(bundle_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(bundle_dir, tmp_path / "bundle")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    job = main_job(tmp_path, port)
    try:
        assert job.stdout is not None
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while time.monotonic() < deadline and not any("serving on" in line for line in lines):
            lines.append(job.stdout.readline())
        text = "".join(lines)
        assert "serving the bundle already in" in text and "--retrain" in text, text
        assert "training" not in text
    finally:
        job.terminate()
        job.wait(timeout=30)
