"""Checks a running compose stack from outside: the service through its published port,
then Prometheus' HTTP API until it has scraped the service and loaded the alert rules,
then (with --dashboard) every query of the Grafana dashboard against those real series.
Grafana itself is not run here (no registry serves its image, Debian does not package it).

With --admin-token, a shadow model (the served bundle again) is set beside the live one
first, so the shadow panels have series. With --drift, traffic with one field shifted (every
instance holds that field's first value, the others are drawn from their vocabularies) is
sent, and the field's drift alert is read from Prometheus' ALERTS series (pending or
firing: the rule matched the real series; it fires after its `for` duration).

    python deploy/ci/smoke.py --service http://127.0.0.1:18000 --prometheus http://127.0.0.1:19090 \
        --dashboard deploy/grafana/dashboards/afm.json --admin-token TOKEN --drift
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

RULES = {"AFMHighErrorRate", "AFMHighLatencyP99", "AFMNotReady", "AFMNoModelServing", "AFMReloadFailed",
         "AFMFieldDriftWatch", "AFMFieldDriftAct", "AFMScoreDriftWatch", "AFMScoreDriftAct",
         "AFMPairContributionShiftWatch", "AFMPairContributionShiftAct", "AFMShadowDropping",
         "AFMShadowFailing"}
DRIFT_INSTANCES = 1500  # over AFM_MONITOR_MIN_INSTANCES (1,000 by default)


def check_service(http: httpx.Client) -> str:
    """Predictions, explanations and an Open Inference Protocol call; returns the model name."""
    assert http.get("/readyz").status_code == 200, "not ready"
    meta = http.get("/metadata").json()
    fields = [field["name"] for field in meta["fields"]]
    instance = {name: "v1" for name in fields}
    instance[fields[0]] = "never-seen"  # out of vocabulary: feeds the OOV metric

    predicted = http.post("/predict", json={"instances": [instance] * 3, "explain": True})
    assert predicted.status_code == 200, predicted.text
    scores = [p["score"] for p in predicted.json()["predictions"]]
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores), scores

    explained = http.get("/explain", params=instance)
    assert explained.status_code == 200, explained.text

    rows, width = 2, len(fields)
    inputs = [
        {"name": "indices", "shape": [rows, width, 1], "datatype": "INT64",
         "data": [0] * (rows * width)},
        {"name": "weights", "shape": [rows, width, 1], "datatype": "FP32",
         "data": [0.0] * (rows * width)},
    ]
    inferred = http.post(f"/v2/models/{meta['name']}/infer", json={"inputs": inputs})
    assert inferred.status_code == 200, inferred.text
    outputs = {o["name"]: o for o in inferred.json()["outputs"]}
    assert outputs["score"]["shape"] == [rows], outputs["score"]

    v1 = http.post(f"/v1/models/{meta['name']}:explain", json={"instances": [instance]})
    assert v1.status_code == 200, v1.text
    explanation = v1.json()["explanations"][0]
    total = explanation["bias"] + sum(explanation["linear"]["weights"]) + explanation["interaction"]
    assert abs(total - explanation["score"]) < 1e-5, explanation

    bad = http.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "error" in bad.json(), bad.text
    docs = http.get("/docs")
    assert docs.status_code == 200 and "/docs/assets/swagger-ui-bundle.js" in docs.text, docs.text[:200]
    assert http.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
    print(f"service: model {meta['name']} {meta['version']}, scores {scores[0]:.4f}, "
          f"explanations, OIP infer and KServe V1 :explain answered, bad JSON refused with 400, "
          f"/docs served offline")
    return str(meta["name"])


def check_prometheus(http: httpx.Client, model: str, timeout_s: float) -> None:
    """The service's series ingested (requests, model info) and every alert rule loaded."""
    def query(expr: str) -> list[dict[str, Any]]:
        body = http.get("/api/v1/query", params={"query": expr}).json()
        return list(body["data"]["result"]) if body.get("status") == "success" else []

    def rules() -> set[str]:
        body = http.get("/api/v1/rules").json()
        return {rule["name"] for group in body["data"]["groups"] for rule in group["rules"]
                if rule.get("health") == "ok"}

    wait_for("the service's target up", lambda: query('up{job="afm"} == 1'), timeout_s)
    wait_for("/predict requests ingested",
             lambda: query('afm_requests_total{route="/predict", status="200"}'), timeout_s)
    wait_for("out-of-vocabulary values ingested", lambda: query("afm_oov_values_total"), timeout_s)
    info = wait_for("model info ingested", lambda: query(f'afm_model_info{{name="{model}"}} == 1'),
                    timeout_s)
    loaded = wait_for("alert rules loaded and evaluated", lambda: RULES <= rules(), timeout_s)
    assert loaded
    print(f"prometheus: target up, service series ingested (model {info[0]['metric']['version']}), "
          f"{len(RULES)} alert rules healthy")


def start_shadow(http: httpx.Client, token: str) -> None:
    """The served bundle as its own shadow model, on every request."""
    response = http.post("/admin/shadow", json={"model_dir": "default", "fraction": 1.0},
                         headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    print(f"shadow: {response.json()['shadow']['model']} beside the live model")


def send_shifted_traffic(http: httpx.Client) -> str:
    """Instances with every field drawn from what the model knows of it (its vocabulary, its
    numeric centre and scale, its buckets), but one categorical field held at one value;
    returns that field's name."""
    fields = http.get("/ui/form").json()["fields"]
    shifted = next((f for f in fields if f["kind"] == "categorical" and f["values"]), None)
    assert shifted is not None, "the model has no categorical field to shift"
    rng = random.Random(0)
    for _ in range(DRIFT_INSTANCES // 100):
        rows = [{f["name"]: draw(f, rng) for f in fields} for _ in range(100)]
        for row in rows:
            row[shifted["name"]] = shifted["values"][0]
        response = http.post("/predict", json={"instances": rows})
        assert response.status_code == 200, response.text
    print(f"drift: {DRIFT_INSTANCES} instances sent with field {shifted['name']} held at "
          f"{shifted['values'][0]!r}")
    return str(shifted["name"])


def draw(field: dict[str, Any], rng: random.Random) -> Any:
    if field["kind"] == "numeric":
        return rng.gauss(field["center"], field["scale"])
    if field["kind"] == "bucketized":
        edges = field["boundaries"] or [0.0]
        return rng.uniform(edges[0] - 1, edges[-1] + 1)
    value = rng.choice(field["values"]) if field["values"] else None
    return [value] if field["kind"] == "multi" and value is not None else value


def check_drift_alert(http: httpx.Client, field: str, timeout_s: float) -> None:
    """The field's drift alert in ALERTS (pending, then firing after the rule's `for`)."""
    def alerts() -> list[dict[str, Any]]:
        body = http.get("/api/v1/query", params={"query": 'ALERTS{alertname=~"AFMFieldDrift.*"}'}).json()
        return list(body["data"]["result"]) if body.get("status") == "success" else []

    found = wait_for(f"a drift alert for field {field}",
                     lambda: [a for a in alerts() if a["metric"].get("field") == field], timeout_s)
    states = sorted({f"{a['metric']['alertname']} {a['metric']['alertstate']}" for a in found})
    others = sorted({a["metric"]["field"] for a in alerts()} - {field})
    assert any(a["metric"]["alertname"] == "AFMFieldDriftAct" for a in found), found
    print(f"prometheus: ALERTS has {', '.join(states)} for field {field}; drift alerts for "
          f"other fields: {', '.join(others) or 'none'}")


# Grafana's variables, as the dashboard's defaults set them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$route": "/predict"}


def check_dashboard(http: httpx.Client, dashboard: Path, timeout_s: float) -> None:
    """Every panel query is valid PromQL for this Prometheus and, once two scrapes are in,
    returns series; the only ones allowed to stay empty count events that have not
    happened (5xx errors, reloads)."""
    panels = json.loads(dashboard.read_text())["panels"]
    queries = {target["expr"]: panel["title"] for panel in panels for target in panel.get("targets", [])}

    def run(expr: str) -> tuple[str, list[Any]]:
        for name, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(name, value)
        body = http.get("/api/v1/query", params={"query": expr}).json()
        return str(body.get("status")), list(body.get("data", {}).get("result", []))

    for expr, title in queries.items():
        status, _ = run(expr)
        assert status == "success", f"dashboard panel {title!r}: Prometheus refuses {expr!r}"
    may_be_empty = ("5..", "afm_reloads_total")

    def empty() -> list[str]:
        return [expr for expr in queries if not run(expr)[1] and not any(m in expr for m in may_be_empty)]

    wait_for("every dashboard query to return series", lambda: not empty() or None, timeout_s)
    print(f"grafana dashboard: {len(queries)} queries of {len(panels)} panels valid against the "
          f"real series, all with data but those counting 5xx errors and reloads")


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = probe()
        except httpx.HTTPError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise SystemExit(f"smoke: timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--service", required=True)
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--dashboard", type=Path, help="a Grafana dashboard whose queries to check")
    parser.add_argument("--admin-token", help="AFM_ADMIN_TOKEN: set a shadow model first")
    parser.add_argument("--drift", action="store_true",
                        help="send traffic with a shifted field and read its alert from ALERTS")
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    shifted = None
    with httpx.Client(base_url=args.service, timeout=30) as http:
        if args.admin_token:
            start_shadow(http, args.admin_token)
        model = check_service(http)
        if args.drift:
            shifted = send_shifted_traffic(http)
    with httpx.Client(base_url=args.prometheus, timeout=10) as http:
        check_prometheus(http, model, args.timeout)
        if shifted is not None:
            check_drift_alert(http, shifted, args.timeout)
        if args.dashboard:
            check_dashboard(http, args.dashboard, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
