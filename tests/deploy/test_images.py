"""Dockerfile, .dockerignore, the image pins and docker-compose.yml, checked without an
engine (deploy/ci/stack.sh builds and runs them for real)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from service.settings import Settings
from tests.helpers import REPO

BIN = Path(sys.executable).parent
DOCKERFILES = ["Dockerfile", "deploy/model.Dockerfile"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_is_clean(dockerfile: str) -> None:
    result = subprocess.run([str(BIN / "hadolint"), dockerfile], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def compose_config() -> dict:
    """The compose file as the compose binary resolves it (defaults filled in, no engine)."""
    result = subprocess.run([str(BIN / "docker-compose"), "config", "--format", "json"],
                            cwd=REPO, capture_output=True, text=True, env={"PATH": str(BIN)})
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_stack_orders_trainer_server_and_monitoring() -> None:
    services = compose_config()["services"]
    assert set(services) == {"trainer", "afm", "prometheus", "grafana"}
    assert services["afm"]["depends_on"]["trainer"]["condition"] == "service_completed_successfully"
    assert services["prometheus"]["depends_on"]["afm"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    for name in ("afm", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
        assert {port["host_ip"] for port in services[name]["ports"]} == {"127.0.0.1"}, name
    afm = services["afm"]
    assert afm["read_only"] and afm["build"]["target"] == "serve"
    assert services["trainer"]["build"]["target"] == "train"
    assert [v["read_only"] for v in afm["volumes"] if v["target"] == "/models"] == [True]


def test_every_service_setting_is_documented_in_the_compose_file() -> None:
    text = (REPO / "docker-compose.yml").read_text()
    missing = [f"AFM_{name.upper()}" for name in Settings.model_fields
               if f"AFM_{name.upper()}" not in text]
    assert missing == []


def test_healthcheck_and_entrypoint_are_exec_form_and_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    serve = text[text.index("AS serve\n"):]
    assert 'CMD ["afm-serve"]' in serve and "USER 10001:10001" in serve
    assert "/healthz" in serve and "urllib.request" in serve and "curl" not in serve


def test_dockerignore_sends_only_what_the_images_copy() -> None:
    lines = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then the few paths the Dockerfile copies
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for kept_out in ("tests", "runs", ".venv", "bench", "docs", ".git"):
        assert kept_out not in allowed


@pytest.mark.parametrize("extra", ["serve", "train"])
def test_image_pins_satisfy_the_project_requirements(extra: str) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"][extra]]
    lines = (REPO / "deploy" / "requirements" / f"{extra}.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    for requirement in wanted:
        if requirement.name == "torch":  # installed by the train image from the CPU build
            continue
        key = requirement.name.lower().replace("_", "-")
        assert key in pins, f"{requirement.name} is not pinned in {extra}.txt: run deploy/lock.sh"
        assert requirement.specifier.contains(pins[key]), (requirement, pins[key])
