"""/predict bodies that are plainly valid, read by orjson instead of pydantic.

pydantic's parser builds a body's objects more slowly than orjson and then copies every
instance into a new dict (docs/BENCHMARKS.md). A body whose instances hold only strings,
integers, small floats, booleans, nulls and flat lists of those, and whose `explain` is
a boolean or `{"top_k": n}` within bounds, is taken as orjson parsed it. Any other body,
and any body orjson refuses, returns None and goes to pydantic, so that what is accepted,
the values the instances hold and every error message stay the same; so does a body with a
key this module does not check (a field a subclass of PredictRequest adds). The two parsers
differ only where this module declines: orjson refuses numbers that overflow to infinity
(pydantic reads them as inf), reads integers beyond 64 bits as floats (any float of
magnitude 2**63 or more declines), and takes nesting far deeper than pydantic (instances
nested beyond a flat list decline). tests/service/test_plain_body.py checks them against
each other.
"""

from __future__ import annotations

import functools
from itertools import chain
from typing import Any

import orjson
from pydantic import ValidationError

from service.codecs.schemas import ExplainOptions, PredictRequest

# The keys this module checks; a body with any other key goes to pydantic.
CHECKED = frozenset({"instances", "explain"})
# Below this, pydantic is as fast: building the model costs what parsing saves.
MIN_BYTES = 1024
_LARGE = 2.0**63  # orjson's floats for integer text start beyond 64 bits


def plain_predict_request(body: bytes, min_bytes: int = MIN_BYTES,
                          model: type[PredictRequest] = PredictRequest) -> PredictRequest | None:
    """The body as a `model` (PredictRequest or a subclass) when it is plainly valid and at
    least `min_bytes` long, else None (ask pydantic)."""
    if len(body) < min_bytes or not _readable(model):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or not data.keys() <= CHECKED:
        return None
    instances = data.get("instances")
    if type(instances) is not list or not instances or not _plain_instances(instances):
        return None
    explain = data.get("explain", False)
    if type(explain) is not bool:
        if type(explain) is not dict:
            return None
        try:  # a small dict of JSON values: validating it equals validating its text
            data["explain"] = ExplainOptions.model_validate(explain, strict=True)
        except ValidationError:
            return None
    return model.model_construct(**data)


@functools.cache
def _readable(model: type[PredictRequest]) -> bool:
    """Whether this module can build a `model` unvalidated: it declares `instances` and
    `explain` as PredictRequest does, and requires no other field."""
    fields, known = model.model_fields, PredictRequest.model_fields
    same = all(
        (fields[name].annotation, fields[name].metadata, fields[name].default)
        == (known[name].annotation, known[name].metadata, known[name].default)
        for name in CHECKED)
    return same and all(name in CHECKED for name, info in fields.items() if info.is_required())


def _plain_instances(instances: list[Any]) -> bool:
    try:  # one pass in C for the common body, every value a string
        "".join(chain.from_iterable(map(dict.values, instances)))
        return True
    except TypeError:  # an instance that is no object, or a value that is no string
        return all(type(instance) is dict and all(map(_plain_value, instance.values()))
                   for instance in instances)


def _plain_value(value: Any) -> bool:
    kind = type(value)
    if kind is list:
        return all(map(_plain_scalar, value))
    return _plain_scalar(value)


def _plain_scalar(value: Any) -> bool:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    return kind is float and -_LARGE < value < _LARGE
