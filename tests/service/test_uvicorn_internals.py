"""The private parts of uvicorn's httptools protocol that afm-serve's bounded protocol
subclasses and calls. pyproject.toml pins uvicorn to the versions these were checked
against; when a new uvicorn changes any of them, these tests say which, before a request
finds out."""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from service.http.bounded_protocol import BoundedHttpToolsProtocol
from service.http.errors import STATUS
from tests.service.test_bounded_protocol import Transport, echo_app

OURS = BoundedHttpToolsProtocol
# The methods the subclass overrides, and the parameters uvicorn calls them with.
OVERRIDDEN = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "data_received": ["self", "data"],
    "on_url": ["self", "url"],
    "on_headers_complete": ["self"],
    "send_400_response": ["self", "msg"],
}


def body_of(method: Callable[..., Any]) -> list[ast.stmt]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    return function.body


def test_the_overridden_methods_are_the_ones_uvicorn_has() -> None:
    own = {name for name, value in vars(OURS).items() if callable(value)}
    assert {name for name in own if hasattr(HttpToolsProtocol, name)} == set(OVERRIDDEN)


@pytest.mark.parametrize("name", sorted(OVERRIDDEN))
def test_uvicorn_calls_each_overridden_method_as_the_override_expects(name: str) -> None:
    theirs = list(inspect.signature(getattr(HttpToolsProtocol, name)).parameters)
    assert theirs == OVERRIDDEN[name], f"uvicorn's HttpToolsProtocol.{name} now takes {theirs}"
    ours = list(inspect.signature(getattr(OURS, name)).parameters)
    assert ours[:len(theirs)] == theirs or name == "__init__"


def test_on_url_only_collects_the_url_which_the_override_inlines() -> None:
    assert [ast.unparse(s) for s in body_of(HttpToolsProtocol.on_url)] == ["self.url += url"]


def test_a_new_message_resets_the_url_and_headers_the_override_reads() -> None:
    lines = [ast.unparse(s) for s in body_of(HttpToolsProtocol.on_message_begin)]
    assert "self.url = b''" in lines and "self.headers = []" in lines


def test_parser_errors_reach_send_400_response_inside_their_except() -> None:
    """The override finds the error that a callback raised as the exception being handled."""
    tree = ast.Module(body=body_of(HttpToolsProtocol.data_received), type_ignores=[])
    handlers = [h for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler)
                and h.type is not None and ast.unparse(h.type).endswith("HttpParserError")]
    assert handlers, "data_received no longer catches httptools.HttpParserError"
    calls = [ast.unparse(node.func) for h in handlers for node in ast.walk(h)
             if isinstance(node, ast.Call)]
    assert "self.send_400_response" in calls


def test_the_attributes_the_protocol_uses_are_there_and_not_taken() -> None:
    loop = asyncio.new_event_loop()
    try:
        state = ServerState()
        protocol = HttpToolsProtocol(config=Config(app=echo_app, log_config=None, lifespan="off"),
                                     server_state=state, app_state={}, _loop=loop)
        transport = Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(b"GET /a?b HTTP/1.1\r\nhost: x\r\nx-")  # a header is reported
        # once the next one begins; the head is not complete, so the app is not called
        assert protocol.transport is transport and protocol.server_state is state
        assert protocol.url == b"/a?b" and protocol.headers == [(b"host", b"x")]
        assert isinstance(state.default_headers, list)
    finally:
        loop.close()
    ours = {"max_url_bytes", "max_header_bytes", "_in_head", "_read", "_head_most", "_head_least",
            "_header_bytes", "_refuse"}
    taken = ours & (set(vars(protocol)) | set(dir(HttpToolsProtocol)))
    assert not taken, f"uvicorn now uses {sorted(taken)} itself"


def test_every_status_the_service_refuses_with_has_a_status_line() -> None:
    assert set(STATUS.values()) <= set(STATUS_LINE)
    assert httptools_impl.STATUS_LINE[414].startswith(b"HTTP/1.1 414 ")
