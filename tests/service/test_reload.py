"""POST /admin/reload: token, path confinement, atomic swap, broken bundles refused."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from model import verification
from model.bundle import Bundle
from model.manifest import ONNX_DATA_FILE
from model.verification import VerifiedFiles
from service.app import create_app
from tests.helpers import INSTANCE, TOKEN, SettingsFactory
from tests.helpers.bundles import BROKEN, copy_bundle, flip_a_byte

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def served_version(client: TestClient) -> str:
    response = client.post("/predict", json={"instances": [INSTANCE]})
    assert response.status_code == 200
    return str(response.json()["model"]["version"])


@pytest.fixture
def admin(make_settings: SettingsFactory, models_root: Path) -> Any:
    settings = make_settings(model_dir=models_root / "v1", models_root=models_root,
                             admin_token=TOKEN)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        yield client


def test_reload_route_does_not_exist_without_a_token(client: TestClient) -> None:
    assert client.post("/admin/reload", headers=AUTH).status_code == 404


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401), ({"Authorization": "Basic abc"}, 401), ({"Authorization": "Bearer"}, 401),
    ({"Authorization": "Bearer wrong-token-0123456789"}, 403),
    ({"Authorization": f"Bearer {TOKEN}x"}, 403),
])
def test_reload_needs_the_bearer_token(admin: TestClient, headers: dict[str, str],
                                       status: int) -> None:
    response = admin.post("/admin/reload", headers=headers, json={"model_dir": "v2"})
    assert response.status_code == status
    assert "token" in response.json()["error"]
    assert served_version(admin) == "1"


def test_reload_swaps_to_another_bundle_and_back(admin: TestClient) -> None:
    response = admin.post("/admin/reload", headers=AUTH, json={"model_dir": "v2"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["version"] == "2" and body["previous"]["version"] == "1"
    assert served_version(admin) == "2"
    assert admin.get("/metadata").json()["version"] == "2"
    assert admin.post("/admin/reload", headers=AUTH).json()["model"]["version"] == "2"
    metrics = admin.get("/metrics").text
    assert 'afm_model_info{name="synthetic-afm",sha256="' in metrics
    assert 'afm_reloads_total{outcome="success"} 2.0' in metrics


@pytest.mark.parametrize(("name", "status"), [
    ("..", 403), ("../..", 403), ("/etc", 403), ("v1/../../x", 403), ("nope", 404),
    ("v1\x00", 400),
])
def test_reload_may_not_leave_the_models_root(admin: TestClient, name: str, status: int) -> None:
    response = admin.post("/admin/reload", headers=AUTH, json={"model_dir": name})
    assert response.status_code == status, response.text
    assert served_version(admin) == "1"


def test_a_reload_body_that_fastapi_validates_is_400_in_user_terms(admin: TestClient) -> None:
    response = admin.post("/admin/reload", headers=AUTH, json={"model_dir": 7})
    assert response.status_code == 400
    assert response.json()["error"] == "model_dir must be a valid string, got 7"
    response = admin.post("/admin/reload", headers=AUTH, json={"modeldir": "v2"})
    assert response.json()["error"] == "unknown key 'modeldir'"


def test_reload_refuses_symlinks_out_of_the_root(admin: TestClient, models_root: Path,
                                                 bundle_dir: Path) -> None:
    (models_root / "escape").symlink_to(bundle_dir, target_is_directory=True)
    response = admin.post("/admin/reload", headers=AUTH, json={"model_dir": "escape"})
    assert response.status_code == 403


def test_without_a_models_root_only_the_served_bundle_reloads(
    make_settings: SettingsFactory, models_root: Path
) -> None:
    settings = make_settings(model_dir=models_root / "v1", admin_token=TOKEN)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        assert client.post("/admin/reload", headers=AUTH).status_code == 200
        response = client.post("/admin/reload", headers=AUTH,
                               json={"model_dir": str(models_root / "v2")})
        assert response.status_code == 403


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_broken_bundle_is_refused_and_the_old_model_keeps_serving(
    admin: TestClient, models_root: Path, bundle_dir: Path, kind: str
) -> None:
    breaker, reason = BROKEN[kind]
    broken = copy_bundle(bundle_dir, models_root / "broken", version="3")
    breaker(broken)
    response = admin.post("/admin/reload", headers=AUTH, json={"model_dir": "broken"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error.startswith("reload refused, still serving version 1")
    assert reason in error
    assert str(models_root) not in error and "Traceback" not in error
    assert served_version(admin) == "1"
    assert 'afm_reloads_total{outcome="refused"} 1.0' in admin.get("/metrics").text


def test_requests_finish_on_the_model_they_started_with(
    make_settings: SettingsFactory, models_root: Path
) -> None:
    """A request waiting in the batcher when the swap happens is answered by version 1."""
    settings = make_settings(model_dir=models_root / "v1", models_root=models_root,
                             batch_max_wait_us=1_000_000)
    app = create_app(settings, registry=CollectorRegistry())
    runtime = app.state.runtime

    async def scenario() -> tuple[str, str]:
        async with app.router.lifespan_context(app):
            # the first request of a loop turn runs at once; the second waits for its batch
            first = asyncio.create_task(runtime.predict([INSTANCE], explain=False))
            started = asyncio.create_task(runtime.predict([INSTANCE], explain=False))
            await first
            await asyncio.sleep(0.05)  # encoded on v1, now waiting for its batch
            assert not started.done()
            await runtime.reload("v2")
            later = await runtime.predict([INSTANCE] * 300, explain=False)  # > batch: direct
            return (await started).model.version, later.model.version

    assert asyncio.run(scenario()) == ("1", "2")


def test_reload_under_concurrent_load_loses_no_request(
    make_settings: SettingsFactory, models_root: Path, bundle_dir: Path
) -> None:
    broken = copy_bundle(bundle_dir, models_root / "broken", version="3")
    flip_a_byte(broken)
    settings = make_settings(model_dir=models_root / "v1", models_root=models_root,
                             admin_token=TOKEN, batch_max_wait_us=2000)
    app = create_app(settings, registry=CollectorRegistry())
    plan = ["v2", "broken", "v1", "broken", "v2", "v1", "v2"]

    async def scenario() -> tuple[list[httpx.Response], list[int]]:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://test"
        ) as http:
            async def load() -> list[httpx.Response]:
                out = []
                for _ in range(25):
                    out.append(await http.post("/predict", json={"instances": [INSTANCE]}))
                return out

            async def reloads() -> list[int]:
                codes = []
                for name in plan:
                    response = await http.post("/admin/reload", headers=AUTH,
                                               json={"model_dir": name})
                    codes.append(response.status_code)
                    await asyncio.sleep(0.005)
                return codes

            reloading = asyncio.create_task(reloads())
            loads = await asyncio.gather(*(load() for _ in range(8)))
            return [r for batch in loads for r in batch], await reloading

    responses, codes = asyncio.run(scenario())
    assert codes == [200, 422, 200, 422, 200, 200, 200]
    assert len(responses) == 200
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["model"]["version"] for r in responses} <= {"1", "2"}
    assert os.path.isdir(models_root / "v1")


def test_a_worker_takes_the_digests_of_the_server_and_refuses_a_file_changed_since(
        make_settings: SettingsFactory, models_root: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification, "SETTLED_S", 0.05)
    monkeypatch.setattr(verification, "_here", {})
    time.sleep(0.1)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("v1", "v2"):  # afm-serve's check, and another worker's reload
        Bundle.load(models_root / name, verified=VerifiedFiles(run_dir))
    monkeypatch.setattr(verification, "_here", {})  # this worker's process
    hashed: list[str] = []
    hash_file = verification.hash_file

    def counting(path: Path) -> tuple[str, verification.Identity]:
        hashed.append(path.name)
        return hash_file(path)

    monkeypatch.setattr(verification, "hash_file", counting)
    flip_a_byte_of(models_root / "v2" / ONNX_DATA_FILE)
    settings = make_settings(model_dir=models_root / "v1", models_root=models_root,
                             admin_token=TOKEN, run_dir=run_dir)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        assert hashed == []
        response = client.post("/admin/reload", headers=AUTH, json={"model_dir": "v2"})
        assert response.status_code == 422
        assert f"{ONNX_DATA_FILE} sha256" in response.json()["error"]
        assert served_version(client) == "1"
    assert hashed == [ONNX_DATA_FILE]


def flip_a_byte_of(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
