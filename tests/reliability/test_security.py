"""Security: the admin route's token (constant-time compared; no route without one),
reloads confined to the models root, error bodies without internals, CORS off by default.
(Bodies over the limit refused before being read whole: the corpus's 50 MB cases.)"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from service.app import create_app
from service.ops.settings import Settings
from tests.helpers import INSTANCE, TOKEN
from tests.helpers.servers import Server

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def served_version(server: Server) -> str:
    response = httpx.post(server.url + "/predict", json={"instances": [INSTANCE]}, timeout=10)
    return str(response.json()["model"]["version"])


def reload(server: Server, name: Any, headers: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(server.url + "/admin/reload", json={"model_dir": name},
                      headers=AUTH if headers is None else headers, timeout=30)


WRONG = TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401), ({"Authorization": ""}, 401), ({"Authorization": "Bearer"}, 401),
    ({"Authorization": f"Basic {TOKEN}"}, 401), ({"Authorization": TOKEN}, 401),
    ({"Authorization": f"Bearer {WRONG}"}, 403),  # differs in the last character
    ({"Authorization": f"Bearer x{TOKEN[1:]}"}, 403),  # in the first
    ({"Authorization": f"Bearer {TOKEN[:8]}"}, 403),  # a prefix
    ({"Authorization": f"Bearer {TOKEN}{TOKEN}"}, 403),
    ({"Authorization": "Bearer \u00e9\u00e9\u00e9".encode("latin-1")}, 403),
], ids=["none", "empty", "bearer only", "basic", "no scheme", "last char", "first char",
        "prefix", "doubled", "non-ascii"])
def test_admin_rejects_missing_and_wrong_tokens(server: Server, headers: dict[str, Any],
                                                status: int) -> None:
    before = served_version(server)
    response = reload(server, "v2", headers)
    assert response.status_code == status, response.text
    assert "token" in response.json()["error"]
    assert served_version(server) == before


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch,
                                                bundle_dir: Path) -> None:
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr("service.http.routes.ops.hmac.compare_digest", recording)
    settings = Settings(model_dir=bundle_dir, admin_token=SecretStr(TOKEN))
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        assert client.post("/admin/reload", headers={"Authorization": f"Bearer {WRONG}"}
                           ).status_code == 403
        assert client.post("/admin/reload", headers=AUTH).status_code == 200
    assert calls == [(WRONG.encode(), TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_admin_route_does_not_exist_without_a_token(bundle_dir: Path) -> None:
    settings = Settings(model_dir=bundle_dir)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        for headers in ({}, AUTH):
            response = client.post("/admin/reload", headers=headers, json={"model_dir": "."})
            assert response.status_code == 404 and response.json() == {"error": "Not Found"}
        assert "/admin/reload" not in client.get("/openapi.json").json()["paths"]


def escapes(root: Path, outside: Path) -> list[tuple[str, Any, int]]:
    """(name, model_dir, status): none may load anything outside the root."""
    (root / "loop-a").symlink_to(root / "loop-b")
    (root / "loop-b").symlink_to(root / "loop-a")
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "v1" / "up").symlink_to("../..", target_is_directory=True)
    return [
        ("parent", "..", 403), ("grandparent", "../..", 403), ("absolute", "/etc", 403),
        ("absolute bundle outside", str(outside), 403), ("dotted climb", "v1/../../x", 403),
        ("symlink out", "out", 403), ("symlink climbing in a bundle", "v1/up/..", 403),
        ("home", "~", 404), ("encoded dots", "%2e%2e", 404), ("backslashes", "..\\..", 404),
        ("symlink loop", "loop-a", 400), ("over the schema limit", "x" * 5000, 400),
        ("name too long", "x" * 4000, 400),
        ("component too long", "a/" + "y" * 300, 404), ("nul", "v1\x00", 400),
        ("empty", "", 422), ("number", 7, 400), ("list", ["v1"], 400),
    ]


def test_reload_cannot_leave_the_models_root(server: Server, bundle_dir: Path) -> None:
    before = served_version(server)
    outcomes = {}
    for name, model_dir, status in escapes(server.root, bundle_dir):
        response = reload(server, model_dir)
        outcomes[name] = response.status_code
        error = response.json()["error"]
        assert str(server.root) not in error and "Traceback" not in error, (name, error)
        assert response.status_code == status, (name, response.text)
        assert served_version(server) == before, name
    assert server.alive()


def test_an_unexpected_failure_is_a_500_without_internals(bundle_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(model_dir=bundle_dir)
    app = create_app(settings, registry=CollectorRegistry())

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"secret detail at {bundle_dir}/model.onnx line 42")

    monkeypatch.setattr(app.state.runtime, "predict", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/predict", json={"instances": [INSTANCE]},
                               headers={"X-Request-ID": "trace-me-1"})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (request id trace-me-1)"}
    for leak in ("Traceback", "secret", str(bundle_dir), "RuntimeError", ".py"):
        assert leak not in response.text


def test_cors_is_off_unless_configured(server: Server, bundle_dir: Path) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    response = httpx.options(server.url + "/predict", headers=preflight, timeout=10)
    assert "access-control-allow-origin" not in response.headers
    response = httpx.post(server.url + "/predict", json={"instances": [INSTANCE]},
                          headers={"Origin": "https://evil.example"}, timeout=10)
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers

    settings = Settings(model_dir=bundle_dir, cors_origins=["https://app.example"])
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        allowed = client.options("/predict", headers={**preflight, "Origin": "https://app.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        denied = client.options("/predict", headers=preflight)
        assert "access-control-allow-origin" not in denied.headers

