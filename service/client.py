"""A small typed client (httpx) for the service.

    with AFMClient("http://127.0.0.1:8000") as client:
        result = client.predict([{"f0": "v3", "f1": "v17"}], explain=3)
        print(result.predictions[0].score, result.predictions[0].explanation)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from service.codecs.schemas import (
    EncodeResponse,
    ExplainResponse,
    ImportanceResponse,
    ModelMetadata,
    PredictResponse,
    ReadyStatus,
    ReloadResponse,
)

Instance = Mapping[str, str | int | float | Sequence[str | int] | None]
T = TypeVar("T", bound=BaseModel)


class AFMClientError(Exception):
    """The service answered with an error status; `message` is its {"error": ...}."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class AFMClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        timeout: float = 10.0,
        http: httpx.Client | None = None,
    ) -> None:
        """`http`: an httpx.Client of your own (tests pass FastAPI's TestClient)."""
        self._http = http or httpx.Client(base_url=base_url, timeout=timeout)

    def predict(self, instances: Sequence[Instance], explain: bool | int = False) -> PredictResponse:
        """explain: False, True (every pair) or an int (the top k pairs)."""
        option: bool | dict[str, int] = (
            {"top_k": explain} if not isinstance(explain, bool) else explain
        )
        body = {"instances": list(instances), "explain": option}
        return self._call("POST", "/predict", PredictResponse, json=body)

    def explain(self, instance: Instance | None = None) -> ExplainResponse | ImportanceResponse:
        """One instance explained with all its pairs; without one, the global importance."""
        if not instance:
            return self._call("GET", "/explain", ImportanceResponse)
        params = [
            (name, str(v))
            for name, value in instance.items() if value is not None
            for v in (value if isinstance(value, list | tuple) else [value])
        ]
        return self._call("GET", "/explain", ExplainResponse, params=params)

    def health(self) -> ReadyStatus:
        """Readiness; raises AFMClientError (503) while no model is loaded."""
        return self._call("GET", "/readyz", ReadyStatus)

    def encode(self, instances: Sequence[Instance]) -> EncodeResponse:
        """The Open Inference Protocol tensors for these instances (`inputs`), and the
        model's `infer` route to post `{"inputs": inputs}` to."""
        return self._call("POST", "/encode", EncodeResponse, json={"instances": list(instances)})

    def metadata(self) -> ModelMetadata:
        return self._call("GET", "/metadata", ModelMetadata)

    def reload(self, token: str, model_dir: str | None = None) -> ReloadResponse:
        return self._call(
            "POST", "/admin/reload", ReloadResponse, json={"model_dir": model_dir},
            headers={"Authorization": f"Bearer {token}"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AFMClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, model: type[T], **kwargs: Any) -> T:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                message = str(response.json()["error"])
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise AFMClientError(response.status_code, message)
        return model.model_validate_json(response.content)
