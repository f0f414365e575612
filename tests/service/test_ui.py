"""The explanation page's routes, without a browser: /ui with its security headers, the
form description, the static files, and 404s (tests/service/test_ui_browser.py drives the
page itself in Chromium)."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from model.features import FieldKind, FieldSpec
from service.app import create_app
from service.codecs.schemas import ModelMetadata
from service.http.routes.ui import CSP
from service.http.ui import STATIC
from service.http.ui.form import form
from tests.helpers import REPO, TOKEN, SettingsFactory

ATTRIBUTE_URL = re.compile(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""")
STATIC_FILES = ["ui.js", "ui.css"]


def directives(policy: str) -> dict[str, list[str]]:
    parts = (part.split() for part in policy.split(";") if part.strip())
    return {name: values for name, *values in parts}


def test_page_is_html_with_a_restrictive_content_security_policy(client: TestClient) -> None:
    response = client.get("/ui")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = directives(response.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    for directive in ("script-src", "style-src", "connect-src", "img-src"):
        assert policy[directive] == ["'self'"], directive
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_page_has_no_inline_script_or_style_and_loads_only_from_this_server(client: TestClient) -> None:
    html = client.get("/ui").text
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "an inline script"
    assert not re.search(r"<style\b|\sstyle\s*=|\son[a-z]+\s*=", html), "inline style or handler"
    urls = ATTRIBUTE_URL.findall(html)
    assert {"ui/static/ui.js", "ui/static/ui.css"} <= set(urls), urls
    for url in urls:
        # Relative to /ui, so the page works behind a path prefix too.
        assert not url.startswith(("/", "data:", "javascript:")) and "//" not in url, url
        assert client.get("/" + url).status_code == 200, url


def test_every_input_of_the_static_page_has_a_label() -> None:
    html = (STATIC / "index.html").read_text()
    for tag in re.findall(r"<(?:input|textarea|select)\b[^>]*>", html):
        ident = re.search(r'\bid="([^"]+)"', tag)
        wrapped = re.search(r"<label>[^<]*" + re.escape(tag), html)
        assert wrapped or (ident and f'for="{ident.group(1)}"' in html), tag


@pytest.mark.parametrize(("name", "content_type"), [
    ("ui.js", "text/javascript"), ("ui.css", "text/css"),
])
def test_static_files_are_served_with_their_types_and_headers(client: TestClient, name: str,
                                                              content_type: str) -> None:
    response = client.get(f"/ui/static/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == CSP
    assert response.content == (STATIC / name).read_bytes()


@pytest.mark.parametrize("path", [
    "/ui/static/nope.js", "/ui/static/", "/ui/static/..%2Fform.py", "/ui/static/%2e%2e/form.py",
    "/ui/nope", "/ui/static/ui.js/x",
])
def test_unknown_paths_are_404(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404, path
    assert "def form" not in response.text


def test_page_routes_take_only_get(client: TestClient) -> None:
    assert client.post("/ui").status_code == 405
    assert client.post("/ui/form").status_code == 405


def test_the_page_is_not_part_of_the_api_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]


def test_the_script_never_parses_data_as_html() -> None:
    script = (STATIC / "ui.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function", "setAttribute(\"style\"", "setAttribute('style'"):
        assert sink not in script, sink


def test_form_describes_each_field_of_the_served_model(mixed_client: TestClient) -> None:
    response = mixed_client.get("/ui/form")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    metadata = mixed_client.get("/metadata").json()
    assert body["model"] == {"name": metadata["name"], "version": metadata["version"]}
    assert body["task"] == "binary" and body["label"] == "probability"
    fields = {field["name"]: field for field in body["fields"]}
    assert list(fields) == [field["name"] for field in metadata["fields"]]
    assert fields["user"]["kind"] == "categorical" and "u3" in fields["user"]["values"]
    assert fields["user"]["values_total"] == len(fields["user"]["values"])
    assert fields["tags"]["kind"] == "multi" and set(fields["tags"]["values"]) <= set("abcdef")
    assert fields["tags"]["max_entries"] > 1
    assert fields["price"]["kind"] == "numeric" and fields["price"]["scale"] > 0
    assert 30 < fields["price"]["center"] < 70  # the training data's prices: mean 50
    assert fields["age"]["boundaries"] == [18, 35, 56] and len(fields["age"]["values"]) == 4


def test_form_suggests_at_most_the_cap_most_frequent_values() -> None:
    spec = FieldSpec(name="c", kind=FieldKind.CATEGORICAL, vocabulary=["most", "next", "rare"])
    metadata = ModelMetadata.model_validate({
        "name": "m", "version": "1", "kind": "afm", "task": "regression", "sha256": "0" * 64,
        "created_at": "2026-12-01T00:00:00+00:00", "label_range": [0, 1], "fields": [],
        "pairs": [], "metrics": {},
    })
    entry = form(metadata, [spec], max_suggestions=2)["fields"][0]
    assert entry["values"] == ["most", "next"] and entry["values_total"] == 3
    assert form(metadata, [spec])["label"] == "prediction"


def test_form_follows_a_reload(make_settings: SettingsFactory, models_root: Path) -> None:
    settings = make_settings(model_dir=models_root / "v1", models_root=models_root,
                             admin_token=TOKEN)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        assert client.get("/ui/form").json()["model"]["version"] == "1"
        reloaded = client.post("/admin/reload", json={"model_dir": "v2"},
                               headers={"authorization": f"Bearer {TOKEN}"})
        assert reloaded.status_code == 200, reloaded.text
        assert client.get("/ui/form").json()["model"]["version"] == "2"


def test_the_static_files_ship_in_the_package() -> None:
    """A non-editable install (the images) has only what package-data names."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["service.http.ui"]
    shipped = sorted(path.name for path in STATIC.iterdir())
    assert shipped == sorted(["index.html", *STATIC_FILES])
    for name in shipped:
        assert any(fnmatch(f"static/{name}", pattern) for pattern in patterns), name
