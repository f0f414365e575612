"""The typed client against the real app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from service.app import create_app
from service.client import AFMClient, AFMClientError
from service.codecs.schemas import ExplainResponse, ImportanceResponse
from tests.helpers import INSTANCE, TOKEN, SettingsFactory


@pytest.fixture
def afm(make_settings: SettingsFactory, models_root: Path) -> Iterator[AFMClient]:
    settings = make_settings(model_dir=models_root / "v1", models_root=models_root,
                             admin_token=TOKEN)
    with TestClient(create_app(settings, registry=CollectorRegistry())) as http:
        yield AFMClient(http=http)


def test_client_predicts_and_explains(afm: AFMClient) -> None:
    plain = afm.predict([INSTANCE])
    assert plain.model.name == "synthetic-afm" and plain.predictions[0].explanation is None
    top = afm.predict([INSTANCE], explain=2).predictions[0].explanation
    assert top is not None and len(top.pairs.fields) == 2 and top.pairs_omitted == 13
    one = afm.explain(INSTANCE)
    assert isinstance(one, ExplainResponse) and one.score == plain.predictions[0].score
    assert isinstance(afm.explain(), ImportanceResponse)


def test_client_health_metadata_and_reload(afm: AFMClient) -> None:
    assert afm.health().ready
    assert afm.metadata().version == "1"
    assert afm.reload(TOKEN, "v2").model.version == "2"


def test_client_raises_the_services_error(afm: AFMClient) -> None:
    with pytest.raises(AFMClientError) as caught:
        afm.predict([{"nope": "x"}])
    assert caught.value.status == 400 and "unknown field 'nope'" in caught.value.message
    with pytest.raises(AFMClientError) as caught:
        afm.reload("wrong-token-0123456789")
    assert caught.value.status == 403


def test_client_encodes_for_the_tensor_api(afm: AFMClient) -> None:
    encoded = afm.encode([INSTANCE, {"f0": "unseen"}])
    assert [t.name for t in encoded.inputs] == ["indices", "weights"]
    assert encoded.inputs[0].shape == [2, 6, 1] and encoded.infer.endswith("/infer")
    assert [(o.instance, o.field, o.value) for o in encoded.oov] == [(1, "f0", "unseen")]
