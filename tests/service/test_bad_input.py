"""Every kind of bad input gets a 4xx with a JSON error naming the problem, never a 5xx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from service.app import create_app
from service.http.middleware import RequestMiddleware
from service.ops.metrics import Metrics
from tests.helpers import INSTANCE, SettingsFactory

JSON = {"content-type": "application/json"}


def body(instances: list[Any], **extra: Any) -> str:
    return json.dumps({"instances": instances, **extra})


# (request body, status, a phrase the error must contain)
PREDICT_CASES = [
    ("{bad json", 400, "malformed JSON"),
    ('{"instances": [{"f0": "v1"}', 400, "malformed JSON"),
    ("", 400, "malformed JSON"),
    ("[" * 10_000 + "]" * 10_000, 400, "malformed JSON"),
    ('{"instances": [{"f0": "\\ud800"}]}', 400, "malformed JSON"),
    ('"just a string"', 400, "object"),
    ('{"instances": {"f0": "v1"}}', 400, "instances"),
    ('{"instances": []}', 400, "instances"),
    ('{"instances": [{"f0": "v1"}], "extra": 1}', 400, "extra"),
    ('{"instances": [{"f0": "v1"}], "explain": {"top_k": 0}}', 400, "top_k"),
    ('{"instances": [{"f0": "v1"}], "explain": {"top_k": -3}}', 400, "top_k"),
    ('{"instances": [{"f0": "v1"}], "explain": {"top_k": 10000000}}', 400, "top_k"),
    ('{"instances": [{"f0": "v1"}], "explain": "yes"}', 400, "explain"),
    ('{"instances": [{"f0": NaN}]}', 400, "NaN and infinities are not allowed"),
    ('{"instances": [{"f0": Infinity}]}', 400, "NaN and infinities are not allowed"),
    ('{"instances": [{"f0": "NaN"}]}', 200, ""),  # a string, not a number: an OOV value
    (body([{"nope": "v1"}]), 400, "unknown field 'nope'"),
    (body([{"f0": True}]), 400, "'f0' takes a string or an integer, got bool"),
    (body([{"f0": 1.5}]), 400, "'f0' takes a string or an integer, got float"),
    (body([{"f0": {"a": 1}}]), 400, "'f0'"),
    (body([{"f0": ["v1", "v2"]}]), 400, "'f0'"),
    (body(["not an object"]), 400, "instances.0"),
    (body([INSTANCE] * 1025), 413, "at most 1024 instances"),
]


@pytest.mark.parametrize(("payload", "status", "phrase"), PREDICT_CASES)
def test_bad_predict_bodies_get_4xx_naming_the_problem(
    client: TestClient, payload: str, status: int, phrase: str
) -> None:
    response = client.post("/predict", content=payload, headers=JSON)
    assert response.status_code == status, response.text
    assert phrase in response.json().get("error", "")


# Invalid input is 400 whichever check finds it, in the request's own terms.
USER_TERMS = [
    ('{"instances": "abc"}', 'instances must be a valid array, got "abc"'),
    ('{"instances": [{"f0": "v1"}], "explain": {"top_k": -1}}', "explain.top_k must be at least 1, got -1"),
    ('{"instances": [{"f0": "v1"}], "explain": {"top_k": 1.5}}',
     "explain.top_k must be a valid integer, got 1.5"),
    ('{"instances": [{"f0": "v1"}], "explain": "yes"}',
     'explain must be a valid boolean or an object, got "yes"'),
    ('{"instances": [{"f0": "v1"}], "extra": 1}', "unknown key 'extra'"),
    ('{"instancse": [{"f0": "v1"}]}', "unknown key 'instancse' (did you mean 'instances'?)"),
    ("[]", "the body must be an object, got an array of 0"),
    ('{"instances": [{"f0": -Infinity}]}',
     "malformed JSON: NaN and infinities are not allowed (JSON numbers must be finite)"),
]


@pytest.mark.parametrize(("payload", "message"), USER_TERMS)
def test_invalid_input_is_400_in_user_terms(client: TestClient, payload: str, message: str) -> None:
    response = client.post("/predict", content=payload, headers=JSON)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error.startswith(message), error
    assert "ExplainOptions" not in error and "PredictRequest" not in error


def test_oip_and_fastapi_validation_errors_are_400_too(client: TestClient) -> None:
    response = client.post("/v2/models/synthetic-afm/infer", content='{"inputs": "x"}', headers=JSON)
    assert response.status_code == 400 and response.json()["error"].startswith("inputs must be")


MIXED_CASES = [
    ({"price": float("nan")}, "finite"),
    ({"price": "12"}, "'price' takes a number"),
    ({"age": "old"}, "'age' takes a number"),
    ({"tags": ["a", "b", "c", "d", "e", "f", "a", "b"]}, "'tags' holds at most"),
    ({"tags": [["a"]]}, "'tags'"),
    ({"user": 3.5}, "'user'"),
    ({"price": 1e300}, "'price' holds a number too large"),
    ({"price": 1e308, "user": "u1"}, "'price' holds a number too large"),
]


@pytest.mark.parametrize(("instance", "phrase"), MIXED_CASES)
def test_values_that_do_not_fit_the_field_kind_get_400(
    mixed_client: TestClient, instance: dict[str, Any], phrase: str
) -> None:
    response = mixed_client.post("/predict", content=body([instance]), headers=JSON)
    assert response.status_code == 400, response.text
    assert phrase in response.json()["error"]


def test_wrong_content_type_gets_415(client: TestClient) -> None:
    response = client.post("/predict", content=body([INSTANCE]), headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


@pytest.mark.parametrize(("query", "phrase"), [
    ("?nope=1", "unknown field 'nope'"),
    ("?f0=v1&f0=v2", "more than once"),
])
def test_bad_explain_queries_get_400(client: TestClient, query: str, phrase: str) -> None:
    response = client.get("/explain" + query)
    assert response.status_code == 400
    assert phrase in response.json()["error"]


def test_url_over_the_limit_gets_414_on_any_route(make_settings: SettingsFactory) -> None:
    """The app refuses it under any server; afm-serve's protocol does so while reading."""
    settings = make_settings(max_url_bytes=1024)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        at_limit = client.get("/explain?f0=" + "x" * (1024 - len("/explain?f0=")))
        over = [client.get("/explain?f0=" + "x" * 1024), client.get("/healthz?" + "x" * 1024),
                client.post("/predict/" + "x" * 1024, content=body([INSTANCE]), headers=JSON)]
        assert client.get("/healthz").status_code == 200
    assert at_limit.status_code == 200, at_limit.text  # an unknown value, answered
    for response in over:
        assert response.status_code == 414, response.text
        assert response.json() == {"error": "URL longer than 1024 bytes"}


@pytest.mark.parametrize(("query", "phrase"), [("?price=nan", "finite"), ("?price=abc", "number"),
                                               ("?age=inf", "finite")])
def test_bad_numbers_in_explain_queries_get_400(mixed_client: TestClient, query: str,
                                                phrase: str) -> None:
    response = mixed_client.get("/explain" + query)
    assert response.status_code == 400
    assert phrase in response.json()["error"]


def test_unknown_routes_and_methods_get_json_errors(client: TestClient) -> None:
    assert client.get("/nope").json() == {"error": "Not Found"}
    response = client.delete("/predict")
    assert response.status_code == 405 and "error" in response.json()


def test_body_over_the_limit_is_refused_from_its_declared_length(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(max_body_bytes=2048)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        response = client.post("/predict", content=body([INSTANCE] * 40), headers=JSON)
    assert response.status_code == 413
    assert "larger than 2048 bytes" in response.json()["error"]


def test_chunked_body_over_the_limit_is_refused_without_reading_it_all(
    make_settings: SettingsFactory,
) -> None:
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:
        for i in range(1000):  # 1 MB in 1 KB chunks; the server must stop long before
            sent.append(i)
            yield b" " * 1024

    settings = make_settings(max_body_bytes=4096)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        response = client.post("/predict", content=chunks(), headers=JSON)
    assert response.status_code == 413


def test_declared_length_over_the_limit_is_refused_before_any_read() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    async def receive() -> Any:
        raise AssertionError("the body must not be read")

    messages: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        messages.append(message)

    middleware = RequestMiddleware(app, Metrics(CollectorRegistry()), max_body_bytes=1024,
                                   max_url_bytes=8192)
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": [
        (b"content-length", b"50000000"), (b"content-type", b"application/json")]}
    asyncio.run(middleware(scope, receive, send))
    assert messages[0]["status"] == 413
    assert b"larger than 1024 bytes" in messages[1]["body"]
