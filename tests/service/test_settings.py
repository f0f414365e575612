"""Settings come from AFM_* variables, fail fast and name the key at fault."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from service.ops.settings import Settings


def test_settings_come_from_afm_variables(monkeypatch: pytest.MonkeyPatch,
                                          bundle_dir: Path) -> None:
    monkeypatch.setenv("AFM_MODEL_DIR", str(bundle_dir))
    monkeypatch.setenv("AFM_PORT", "9123")
    monkeypatch.setenv("AFM_BATCH_MAX_WAIT_US", "250")
    monkeypatch.setenv("AFM_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("AFM_ADMIN_TOKEN", "")
    settings = Settings()  # type: ignore[call-arg]
    assert settings.model_dir == bundle_dir.resolve()
    assert (settings.port, settings.batch_max_wait_s) == (9123, 0.00025)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.admin_token is None and settings.models_root is None


@pytest.mark.parametrize(("changes", "phrase"), [
    ({"model_dir": "/no/such/bundle"}, "AFM_MODEL_DIR=/no/such/bundle is not a directory"),
    ({"models_root": "/no/such/root"}, "AFM_MODELS_ROOT"),
    ({"admin_token": "short"}, "AFM_ADMIN_TOKEN must have at least 16"),
    ({"port": 0}, "port"),
    ({"workers": 0}, "workers"),
    ({"batch_max_wait_us": -1}, "batch_max_wait_us"),
    ({"log_level": "loud"}, "log_level"),
    ({"cors_origins": "ftp://x"}, "AFM_CORS_ORIGINS"),
    ({"unknown": 1}, "unknown"),
])
def test_bad_settings_fail_fast_naming_the_key(bundle_dir: Path, changes: dict[str, object],
                                               phrase: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**{"model_dir": bundle_dir, **changes})  # type: ignore[arg-type]
    assert phrase in str(caught.value)
