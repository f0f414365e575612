"""/docs and /redoc work with no network: every script, style and icon they load comes from
this server (and, where Chromium is installed, Swagger UI renders in it with no network);
the OpenAPI document they render documents one status for invalid input."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import REPO

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


# The server and a headless Chromium in a network namespace of their own, with loopback
# only: Swagger UI renders /docs there, so nothing it needs comes from outside.
OFFLINE_BROWSER = """
ip link set lo up
"$PYTHON" -m service.cli --model-dir "$BUNDLE" --port 18556 >/dev/null 2>&1 &
server=$!
ready="import urllib.request as u; u.urlopen('http://127.0.0.1:18556/readyz')"
for _ in $(seq 60); do "$PYTHON" -c "$ready" 2>/dev/null && break; sleep 0.5; done
timeout 60 chromium --headless --no-sandbox --disable-gpu --virtual-time-budget=8000 \\
  --dump-dom http://127.0.0.1:18556/docs 2>/dev/null
kill $server; wait $server
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None or shutil.which("unshare") is None
                    or os.geteuid() != 0, reason="needs chromium, unshare and root (a network namespace)")
def test_docs_render_in_a_browser_with_no_network(bundle_dir: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": "/tmp", "PYTHON": sys.executable, "BUNDLE": str(bundle_dir)}
    result = subprocess.run(["unshare", "--net", "bash", "-c", OFFLINE_BROWSER], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=180)
    rendered = set(re.findall(r'data-path="([^"]+)"', result.stdout))  # Swagger UI's operations
    assert {"/predict", "/explain", "/encode", "/v2/models/{name}/infer"} <= rendered, result.stdout[-500:]
