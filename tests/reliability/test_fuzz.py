"""Property-based fuzzing with schemathesis, from the app's own OpenAPI schema, of every
route of the real server process on 127.0.0.1: no 5xx, and every response (status, content
type, headers, body) conforms to the schema. Schema-valid and schema-violating inputs both.

Driven from hypothesis directly (one test per route): schemathesis's lazy pytest loader
does not run under this pytest (it reads `Function._nodeid`, gone in pytest 9).
"""

from __future__ import annotations

from pathlib import Path

import hypothesis
import hypothesis.errors
import pytest
import schemathesis
from pydantic import SecretStr
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.ops.settings import Settings
from tests.helpers import TOKEN
from tests.helpers.servers import Server, knob, report

pytestmark = pytest.mark.slow
EXAMPLES = int(knob("FUZZ_EXAMPLES", 20))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
# positive_data_acceptance is left out: a schema-valid instance names arbitrary fields,
# which this model refuses (400 "unknown field"), as it must.


def routes() -> list[tuple[str, str]]:
    """Every operation of the app's schema (the admin route included), read without a model."""
    app = create_app(Settings(model_dir=Path(__file__).parent, admin_token=SecretStr(TOKEN)))
    paths = app.openapi()["paths"]
    return [(method.upper(), path) for path, ops in sorted(paths.items()) for method in ops]


ROUTES = routes()


@pytest.fixture(scope="module")
def api(server: Server) -> BaseSchema:
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


def test_the_served_schema_has_every_route(api: BaseSchema) -> None:
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    served = {(op.method.upper(), op.path) for op in operations}
    assert served == set(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_route_conforms_and_never_fails(api: BaseSchema, server: Server, method: str,
                                        path: str, mode: GenerationMode) -> None:
    operation = api[path][method]
    statuses: dict[int, int] = {}
    auth = {"Authorization": f"Bearer {TOKEN}"} if path.startswith("/admin") else None
    checks = [*CHECKS, negative_data_rejection] if mode == GenerationMode.NEGATIVE else CHECKS

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    def fuzz(case: Case) -> None:
        response = case.call_and_validate(headers=auth, checks=checks, timeout=30)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    try:
        fuzz()
    except hypothesis.errors.Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE
        pytest.skip("no input violates this route's schema (no body, no free parameters)")
    assert server.alive()
    report("fuzz", {"route": f"{method} {path}", "mode": mode.value,
                    "requests": sum(statuses.values()), "statuses": statuses})
