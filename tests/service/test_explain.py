"""The two ways of building explanations (row by row, whole batch) agree exactly, down to
the JSON text they render to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.bundle import Bundle, Scores
from model.features import Encoded
from service.codecs.predictions import render_explanations, render_predictions
from service.core.explain import SMALL_BATCH, Explainer
from service.http.responses import ORJSONResponse


def instances(bundle: Bundle, count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(count)
    out: list[dict[str, Any]] = []
    for _ in range(count):
        instance: dict[str, Any] = {}
        for spec in bundle.features.fields:
            if rng.random() < 0.2:
                continue  # an empty field
            if spec.kind == "numeric" or spec.kind == "bucketized":
                instance[spec.name] = float(rng.normal(40, 20))
            elif spec.kind == "multi":
                pool = [*spec.vocabulary, "unseen"]
                size = int(rng.integers(0, spec.max_entries + 1))
                instance[spec.name] = list(rng.choice(pool, size=size, replace=False))
            else:
                instance[spec.name] = str(rng.choice([*spec.vocabulary, "unseen"]))
        out.append(instance)
    return out


@pytest.mark.parametrize("which", ["bundle_dir", "mixed_dir"])
@pytest.mark.parametrize("top_k", [None, 1, 4])
def test_row_and_batch_explanations_agree(request: pytest.FixtureRequest, which: str,
                                          top_k: int | None) -> None:
    bundle = Bundle.load(request.getfixturevalue(which))
    explainer = Explainer(bundle)
    encoded = bundle.features.encode(instances(bundle, 40))
    scores = bundle.run(encoded.indices, encoded.weights)
    rows = render_explanations(explainer._explain_rows(encoded, scores, top_k))
    batch = render_explanations(explainer._explain_batch(encoded, scores, top_k))
    assert ORJSONResponse(rows).body == ORJSONResponse(batch).body


def test_numbers_are_the_models_float32_values(bundle_dir: Path) -> None:
    """Attention, contributions and linear terms as rendered parse back to exactly the
    float32 values the model computed, on both paths."""
    bundle = Bundle.load(bundle_dir)
    explainer = Explainer(bundle)
    for count in (1, 30):  # the row-by-row path and the whole-batch path
        encoded = bundle.features.encode(instances(bundle, count))
        scores = bundle.run(encoded.indices, encoded.weights)
        rendered = ORJSONResponse(render_predictions(explainer.predictions(encoded, scores, True))).body
        results = json.loads(bytes(rendered))
        for row, result in enumerate(results):
            explanation = result["explanation"]
            pairs = explanation["pairs"]
            index = [bundle.features.pairs.index((bundle.features.field_names.index(a),
                                                  bundle.features.field_names.index(b)))
                     for a, b in pairs["fields"]]
            for column, key in ((scores.attention, "attention"),
                                (scores.contributions, "contributions")):
                parsed = np.array(pairs[key], dtype=np.float64).astype(np.float32)
                np.testing.assert_array_equal(parsed, column[row, index])
            held = [bundle.features.field_names.index(f) for f in explanation["linear"]["fields"]]
            weights = np.array(explanation["linear"]["weights"]).astype(np.float32)
            np.testing.assert_array_equal(weights, scores.field_linear[row, held])


def test_small_and_large_requests_take_different_paths_to_the_same_answer(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = Bundle.load(bundle_dir)
    explainer = Explainer(bundle)
    taken: list[str] = []
    for path in ("_explain_rows", "_explain_batch"):
        real = getattr(explainer, path)

        def spy(*args: Any, _real: Any = real, _path: str = path) -> Any:
            taken.append(_path)
            return _real(*args)

        monkeypatch.setattr(explainer, path, spy)
    many = instances(bundle, 30)
    for count in (1, SMALL_BATCH, SMALL_BATCH + 1, 30):
        encoded, scores = encoded_and_scores(bundle, many[:count])
        taken.clear()
        results = render_predictions(explainer.predictions(encoded, scores, explain=True))
        path, other = (("_explain_rows", "_explain_batch") if count <= SMALL_BATCH
                       else ("_explain_batch", "_explain_rows"))
        assert taken == [path], count
        explanations = [result["explanation"] for result in results]
        expected = render_explanations(getattr(explainer, other)(encoded, scores, None))
        assert ORJSONResponse(explanations).body == ORJSONResponse(expected).body


def encoded_and_scores(bundle: Bundle, rows: list[dict[str, Any]]) -> tuple[Encoded, Scores]:
    encoded = bundle.features.encode(rows)
    return encoded, bundle.run(encoded.indices, encoded.weights)


@pytest.mark.parametrize("which", ["bundle_dir", "mixed_dir"])
def test_the_models_attention_is_zero_exactly_on_pairs_the_feature_space_calls_absent(
    request: pytest.FixtureRequest, which: str
) -> None:
    """The graph masks attention with its own test of presence; FeatureSpace.presence,
    which the explainer and the exported importance use, must agree with it. (An instance
    with no pair spreads its attention evenly over all of them, each contributing 0.)"""
    bundle = Bundle.load(request.getfixturevalue(which))
    encoded = bundle.features.encode([*instances(bundle, 40), {}])
    scores = bundle.run(encoded.indices, encoded.weights)
    present, pair_present = bundle.features.presence(encoded.weights)
    assert present.shape == (41, bundle.features.num_fields)
    assert not pair_present.all() and pair_present.any()
    some = pair_present.any(axis=1)
    assert not some.all() and some.any()
    assert np.all(scores.attention[some][~pair_present[some]] == 0)
    assert np.all(scores.attention[pair_present] > 0)
    assert np.all(scores.contributions[~pair_present] == 0)
