"""The two ways of building explanations (row by row, whole batch) agree exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.bundle import Bundle
from service.explain import Explainer


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
    rows = explainer._explain_rows(encoded, scores, top_k)
    batch = explainer._explain_batch(encoded, scores, top_k)
    assert rows == batch


def test_small_and_large_requests_take_different_paths_to_the_same_answer(
    bundle_dir: Path,
) -> None:
    bundle = Bundle.load(bundle_dir)
    explainer = Explainer(bundle)
    encoded = bundle.features.encode(instances(bundle, 30))
    scores = bundle.run(encoded.indices, encoded.weights)
    whole = explainer.predictions(encoded, scores, explain=True)
    first = bundle.features.encode(instances(bundle, 30)[:3])
    part = explainer.predictions(first, bundle.run(first.indices, first.weights), explain=True)
    assert [p["explanation"]["pairs"]["fields"] for p in part] == [
        p["explanation"]["pairs"]["fields"] for p in whole[:3]]
