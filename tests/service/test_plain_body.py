"""The orjson path for plainly valid /predict bodies takes exactly what pydantic takes, as
pydantic reads it, and declines everything else (service/codecs/plain_body.py), a key it does
not check included: a field added to the request is never dropped."""

from __future__ import annotations

import json
import random

import pytest
from pydantic import Field, ValidationError

from service.codecs.plain_body import MIN_BYTES, plain_predict_request
from service.codecs.schemas import PredictRequest
from service.core.errors import InvalidInput
from service.http.body import parse_json
from tests.helpers import INSTANCE
from tests.reliability.corpus import CORPUS

EDGES = [
    b'{"instances": [{"f0": 123456789012345678901234567890}]}',  # orjson: a float
    b'{"instances": [{"f0": -9223372036854775809}]}',
    b'{"instances": [{"f0": 18446744073709551615}]}',
    b'{"instances": [{"f0": [18446744073709551616]}]}',
    b'{"instances": [{"f0": 1e400}]}',  # orjson refuses, pydantic reads inf
    b'{"instances": [{"f0": 1.7976931348623159e308}]}',
    b'{"instances": [{"f0": 1e19}]}', b'{"instances": [{"f0": -0.0}], "explain": true}',
    b'{"instances": [{"f0": ' + b"[" * 300 + b"]" * 300 + b"}]}",  # deeper than pydantic takes
    b'{"instances": [{"f0": ' + b"[" * 100 + b"]" * 100 + b"}]}",
    b'{"instances": [{"f0": {"a": 1}}]}', b'{"instances": [{"f0": [{"a": 1}]}]}',
    b'{"instances": [{"f0": [[1]]}]}', b'{"instances": [{"f0": [1, "a", null, true, 2.5]}]}',
    b'{"instances": [{"f0": "a", "f0": "b"}]}', b'{"instances": [], "instances": [{}]}',
    b'{"instances": [{}]}', b'{"instances": []}', b'{"instances": {}}', b'{"instances": [1]}',
    b'{"instances": [[]]}', b'{"instances": [null]}', b'{"instances": null}', b"{}", b"[]",
    b'{"instances": [{}], "explain": false}', b'{"instances": [{}], "explain": 1}',
    b'{"instances": [{}], "explain": null}', b'{"instances": [{}], "explain": "true"}',
    b'{"instances": [{}], "explain": {"top_k": 3}}', b'{"instances": [{}], "explain": {}}',
    b'{"instances": [{}], "explain": {"top_k": 0}}', b'{"instances": [{}], "explain": {"top_k": 100001}}',
    b'{"instances": [{}], "explain": {"top_k": 100000}}', b'{"instances": [{}], "explain": {"top_k": true}}',
    b'{"instances": [{}], "explain": {"top_k": 3.0}}', b'{"instances": [{}], "explain": {"top_k": "3"}}',
    b'{"instances": [{}], "explain": {"top_k": 3, "x": 1}}', b'{"instances": [{}], "other": 1}',
    b'{"instances": [{"f0": "\\ud800"}]}', b'{"instances": [{"f0": "\\ud83d\\ude00"}]}',
    b'{"instances": [{"f0": "\x01"}]}', b'{"instances": [{"f0": "\\u0000"}]}',
    b'\xef\xbb\xbf{"instances": [{}]}', b'{"instances": [{}]}\n ', b' {"instances": [{}]}',
    b'{"instances": [{"": 1}]}', b"", b"null",
]


def pydantic_reads(body: bytes) -> PredictRequest | None:
    try:
        return PredictRequest.model_validate_json(body)
    except ValidationError:
        return None


def check(body: bytes) -> PredictRequest | None:
    plain = plain_predict_request(body, min_bytes=0)
    if plain is not None:
        expected = pydantic_reads(body)
        assert expected is not None, body[:200]
        assert plain == expected and repr(plain) == repr(expected), body[:200]
        assert plain.model_dump() == expected.model_dump()
    return plain


@pytest.mark.parametrize("body", EDGES, ids=range(len(EDGES)))
def test_an_edge_body_is_read_as_pydantic_reads_it_or_declined(body: bytes) -> None:
    check(body)


def test_every_corpus_body_is_read_as_pydantic_reads_it_or_declined() -> None:
    bodies = [case.payload() for case in CORPUS if case.path == "/predict"
              and not callable(case.body) and case.body is not None]
    assert len(bodies) > 20
    for body in bodies:
        assert body is not None
        check(body)


def json_value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.choice(["v1", "", "é", "\U0001f600", "a\"b", "\\", "\u2028"])
    if kind == 1:
        return rng.choice([0, -1, 7, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30])
    if kind == 2:
        return rng.choice([0.5, -0.0, 1e-320, 1e19, 9.2e18, 1.7976931348623157e308, 3.14])
    if kind == 3:
        return rng.choice([True, False])
    if kind in (4, 5):
        return None
    if kind in (6, 7):
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(3))]
    return {"k": json_value(rng, depth + 1)}


def test_random_bodies_are_read_as_pydantic_reads_them_or_declined() -> None:
    rng = random.Random(2017)
    taken = 0
    for _ in range(3000):
        instances = [{f"f{i}": json_value(rng) for i in range(rng.randrange(4))}
                     for _ in range(rng.randrange(1, 4))]
        body: dict[str, object] = {"instances": instances}
        if rng.random() < 0.5:
            body["explain"] = rng.choice([True, False, {"top_k": rng.choice([1, 0, 5, True])}])
        text = json.dumps(body)
        if rng.random() < 0.2:
            text = text.replace("0.5", "1e400")
        taken += check(text.encode()) is not None
    assert taken > 300  # the fast path is not dead


def test_plain_bodies_take_the_orjson_path() -> None:
    """The bodies clients send take the fast path; the checks above would pass without it."""
    assert check(json.dumps({"instances": [INSTANCE] * 256}).encode()) is not None
    assert check(json.dumps({"instances": [{"f0": 3, "f1": [1, "a"], "f2": None, "f3": 2.5}],
                             "explain": {"top_k": 3}}).encode()) is not None
    large, small = (json.dumps({"instances": [INSTANCE] * n}).encode() for n in (256, 1))
    assert plain_predict_request(large) is not None
    assert plain_predict_request(small) is None  # pydantic is as fast for small bodies


class TaggedRequest(PredictRequest):
    """A field added to the request, as a later feature would add one."""

    tag: str | None = Field(default=None, max_length=64)


def plain_tagged(body: bytes) -> TaggedRequest | None:
    read = plain_predict_request(body, model=TaggedRequest)
    assert read is None or isinstance(read, TaggedRequest)
    return read


def test_a_field_added_to_the_request_arrives_in_a_large_body() -> None:
    """The plain path does not check `tag`, so it declines the body and pydantic reads it."""
    body = json.dumps({"instances": [INSTANCE] * 20, "tag": "shadow"}).encode()
    assert len(body) >= MIN_BYTES
    read = parse_json(body, TaggedRequest, plain_tagged)
    assert read.tag == "shadow" and read == TaggedRequest.model_validate_json(body)
    assert plain_tagged(body) is None
    with pytest.raises(InvalidInput, match="tag"):  # and pydantic's checks of it apply
        parse_json(body.replace(b'"shadow"', b'"' + b"x" * 65 + b'"'), TaggedRequest, plain_tagged)


def test_a_large_body_without_the_added_field_still_takes_the_plain_path() -> None:
    body = json.dumps({"instances": [INSTANCE] * 20, "explain": {"top_k": 2}}).encode()
    plain = plain_tagged(body)
    assert plain is not None and plain.tag is None
    assert plain == TaggedRequest.model_validate_json(body)
    assert plain.model_fields_set == TaggedRequest.model_validate_json(body).model_fields_set


def test_a_request_type_the_plain_path_cannot_build_is_always_declined() -> None:
    """A required field it does not check, or instances declared otherwise: pydantic reads."""

    class Required(PredictRequest):
        tag: str

    class Narrower(PredictRequest):
        instances: list[dict[str, str]] = Field(min_length=1)

    body = json.dumps({"instances": [INSTANCE] * 20}).encode()
    assert plain_predict_request(body) is not None
    assert plain_predict_request(body, model=Required) is None
    assert plain_predict_request(body, model=Narrower) is None
