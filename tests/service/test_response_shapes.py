"""The rendered predictions have exactly the keys the schemas declare, derived from the
pydantic models (Prediction, Explanation, LinearTerms, PairTerms, recursively), on both
explanation paths and in every case that changes which keys appear: a field added to a
schema and not to the renderer (or the other way round) fails here."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from model.bundle import Bundle
from service.app import create_app
from service.codecs.predictions import render_predictions
from service.codecs.schemas import ExplainResponse, Prediction, PredictResponse
from service.core.explain import SMALL_BATCH, Explainer
from service.http.responses import ORJSONResponse
from tests.helpers import INSTANCE, SettingsFactory

Schema = type  # a pydantic model, or a dataclass a model uses as a field's type (ModelRef)
Seen = defaultdict[Schema, set[str]]


def schema_fields(schema: Schema) -> dict[str, tuple[Any, bool]]:
    """Each field's annotation and whether it is required."""
    if issubclass(schema, BaseModel):
        return {name: (info.annotation, info.is_required())
                for name, info in schema.model_fields.items()}
    assert dataclasses.is_dataclass(schema), schema
    hints = typing.get_type_hints(schema)
    return {f.name: (hints[f.name], f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
            for f in dataclasses.fields(schema)}


def inner_schema(annotation: Any) -> tuple[Schema | None, bool]:
    """The schema an annotation holds (X, X | None, list[X]) and whether in a list."""
    if isinstance(annotation, type) and (issubclass(annotation, BaseModel)
                                         or dataclasses.is_dataclass(annotation)):
        return annotation, False
    origin = typing.get_origin(annotation)
    if origin is list:
        found, _ = inner_schema(typing.get_args(annotation)[0])
        return found, True
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found, many = inner_schema(arg)
            if found is not None:
                return found, many
    return None, False


def check_shape(value: Any, schema: Schema, seen: Seen) -> set[str]:
    """Every key a field of `schema`, every required field there; nested schemas likewise.
    Records the keys met per schema in `seen`; returns this object's keys."""
    assert isinstance(value, dict), (schema.__name__, value)
    fields = schema_fields(schema)
    keys = set(value)
    assert keys <= set(fields), (schema.__name__, keys - set(fields))
    required = {name for name, (_, needed) in fields.items() if needed}
    assert required <= keys, (schema.__name__, required - keys)
    seen[schema] |= keys
    for name in keys:
        nested, many = inner_schema(fields[name][0])
        if nested is not None and value[name] is not None:
            for item in value[name] if many else [value[name]]:
                check_shape(item, nested, seen)
    return keys


def optional_keys(model: type[BaseModel], *names: str) -> set[str]:
    """Names of optional fields of `model`, refused if the schema has no such field."""
    optional = {name for name, info in model.model_fields.items() if not info.is_required()}
    assert set(names) <= optional, set(names) - optional
    return set(names)


def batches(bundle: Bundle) -> dict[str, list[dict[str, Any]]]:
    """Instances covering what changes the keys: every field, absent fields, unknown values
    and an instance with no field, in batches for each explanation path."""
    specs = bundle.features.fields
    full = {spec.name: known_value(spec) for spec in specs}
    partial = {spec.name: full[spec.name] for spec in specs[::2]}
    unknown = {**full, specs[0].name: unknown_value(specs[0])}
    mixed = [full, partial, unknown, {}]
    return {"one": [full], "rows": mixed[:SMALL_BATCH], "empty alone": [{}],
            "batch": (mixed * 8)[:SMALL_BATCH * 5]}


def known_value(spec: Any) -> Any:
    if spec.kind in ("numeric", "bucketized"):
        return 3.5
    value = spec.vocabulary[0]
    return [value] if spec.kind == "multi" else value


def unknown_value(spec: Any) -> Any:
    if spec.kind in ("numeric", "bucketized"):
        return None  # a number cannot be unknown: absent instead
    return ["never seen"] if spec.kind == "multi" else "never seen"


@pytest.mark.parametrize("which", ["bundle_dir", "mixed_dir"])  # regression, binary
def test_rendered_predictions_have_exactly_the_schemas_keys(
    request: pytest.FixtureRequest, which: str
) -> None:
    bundle = Bundle.load(request.getfixturevalue(which))
    explainer = Explainer(bundle)
    label = "probability" if bundle.manifest.task == "binary" else "prediction"
    seen: Seen = defaultdict(set)
    required = {name for name, info in Prediction.model_fields.items() if info.is_required()}
    for name, instances in batches(bundle).items():
        encoded = bundle.features.encode(instances)
        scores = bundle.run(encoded.indices, encoded.weights)
        assert (len(instances) <= SMALL_BATCH) == (name != "batch")
        for explain, top_k, logged in ((False, None, False), (True, None, False), (True, 1, True)):
            predictions = explainer.predictions(encoded, scores, explain, top_k)
            if logged:  # as the runtime sets them when the impression log took the instances
                predictions.impression_ids = [f"r-{i}" for i in range(len(instances))]
            rendered = json.loads(bytes(ORJSONResponse(render_predictions(predictions)).body))
            assert len(rendered) == len(instances)
            for instance, result in zip(instances, rendered, strict=True):
                keys = check_shape(result, Prediction, seen)
                expected = optional_keys(Prediction, label, *(["warning"] if not instance else []),
                                         *(["explanation"] if explain else []),
                                         *(["impression_id"] if logged else []))
                assert keys == required | expected, (name, explain, instance)
                Prediction.model_validate(result)
            if explain:
                omitted = [r["explanation"]["pairs_omitted"] for r in rendered]
                assert (max(omitted) > 0) == (top_k is not None and name != "empty alone")
        assert any(r["oov"] for r in rendered) == (name in ("rows", "batch"))
    schemas: list[Schema] = [Prediction, *seen]
    for model in schemas:
        expected_all = set(schema_fields(model))
        if model is Prediction:  # one task per bundle: the other task's key never appears
            expected_all -= {"prediction", "probability"} - {label}
        assert seen[model] == expected_all, model.__name__
    assert {model.__name__ for model in seen} == {"Prediction", "OOVValue", "Explanation",
                                                  "LinearTerms", "PairTerms"}


@pytest.mark.parametrize("logged", [False, True])
def test_predict_and_explain_responses_have_exactly_the_schemas_keys(
        make_settings: SettingsFactory, tmp_path: Path, logged: bool) -> None:
    settings = make_settings(impression_log_dir=tmp_path / "log" if logged else None)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as client:
        body = client.post("/predict", json={"instances": [INSTANCE, {}], "explain": True}).json()
        one = client.get("/explain", params=INSTANCE).json()
    seen: Seen = defaultdict(set)
    assert check_shape(body, PredictResponse, seen) == set(PredictResponse.model_fields)
    keys = check_shape(one, ExplainResponse, seen)
    unlogged = set() if logged else {"impression_id"}
    assert keys == set(ExplainResponse.model_fields) - {"probability", "warning"} - unlogged
    assert ("impression_id" in body["predictions"][1]) == logged
    assert {model.__name__ for model in seen} >= {"ModelRef", "Prediction", "Explanation"}


def test_the_shape_check_fails_on_a_missing_or_an_extra_key(bundle_dir: Path) -> None:
    """The check above can fail: a key dropped from, or added to, a rendered explanation."""
    bundle = Bundle.load(bundle_dir)
    encoded = bundle.features.encode([INSTANCE])
    scores = bundle.run(encoded.indices, encoded.weights)
    result = render_predictions(Explainer(bundle).predictions(encoded, scores, True))[0]
    seen: Seen = defaultdict(set)
    check_shape(result, Prediction, seen)
    del result["explanation"]["linear"]["weights"]
    with pytest.raises(AssertionError, match="LinearTerms"):
        check_shape(result, Prediction, seen)
    result["explanation"]["temperature"] = 1.0
    with pytest.raises(AssertionError, match="Explanation"):
        check_shape(result, Prediction, seen)
