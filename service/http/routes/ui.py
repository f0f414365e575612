"""The explanation page: GET /ui (the HTML), /ui/form (the model's fields, for the form) and
the page's script and stylesheet under /ui/static. The page asks /predict and /explain
like any client; everything it loads comes from this server."""

from __future__ import annotations

import orjson
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.routing import Mount
from starlette.types import Message, Receive, Scope, Send

from service.codecs.metadata import model_metadata
from service.core.model import ModelInfo, PerModel
from service.core.runtime import Runtime
from service.http.ui import STATIC
from service.http.ui.form import form as describe_form

STATIC_URL = "/ui/static"
# No inline script or style, nothing from elsewhere; the script sets element styles through
# the CSSOM (element.style.width), which style-src does not govern.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}


def _form_json(info: ModelInfo) -> bytes:
    return orjson.dumps(describe_form(model_metadata(info), info.fields))


class UIPages:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.html = (STATIC / "index.html").read_bytes()
        self._form = PerModel(_form_json)  # rebuilt once after each reload

    async def page(self) -> Response:
        return Response(self.html, media_type="text/html; charset=utf-8",
                        headers={**SECURITY_HEADERS, "cache-control": "no-cache"})

    async def form(self) -> Response:
        """The served model's fields: kind, suggested values, numeric scaling."""
        return Response(self._form(self.runtime.info()), media_type="application/json",
                        headers={"cache-control": "no-cache"})


class StaticAssets(StaticFiles):
    """StaticFiles with the page's security headers on every file it serves."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *HEADER_PAIRS]
            await send(message)

        await super().__call__(scope, receive, with_headers)


HEADER_PAIRS = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


def assets() -> Mount:
    return Mount(STATIC_URL, app=StaticAssets(directory=STATIC), name="ui-assets")
