"""/docs and /redoc work with no network: every script, style and icon they load comes from
this server, and the OpenAPI document they render documents one status for invalid input."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

# Attribute URLs in the page, and the URLs its inline script passes to Swagger UI / ReDoc.
URL = re.compile(r"""(?:src|href|url|spec-url)\s*[=:]\s*["']([^"']+)["']""")


def urls_of(page: str) -> list[str]:
    return URL.findall(page)


@pytest.mark.parametrize(("page", "assets"), [
    ("/docs", {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css",
               "/docs/assets/favicon.png", "/openapi.json"}),
    ("/redoc", {"/docs/assets/redoc.standalone.js", "/docs/assets/favicon.png", "/openapi.json"}),
])
def test_api_pages_load_nothing_from_outside_the_server(client: TestClient, page: str,
                                                        assets: set[str]) -> None:
    response = client.get(page)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    found = set(urls_of(html))
    assert assets <= found, found
    for url in found:
        assert url.startswith("/") and not url.startswith("//"), f"{page} loads {url} from elsewhere"
        assert client.get(url).status_code == 200, url
    assert "http://" not in html and "https://" not in html
    assert "validatorUrl" in html or page == "/redoc"  # no schema sent to an online validator


def test_assets_are_the_real_bundles(client: TestClient) -> None:
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "SwaggerUIBundle" in script.text[:2000] and len(script.content) > 500_000
    assert client.get("/docs/assets/swagger-ui.css").headers["content-type"].startswith("text/css")
    assert client.get("/docs/assets/nope.js").status_code == 404


def test_openapi_documents_400_for_invalid_input_and_no_422_but_reload(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert "422" not in operation["responses"] or path == "/admin/reload", path
    for path in ("/predict", "/encode", "/v2/models/{name}/infer"):
        assert "400" in schema["paths"][path]["post"]["responses"], path
    assert "/docs" not in schema["paths"] and "/docs/assets" not in str(schema["paths"])
