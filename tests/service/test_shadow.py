"""/admin/shadow: a candidate model scored beside the live one, after the answers, never
failing or changing them; its metrics move when it differs; refusals leave all as it was."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from model.bundle import Bundle
from service.app import create_app
from service.core.results import ShadowScored
from service.core.runtime import Runtime
from tests.helpers import TOKEN, SettingsFactory
from tests.helpers.bundles import copy_bundle, flip_a_byte

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def instances(count: int, seed: int) -> list[dict[str, str]]:
    rng = np.random.default_rng(seed)
    return [{f"f{i}": f"v{rng.integers(0, 30)}" for i in range(6)} for _ in range(count)]


@pytest.fixture
def root(models_root: Path, synthetic_fm: Path, mixed_dir: Path) -> Path:
    """v1 (live), v2 (the same model), fm (another model of the same fields), mixed (other
    fields altogether), broken (fails verification)."""
    copy_bundle(synthetic_fm, models_root / "fm")
    copy_bundle(mixed_dir, models_root / "mixed")
    flip_a_byte(copy_bundle(models_root / "v2", models_root / "broken", version="3"))
    return models_root


@pytest.fixture
def admin(make_settings: SettingsFactory, root: Path) -> Iterator[TestClient]:
    settings = make_settings(model_dir=root / "v1", models_root=root, admin_token=TOKEN)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        yield client


def runtime(client: TestClient) -> Runtime:
    return client.app.state.server.runtime  # type: ignore[attr-defined,no-any-return]


def shadow_metrics(client: TestClient) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for s in family.samples:
            if s.name.startswith("afm_shadow") and "_created" not in s.name and (
                    "le" not in s.labels or s.name == "afm_shadow_score_difference_bucket"):
                key = s.name + "".join(f"{{{v}}}" for v in s.labels.values() if v)
                out[key] = out.get(key, 0.0) + s.value
    return out


def within(found: dict[str, float], bound: float) -> float:
    """Score differences in (-bound, bound], from the histogram's buckets (it has no _sum:
    prometheus_client leaves it out of a histogram with negative buckets)."""
    bucket = "afm_shadow_score_difference_bucket{{{}}}"
    return found[bucket.format(bound)] - found[bucket.format(-bound)]


def settle(client: TestClient, requests: int, timeout_s: float = 10) -> dict[str, float]:
    """The shadow metrics once `requests` offers are accounted for (it scores after)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = shadow_metrics(client)
        done = sum(v for k, v in found.items() if k.startswith("afm_shadow_requests_total"))
        if done >= requests or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def predict_all(client: TestClient, batches: int, size: int = 5) -> list[Any]:
    answers = []
    for k in range(batches):
        response = client.post("/predict", json={"instances": instances(size, k)})
        assert response.status_code == 200
        answers.append(response.json()["predictions"])
    return answers


def shadow(client: TestClient, model_dir: str, fraction: float = 1.0) -> Any:
    return client.post("/admin/shadow", headers=AUTH, json={"model_dir": model_dir,
                                                            "fraction": fraction})


def test_the_shadow_routes_need_the_token(admin: TestClient, client: TestClient) -> None:
    assert client.get("/admin/shadow", headers=AUTH).status_code == 404  # no AFM_ADMIN_TOKEN
    assert admin.get("/admin/shadow").status_code == 401
    assert admin.post("/admin/shadow", json={"model_dir": "v2", "fraction": 1}).status_code == 401
    assert admin.delete("/admin/shadow", headers={"Authorization": "Bearer nope"}).status_code == 403


@pytest.mark.parametrize(("body", "status", "says"), [
    ({"model_dir": "broken", "fraction": 1}, 422, "does not match"),
    ({"model_dir": "../..", "fraction": 1}, 403, "inside the models root"),
    ({"model_dir": "absent", "fraction": 1}, 404, "not a directory"),
    ({"model_dir": "v2", "fraction": 1.5}, 400, "fraction"),
    ({"model_dir": "v2"}, 400, "fraction"),
])
def test_a_refused_shadow_changes_nothing(admin: TestClient, body: dict[str, Any], status: int,
                                          says: str) -> None:
    before = predict_all(admin, 2)
    response = admin.post("/admin/shadow", headers=AUTH, json=body)
    assert response.status_code == status and says in response.json()["error"], response.text
    assert admin.get("/admin/shadow", headers=AUTH).json()["shadow"] is None
    assert predict_all(admin, 2) == before


def test_the_same_model_in_the_shadow_agrees_exactly(admin: TestClient) -> None:
    response = shadow(admin, "v2")
    assert response.status_code == 200
    assert response.json()["shadow"]["model"] == {"name": "synthetic-afm", "version": "2"}
    assert response.json() == admin.get("/admin/shadow", headers=AUTH).json()
    predict_all(admin, 20)
    found = settle(admin, 20)
    assert found["afm_shadow_requests_total{scored}"] == 20
    assert found["afm_shadow_instances_scored_total"] == 100
    assert found["afm_shadow_score_difference_count"] == 100
    assert within(found, 0.01) == 100  # every difference in (-0.01, 0.01]
    assert found["afm_shadow_disagreements_total"] == 0
    assert found["afm_shadow_rank_pairs_total{concordant}"] > 0
    assert found.get("afm_shadow_rank_pairs_total{discordant}", 0) == 0
    assert found["afm_shadow_fraction"] == 1.0
    assert found["afm_shadow_run_duration_seconds_count"] >= 1


def test_another_model_in_the_shadow_moves_the_metrics_not_the_answers(admin: TestClient) -> None:
    before = predict_all(admin, 20)
    assert shadow(admin, "fm").status_code == 200
    assert predict_all(admin, 20) == before  # the live answers are the live model's
    found = settle(admin, 20)
    assert found["afm_shadow_requests_total{scored}"] == 20
    assert within(found, 0.01) < found["afm_shadow_score_difference_count"] == 100
    assert found["afm_shadow_disagreements_total"] > 0
    assert found["afm_shadow_rank_pairs_total{discordant}"] > 0


def test_a_shadow_of_other_fields_scores_what_it_can(admin: TestClient) -> None:
    """The mixed model knows none of f0..f5: it scores the instances as empty ones; tensor
    requests, in the live model's feature space, it cannot read and skips."""
    assert shadow(admin, "mixed").status_code == 200
    predict_all(admin, 3)
    encoded = admin.post("/encode", json={"instances": instances(2, 0)}).json()
    assert admin.post("/v2/models/synthetic-afm/infer",
                      json={"inputs": encoded["inputs"]}).status_code == 200
    found = settle(admin, 4)
    assert found["afm_shadow_requests_total{scored}"] == 3
    assert found["afm_shadow_requests_total{skipped}"] == 1
    assert found.get("afm_shadow_requests_total{failed}", 0) == 0


def test_tensor_requests_are_shadowed_in_the_same_feature_space(admin: TestClient) -> None:
    assert shadow(admin, "v2").status_code == 200
    encoded = admin.post("/encode", json={"instances": instances(4, 0)}).json()
    assert admin.post("/v2/models/synthetic-afm/infer",
                      json={"inputs": encoded["inputs"]}).status_code == 200
    found = settle(admin, 1)
    assert found["afm_shadow_requests_total{scored}"] == 1
    assert found["afm_shadow_instances_scored_total"] == 4


def test_a_failing_shadow_never_fails_a_live_request(admin: TestClient,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert shadow(admin, "v2").status_code == 200
    candidate = runtime(admin).shadow.model
    assert candidate is not None

    def broken(*_: Any) -> Any:
        raise RuntimeError("the shadow model broke")

    monkeypatch.setattr(candidate.bundle, "run", broken)
    predict_all(admin, 5)
    found = settle(admin, 5)
    assert found["afm_shadow_requests_total{failed}"] == 5


def test_a_full_queue_drops_offers_and_counts_them(make_settings: SettingsFactory,
                                                   root: Path) -> None:
    settings = make_settings(model_dir=root / "v1", models_root=root, admin_token=TOKEN,
                             shadow_max_pending=4)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        assert shadow(client, "v2").status_code == 200
        response = client.post("/predict", json={"instances": instances(5, 0)})
        assert response.status_code == 200  # more than the queue holds: dropped, answered
        found = settle(client, 1)
    assert found["afm_shadow_requests_total{dropped}"] == 1


def test_fraction_zero_scores_nothing_and_delete_stops_it(admin: TestClient) -> None:
    assert shadow(admin, "v2", fraction=0.0).status_code == 200
    predict_all(admin, 5)
    time.sleep(0.2)
    assert shadow_metrics(admin).get("afm_shadow_requests_total{scored}", 0) == 0
    assert shadow(admin, "v2", fraction=1.0).status_code == 200
    deleted = admin.delete("/admin/shadow", headers=AUTH)
    assert deleted.status_code == 200 and deleted.json()["shadow"] is None
    predict_all(admin, 5)
    time.sleep(0.2)
    found = shadow_metrics(admin)
    assert found.get("afm_shadow_requests_total{scored}", 0) == 0
    assert found["afm_shadow_fraction"] == 0


def test_promoting_the_shadow_by_a_reload_ends_the_shadowing(admin: TestClient, root: Path) -> None:
    assert shadow(admin, "fm").status_code == 200
    reloaded = admin.post("/admin/reload", headers=AUTH, json={"model_dir": "fm"})
    assert reloaded.status_code == 200
    assert admin.get("/admin/shadow", headers=AUTH).json() == {
        "model": reloaded.json()["model"], "shadow": None}


def test_shadow_scores_reach_the_listeners_beside_the_live_ones(admin: TestClient) -> None:
    heard: list[ShadowScored] = []
    runtime(admin).shadow.listeners.append(heard.append)
    assert shadow(admin, "fm").status_code == 200
    live = admin.post("/predict", json={"instances": instances(3, 0)}).json()["predictions"]
    settle(admin, 1)
    assert len(heard) == 1
    scored = heard[0]
    assert (scored.live.version, scored.shadow.name) == ("1", "synthetic-fm")
    assert scored.live_scores.tolist() == pytest.approx([p["score"] for p in live])
    fm = Bundle.load(runtime(admin).shadow.model.directory)  # type: ignore[union-attr]
    encoded = fm.features.encode(instances(3, 0))
    assert scored.scores.tolist() == pytest.approx(fm.run(encoded.indices, encoded.weights)
                                                   .score.tolist(), abs=1e-6)


def test_a_broken_bundle_on_disk_after_loading_does_not_matter(admin: TestClient,
                                                                root: Path) -> None:
    """The shadow model is in memory once loaded: its files may go."""
    assert shadow(admin, "v2").status_code == 200
    shutil.rmtree(root / "v2")
    predict_all(admin, 3)
    assert settle(admin, 3)["afm_shadow_requests_total{scored}"] == 3
