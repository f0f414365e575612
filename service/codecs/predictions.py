"""Predictions and explanations as JSON-ready values: the one renderer of the shape that
`service.codecs.schemas` documents (`Prediction`, `Explanation`, `LinearTerms`, `PairTerms`).

Plain dicts and lists, not pydantic models: a model per instance would cost more than the
model run (docs/BENCHMARKS.md). tests/service/test_shapes.py derives the keys from the
schemas, so a field added to one and not to the other fails there.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from service.core.results import (
    EncodedInstances,
    Explanations,
    Importance,
    Predictions,
)

EMPTY_WARNING = "no field present: every field is missing or null, so the score reflects no input"
# The `oov` of an instance with none: one shared empty tuple, which orjson writes as [],
# rather than a new list per instance.
NO_OOV: tuple[()] = ()


def render_predictions(predictions: Predictions) -> list[dict[str, Any]]:
    """One `Prediction` per instance."""
    label = "probability" if predictions.task == "binary" else "prediction"
    pairs = zip(predictions.scores, predictions.values, strict=True)
    if predictions.oov:
        oov = _oov_by_row(predictions)
        results: list[dict[str, Any]] = [
            {"score": score, label: value, "oov": oov.get(row, NO_OOV)}
            for row, (score, value) in enumerate(pairs)]
    else:  # the common case: no row numbers to look up
        results = [{"score": score, label: value, "oov": NO_OOV} for score, value in pairs]
    if predictions.impression_ids is not None:
        for result, impression in zip(results, predictions.impression_ids, strict=True):
            result["impression_id"] = impression
    for row in predictions.empty:
        results[row]["warning"] = EMPTY_WARNING
    if predictions.explanations is not None:
        for result, explanation in zip(
            results, render_explanations(predictions.explanations), strict=True
        ):
            result["explanation"] = explanation
    return results


def _oov_by_row(predictions: Predictions) -> dict[int, list[dict[str, str]]]:
    oov: defaultdict[int, list[dict[str, str]]] = defaultdict(list)
    for row, field, value in predictions.oov:
        oov[row].append({"field": field, "value": value})
    return oov


def render_v1_predictions(predictions: Predictions) -> dict[str, Any]:
    """KServe V1's `V1PredictResponse`: the probability (binary) or prediction of each."""
    return {"predictions": predictions.values}


def render_v1_explanations(predictions: Predictions) -> dict[str, Any]:
    """KServe V1's `V1ExplainResponse`: the predictions, and per instance its score, its
    values out of vocabulary and `POST /predict`'s explanation of it."""
    assert predictions.explanations is not None
    oov = _oov_by_row(predictions)
    return {"predictions": predictions.values, "explanations": [
        {"score": score, "oov": oov.get(row, NO_OOV), **explanation}
        for row, (score, explanation) in enumerate(zip(
            predictions.scores, render_explanations(predictions.explanations), strict=True))
    ]}


def render_explanations(explanations: Explanations) -> list[dict[str, Any]]:
    """One `Explanation` per instance, from the batch's columns."""
    bias, shift, calibration = explanations.bias, explanations.logit_shift, explanations.calibration
    linear, pairs = explanations.linear, explanations.pairs
    return [
        {"bias": bias, "logit_shift": shift, "calibration": calibration,
         "linear": {"fields": fields, "values": values, "weights": weights},
         "interaction": interaction,
         "pairs": {"fields": names, "values": shown, "attention": attention,
                   "contributions": contributions},
         "pairs_omitted": omitted}
        for fields, values, weights, interaction, names, shown, attention, contributions, omitted
        in zip(linear.fields, linear.values, linear.weights, explanations.interaction,
               pairs.fields, pairs.values, pairs.attention, pairs.contributions,
               explanations.pairs_omitted, strict=True)
    ]


def render_importance(importance: Importance) -> dict[str, Any]:
    return {"model": importance.model,
            "importance": [pair.model_dump(mode="json") for pair in importance.pairs]}


def render_encoded(result: EncodedInstances) -> dict[str, Any]:
    """The Open Inference Protocol inputs of the instances, and where to post them."""
    ref, encoded = result.model, result.encoded
    shape = list(encoded.indices.shape)
    return {
        "model": ref, "infer": f"/v2/models/{ref.name}/versions/{ref.version}/infer",
        "inputs": [
            {"name": "indices", "shape": shape, "datatype": "INT64", "data": encoded.indices.ravel()},
            {"name": "weights", "shape": shape, "datatype": "FP32", "data": encoded.weights.ravel()},
        ],
        "oov": [{"instance": row, "field": field, "value": value} for row, field, value in encoded.oov],
    }
