"""Scoring must not leave onnxruntime's telemetry files behind (CI leaves the machine as it
found it; a model server does not phone home unless asked)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# onnxruntime also stays quiet where these say it runs in CI; the test sets the switch itself.
CI_VARIABLES = {"ORT_DISABLE_TELEMETRY", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TF_BUILD"}


def test_loading_the_scoring_path_starts_no_onnxruntime_telemetry(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in CI_VARIABLES}
    env["HOME"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", "import model.bundle, onnxruntime"], cwd=REPO, env=env,
                   check=True)
    assert not (tmp_path / ".cache").exists()
    env["ORT_DISABLE_TELEMETRY"] = "0"  # the operator's opt-in still works: the test can fail
    subprocess.run([sys.executable, "-c", "import model.bundle"], cwd=REPO, env=env, check=True)
    assert (tmp_path / ".cache" / "Microsoft").is_dir()
