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

from service.ops.settings import Settings
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


def test_the_compose_service_logs_impressions_to_a_volume_it_may_write() -> None:
    """The serving half of the daily loop as deployed: the log on, in a named volume whose
    mount point the serving image creates for its user (a new volume takes that owner)."""
    config = compose_config()
    afm = config["services"]["afm"]
    directory = afm["environment"]["AFM_IMPRESSION_LOG_DIR"]
    [mount] = [v for v in afm["volumes"] if v["target"] == directory]
    assert mount["type"] == "volume" and not mount.get("read_only", False)
    assert mount["source"] in config["volumes"]
    serve = (REPO / "Dockerfile").read_text().split("AS serve\n")[1]
    assert f"install -d -o afm -g afm {directory}" in serve
    assert serve.index(directory) < serve.index("USER 10001:10001")


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


def test_compose_builds_on_the_base_images_it_is_given() -> None:
    default = compose_config()["services"]
    assert default["afm"]["build"]["args"]["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"
    assert default["prometheus"]["image"] == "prom/prometheus:v2.53.3"
    env = {"PATH": str(BIN), "AFM_PYTHON_IMAGE": "afm-standin/python:3.11-slim-bookworm",
           "AFM_PROMETHEUS_IMAGE": "afm-standin/prometheus:v2.53.3"}
    result = subprocess.run([str(BIN / "docker-compose"), "config", "--format", "json"],
                            cwd=REPO, capture_output=True, text=True, env=env)
    services = json.loads(result.stdout)["services"]
    for name in ("afm", "trainer"):
        assert services[name]["build"]["args"]["PYTHON_IMAGE"] == env["AFM_PYTHON_IMAGE"]
    assert services["prometheus"]["image"] == env["AFM_PROMETHEUS_IMAGE"]


FAKE_DOCKER = """#!/bin/sh
echo "$*" >> "$CALLS"
case "$1 $2" in
  "image inspect") grep -qxF "$3" "$HAVE" 2>/dev/null; exit $? ;;
  "pull "*) exit 1 ;;
  "import "*) cat > /dev/null ;;
esac
exit 0
"""
FAKE_DEBOOTSTRAP = """#!/bin/sh
root=$4
mkdir -p "$root/etc/ssl/certs" "$root/etc/apt" "$root/usr/local/bin" "$root/usr/bin"
echo "I: Base system installed successfully."
"""


def test_standins_never_take_an_official_image_name(tmp_path: Path) -> None:
    """deploy/ci/standins.sh with no registry: stand-ins are made under afm-standin/ only,
    reused when present, and named to the build through AFM_*_IMAGE."""
    fakes = tmp_path / "bin"
    fakes.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("debootstrap", FAKE_DEBOOTSTRAP)):
        (fakes / name).write_text(text)
        (fakes / name).chmod(0o755)
    for tool in ("prometheus", "promtool"):
        (fakes / tool).write_text("")
    calls, have, out = tmp_path / "calls", tmp_path / "have", tmp_path / "images.env"
    env = {"PATH": f"{fakes}:/usr/bin:/bin", "CALLS": str(calls), "HAVE": str(have),
           "PROMETHEUS_BIN": str(fakes), "TMPDIR": str(tmp_path)}
    script = str(REPO / "deploy" / "ci" / "standins.sh")
    result = subprocess.run(["bash", script, str(out)], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert out.read_text().splitlines() == ["AFM_PYTHON_IMAGE=afm-standin/python:3.11-slim-bookworm",
                                            "AFM_PROMETHEUS_IMAGE=afm-standin/prometheus:v2.53.3"]
    made = [line.split()[-1] for line in calls.read_text().splitlines() if line.startswith("import")]
    made += [line.split()[line.split().index("-t") + 1] for line in calls.read_text().splitlines()
             if line.startswith("build")]
    assert made == ["afm-standin/python:3.11-slim-bookworm", "afm-standin/prometheus:v2.53.3"]
    assert not list(tmp_path.glob("afm-standin.*"))  # the build trees are gone
    have.write_text("afm-standin/python:3.11-slim-bookworm\nafm-standin/prometheus:v2.53.3\n")
    calls.unlink()
    again = subprocess.run(["bash", script, str(out)], env=env, capture_output=True, text=True)
    assert again.returncode == 0 and "reusing afm-standin/python" in again.stdout
    assert not [line for line in calls.read_text().splitlines() if line.startswith(("import", "build"))]


def test_compose_publishes_grpc_and_checks_its_health() -> None:
    afm = compose_config()["services"]["afm"]
    env = afm["environment"]
    targets = {int(port["target"]) for port in afm["ports"]}
    assert targets == {int(env["AFM_PORT"]), int(env["AFM_GRPC_PORT"])}
    check = " ".join(afm["healthcheck"]["test"])
    assert f"127.0.0.1:{env['AFM_GRPC_PORT']}" in check and "HealthCheckResponse.SERVING" in check
    assert f"127.0.0.1:{env['AFM_PORT']}/healthz" in check
    assert "EXPOSE 8000 8001" in (REPO / "Dockerfile").read_text()
