"""deploy/prometheus and deploy/grafana: every query names a series the service really
exports (read from a scrape of the real app), the rules pass promtool and fire as meant,
and Grafana's provisioning points at what the compose file mounts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from service.app import create_app
from service.ops.settings import Settings
from tests.helpers import REPO

DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "afm.json"
RULES = DEPLOY / "prometheus" / "rules.yml"
TOKEN = "deploy-test-token-0123456789"
SERIES = re.compile(r"\b(afm_[a-z0-9_]+)")
LABELS = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)|\{\{\s*(\w+)\s*\}\}|\{(\w+)\s*[=!]~?")
PROMETHEUS_OWN = {"job", "instance", "le"}


@pytest.fixture(scope="module")
def scrape(bundle_dir: Path) -> tuple[set[str], set[str]]:
    """Series and label names of a scrape after traffic that touches every metric (drift
    monitoring on, a shadow model beside the live one)."""
    settings = Settings(model_dir=bundle_dir, models_root=bundle_dir.parent, admin_token=SecretStr(TOKEN),
                        monitor=True, monitor_min_instances=1)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings, CollectorRegistry())) as client:
        shadow = {"model_dir": bundle_dir.name, "fraction": 1.0}
        assert client.post("/admin/shadow", headers=auth, json=shadow).status_code == 200
        instances = [{"f0": "v3", "f1": "never-seen"}, {"f0": "v1", "f1": "v2", "f2": "v3"}]
        assert client.post("/predict", json={"instances": instances}).status_code == 200
        assert client.post("/predict", json={"instances": instances}).status_code == 200
        time.sleep(0.2)  # the shadow model scores after the answers
        reload = client.post("/admin/reload", headers=auth)
        assert reload.status_code == 200
        assert client.post("/predict", json={"instances": instances}).status_code == 200
        text = client.get("/metrics").text
    series, labels = set(), set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.add(sample.name)
            labels |= set(sample.labels)
    return series, labels


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"]]
    return queries


def rule_queries() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def names_in(queries: list[str]) -> tuple[set[str], set[str]]:
    series = {name for q in queries for name in SERIES.findall(q)}
    labels = set()
    for q in queries:
        for by, legend, matcher in LABELS.findall(q):
            labels |= {name.strip() for name in by.split(",") if name.strip()} | {legend, matcher}
    return series, labels - {""}


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_query_names_series_and_labels_the_service_exports(
    source: str, scrape: tuple[set[str], set[str]]
) -> None:
    queries = dashboard_queries() if source == "dashboard" else rule_queries()
    series, labels = names_in(queries)
    exported_series, exported_labels = scrape
    assert series and series <= exported_series, series - exported_series
    assert labels - PROMETHEUS_OWN <= exported_labels, labels - PROMETHEUS_OWN - exported_labels


def test_the_check_would_catch_a_misspelt_metric(scrape: tuple[set[str], set[str]]) -> None:
    series, _ = names_in(["rate(afm_request_total[5m])"])
    assert not series <= scrape[0]


def test_dashboard_shows_what_operators_watch() -> None:
    series, _ = names_in(dashboard_queries())
    for watched in ("afm_requests_total", "afm_request_duration_seconds_bucket",
                    "afm_batch_size_bucket", "afm_predicted_score_bucket",
                    "afm_oov_values_total", "afm_model_info", "afm_reloads_total",
                    "afm_drift_psi", "afm_drift_score_psi", "afm_drift_oov_share",
                    "afm_pair_contribution", "afm_shadow_info", "afm_shadow_score_difference_bucket",
                    "afm_shadow_disagreements_total", "afm_shadow_rank_pairs_total",
                    "afm_shadow_run_duration_seconds_bucket", "afm_shadow_requests_total"):
        assert watched in series


def test_grafana_provisioning_matches_the_dashboard_and_the_compose_mounts() -> None:
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/afm.yml").read_text())
    dashboard = json.loads(DASHBOARD.read_text())
    uid = datasource["datasources"][0]["uid"]
    assert {panel["datasource"]["uid"] for panel in dashboard["panels"]} == {uid}
    grafana = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian package prometheus; .ci/run installs it with "
           "deploy/ci/tools.sh before the tests)",
)


@needs_promtool
@pytest.mark.parametrize("args", [
    ["check", "config", "deploy/prometheus/prometheus.yml"],
    ["check", "rules", "deploy/prometheus/rules.yml"],
    ["test", "rules", "deploy/prometheus/rules.test.yml"],
], ids=lambda a: " ".join(a[:2]))
def test_promtool(args: list[str]) -> None:
    result = subprocess.run([str(PROMTOOL), *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
