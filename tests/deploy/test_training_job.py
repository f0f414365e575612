"""deploy/k8s/training: the torchrun Job validates strictly, and its pods can find each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubernetes_validate import validate

from tests.helpers import REPO

TRAINING = REPO / "deploy" / "k8s" / "training"
VERSION = "1.31.0"


def load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((TRAINING / name).read_text()))


def flags(command: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("--").partition("=")[::2] for arg in command if arg.startswith("--"))


def test_every_training_manifest_validates_strictly() -> None:
    for name in load("kustomization.yaml")["resources"]:
        validate(load(name), VERSION, strict=True)


def test_torchrun_rendezvous_matches_the_job_and_its_headless_service() -> None:
    job, service = load("job.yaml"), load("service.yaml")
    spec = job["spec"]
    pod = spec["template"]["spec"]
    command = pod["containers"][0]["command"]
    torchrun = flags(command[: command.index("afm-train")])
    assert command[0] == "torchrun" and "no-python" in torchrun
    assert spec["completionMode"] == "Indexed"
    assert int(torchrun["nnodes"]) == spec["completions"] == spec["parallelism"]
    host, _, port = torchrun["rdzv-endpoint"].partition(":")
    assert host == f"{job['metadata']['name']}-0.{pod['subdomain']}"
    assert service["metadata"]["name"] == pod["subdomain"] and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    container_port = pod["containers"][0]["ports"][0]["containerPort"]
    assert int(port) == service["spec"]["ports"][0]["port"] == container_port


def test_afm_train_arguments_name_a_config_of_the_image() -> None:
    command = load("job.yaml")["spec"]["template"]["spec"]["containers"][0]["command"]
    train = flags(command[command.index("afm-train") + 1 :])
    assert (REPO / train["config"]).is_file()
    assert Path(train["out"]).is_absolute()
    overrides = [arg.removeprefix("--set=") for arg in command if arg.startswith("--set=")]
    assert "data.cache_dir" in {override.partition("=")[0] for override in overrides}
