"""The API pages, /docs (Swagger UI) and /redoc, served with no network: their scripts and
styles come from the `fastapi-offline` package and are served by this app under
/docs/assets, so the pages work on an offline machine or in a locked-down cluster."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse
from starlette.routing import Mount

ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# validatorUrl: Swagger UI would otherwise send the schema to an online validator.
SWAGGER_PARAMETERS = {"validatorUrl": None, "tryItOutEnabled": True}


class DocsPages:
    def __init__(self, title: str, openapi_url: str) -> None:
        self.title = title
        self.openapi_url = openapi_url

    async def swagger(self) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=self.openapi_url, title=f"{self.title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon.png",
            oauth2_redirect_url=OAUTH2_REDIRECT_URL, swagger_ui_parameters=SWAGGER_PARAMETERS,
        )

    async def swagger_redirect(self) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(self) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=self.openapi_url, title=f"{self.title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon.png", with_google_fonts=False,
        )


def assets() -> Mount:
    """The pages' scripts and styles; routed last, so the last thing a request is tried on."""
    return Mount(ASSETS_URL, app=StaticFiles(directory=ASSETS), name="docs-assets")
