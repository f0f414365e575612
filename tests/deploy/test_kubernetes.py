"""deploy/k8s: every manifest validates against the Kubernetes schemas (strict: an unknown
key is an error), and the custom resources against their operators' models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor
from kubernetes_validate import ValidationError, validate
from pydantic import BaseModel, ConfigDict

from service.grpc.server import SERVICE_NAME
from tests.helpers import REPO

K8S = REPO / "deploy" / "k8s"
VERSION = "1.31.0"
CORE_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def manifests() -> list[Path]:
    return [K8S / name for name in load(K8S / "kustomization.yaml")["resources"]]


@pytest.mark.parametrize("path", manifests(), ids=lambda p: p.name)
def test_core_manifests_validate_strictly(path: Path) -> None:
    doc = load(path)
    if doc["kind"] in CORE_KINDS:
        validate(doc, VERSION, strict=True)


def test_the_validator_rejects_unknown_keys_and_wrong_types() -> None:
    deployment = load(K8S / "deployment.yaml")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "two"
    for doc in (typo, wrong):
        with pytest.raises(ValidationError):
            validate(doc, VERSION, strict=True)


def test_kustomization_covers_every_core_manifest() -> None:
    kinds = {load(path)["kind"] for path in manifests()}
    assert CORE_KINDS | {"ServiceMonitor"} == kinds


def test_probes_and_service_match_the_servers_routes_and_port() -> None:
    deployment = load(K8S / "deployment.yaml")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"http": int(env["AFM_PORT"]), "grpc": int(env["AFM_GRPC_PORT"])}
    assert container["readinessProbe"]["grpc"] == {"port": ports["grpc"], "service": SERVICE_NAME}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = load(K8S / "service.yaml")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("http", ports["http"], "http"), ("grpc", ports["grpc"], "grpc")}
    assert [p.get("appProtocol") for p in service["spec"]["ports"]] == [None, "kubernetes.io/h2c"]
    pdb, hpa = load(K8S / "pdb.yaml"), load(K8S / "hpa.yaml")
    assert pdb["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    # afm-serve drains for 30 s after SIGTERM; the pod must be given that and the preStop.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 35


def unknown_keys(given: Any, parsed: Any, where: str = "") -> list[str]:
    """Keys of `given` that the model did not keep: misspelt or unsupported fields."""
    if isinstance(given, dict) and isinstance(parsed, dict):
        return [found for key, value in given.items()
                for found in ([f"{where}.{key}"] if key not in parsed
                              else unknown_keys(value, parsed[key], f"{where}.{key}"))]
    if isinstance(given, list) and isinstance(parsed, list):
        return [found for i, (a, b) in enumerate(zip(given, parsed, strict=True))
                for found in unknown_keys(a, b, f"{where}[{i}]")]
    return []


def check_service_monitor(doc: dict[str, Any]) -> list[str]:
    parsed = ServiceMonitor.model_validate(doc)
    return unknown_keys(doc, parsed.model_dump(by_alias=True, exclude_unset=True))


def test_service_monitor_is_a_valid_prometheus_operator_resource() -> None:
    doc = load(K8S / "servicemonitor.yaml")
    assert check_service_monitor(doc) == []
    service = load(K8S / "service.yaml")
    assert doc["spec"]["selector"]["matchLabels"] == service["metadata"]["labels"]
    assert doc["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    typo = copy.deepcopy(doc)
    typo["spec"]["endpoints"][0]["intervall"] = "15s"
    assert check_service_monitor(typo) == [".spec.endpoints[0].intervall"]


class PredictorExtensions(BaseModel):
    """KServe's ComponentExtensionSpec fields this project uses, with their types; the rest
    of a predictor is a Kubernetes PodSpec, validated against the Kubernetes schema."""

    model_config = ConfigDict(extra="forbid")
    minReplicas: int
    maxReplicas: int
    scaleMetric: str
    scaleTarget: int


def test_kserve_predictor_is_a_pod_spec_plus_component_extensions() -> None:
    doc = load(K8S / "kserve" / "inferenceservice.yaml")
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    predictor = dict(doc["spec"]["predictor"])
    pod_spec = {"containers": predictor.pop("containers")}
    PredictorExtensions.model_validate(predictor)
    validate({"apiVersion": "v1", "kind": "Pod", "metadata": doc["metadata"], "spec": pod_spec},
             VERSION, strict=True)
    container = pod_spec["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert container["name"] == "kserve-container"  # the name KServe's storage initializer mounts into
    assert env["AFM_MODEL_DIR"] == "/mnt/models" and "STORAGE_URI" in env
    assert container["ports"][0]["containerPort"] == int(env["AFM_PORT"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # :explain reaches the predictor only while no explainer component claims it
    assert set(doc["spec"]) == {"predictor"}
    assert env["AFM_MONITOR"] == "true"


def test_the_impression_log_goes_to_a_writable_volume_of_the_pod() -> None:
    pod = load(K8S / "deployment.yaml")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[env["AFM_IMPRESSION_LOG_DIR"]]
    assert not mount.get("readOnly", False)
    volume = {v["name"]: v for v in pod["volumes"]}[mount["name"]]
    assert "sizeLimit" in volume["emptyDir"]  # a full log cannot take the node's disk
    assert pod["securityContext"]["fsGroup"] == 10001  # the server's group may write to it
