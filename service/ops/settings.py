"""Service settings: environment variables with the prefix `AFM_`, read once and passed down."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_TOKEN_CHARS = 16
MAX_WINDOW_STEPS = 1440


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="AFM_", frozen=True, extra="forbid", protected_namespaces=()
    )

    model_dir: Path
    """The bundle served at start-up (a directory with model.onnx and manifest.json)."""
    models_root: Path | None = None
    """Reloads may only name bundles inside this directory; unset: only model_dir reloads."""
    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 exposes the service on every interface."""
    port: int = Field(default=8000, ge=1, le=65535)
    """TCP port to listen on."""
    workers: int = Field(default=1, ge=1, le=64)
    """Worker processes; more than one needs PROMETHEUS_MULTIPROC_DIR (afm-serve sets it)."""
    ort_threads: int = Field(default=1, ge=1, le=64)
    """onnxruntime intra-op threads per worker; 1 is fastest for small batches."""
    batch_max_size: int = Field(default=256, ge=1, le=65536)
    """Most instances coalesced into one onnxruntime run."""
    # The default costs a lone request next to nothing and interleaves many fairly
    # (docs/BENCHMARKS.md). uvloop rounds timers to whole milliseconds: waits up to 500 us
    # coalesce what arrives in one loop turn.
    batch_max_wait_us: int = Field(default=250, ge=0, le=1_000_000)
    """How long the first request of a batch waits for others, in microseconds; 0 = off."""
    # Off by default: on few cores a thread reorders the work rather than adding any, and
    # costs large requests CPU (docs/BENCHMARKS.md, "On the event loop or in a thread").
    thread_min_instances: int = Field(default=0, ge=0, le=1_000_000)
    """Requests of this many instances or more run the model in a thread, so the event loop
    serves other requests meanwhile (onnxruntime releases the GIL); 0: all on the loop."""
    max_instances: int = Field(default=1024, ge=1, le=1_000_000)
    """Most instances in one request (predict and infer)."""
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 30)
    """Larger request bodies get 413 before they are read."""
    # httptools cannot parse a URL over 65,535 bytes (its offsets are 16-bit).
    max_url_bytes: int = Field(default=8192, ge=256, le=65535)
    """Longer request targets (path and query) get 414, refused while they are read."""
    max_header_bytes: int = Field(default=16384, ge=1024, le=1 << 20)
    """Request headers larger than this in all (names and values) get 431, refused while read."""
    trim_after_bytes: int = Field(default=256 << 10, ge=0, le=1 << 30)
    """After request and response bodies this large, free heap goes back to the OS; 0: never."""
    admin_token: SecretStr | None = None
    """Bearer token for POST /admin/reload; unset disables the route."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """Level of the service's logs."""
    log_format: Literal["json", "text"] = "json"
    """json: one object per line (request logs included); text: for humans."""
    access_log: bool = True
    """One log line per request (health and metrics probes excepted) at level info; lines
    are written in batches, at most 0.1 s after their request."""
    run_dir: Path | None = None
    """Directory the worker processes of one server share (afm-serve sets it)."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins allowed by CORS, comma-separated; empty turns CORS off."""
    grpc_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the Open Inference Protocol gRPC service on AFM_HOST; unset: no gRPC; 0: any free port."""
    grpc_max_message_bytes: int = Field(default=4 << 20, ge=1024, le=1 << 30)
    """Largest gRPC request or response message; larger ones get RESOURCE_EXHAUSTED."""
    monitor: bool = False
    """Drift monitoring: what is scored, counted against the bundle's reference (PSI per field
    and of the score, pair contributions) and exported on /metrics; bundles without one report nothing."""
    monitor_window_s: int = Field(default=900, ge=10, le=7 * 86400)
    """The sliding window drift statistics cover, in seconds."""
    monitor_interval_s: float = Field(default=10.0, ge=0.5, le=3600)
    """How often counts are folded into the window and shared with the other workers (the
    window's step), in seconds."""
    monitor_min_instances: int = Field(default=1000, ge=1, le=1 << 30)
    """Fewer instances in the window (or holding a pair) report no online statistic: too noisy."""
    shadow_max_pending: int = Field(default=4096, ge=1, le=1 << 20)
    """Instances waiting for the shadow model at most; more are dropped (and counted)."""
    shadow_threshold: float = Field(default=0.05, gt=0, le=1e6)
    """A shadow's prediction (probability, or the clipped prediction) further than this from
    the live one counts as a disagreement."""
    impression_log_dir: Path | None = None
    """Log every scored instance here, as Parquet in hour folders (docs/IMPRESSIONS.md); unset: no log."""
    impression_sample: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of requests whose instances are logged, chosen by request id (whole requests)."""
    impression_roll_seconds: float = Field(default=300.0, ge=0.1, le=86400.0)
    """Each worker closes its log file (its rows become readable) this long after opening it."""
    impression_roll_bytes: int = Field(default=128 << 20, ge=1 << 16, le=1 << 36)
    """... or once the file holds this many bytes, whichever comes first."""
    impression_queue_instances: int = Field(default=1 << 16, ge=1, le=1 << 24)
    """Most instances waiting for the log's writer thread; a request that would pass it is not
    logged (afm_impressions_dropped_total), never slowed or failed."""
    impression_shadow_wait_s: float = Field(default=1.0, ge=0.0, le=30.0)
    """With a shadow model, how long after scoring a request its log record waits for the
    shadow's scores at most; later, it is written with null shadow columns."""

    @field_validator("model_dir")
    @classmethod
    def _bundle_dir(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"AFM_MODEL_DIR={value} is not a directory")
        return value.resolve()

    @field_validator("models_root")
    @classmethod
    def _root_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"AFM_MODELS_ROOT={value} is not a directory")
        return None if value is None else value.resolve()

    @field_validator("impression_log_dir", mode="before")
    @classmethod
    def _unset_log_dir(cls, value: object) -> object:
        return None if value == "" else value  # compose's way of leaving a variable unset

    @field_validator("impression_log_dir")
    @classmethod
    def _log_dir(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        try:
            value.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ValueError(f"AFM_IMPRESSION_LOG_DIR={value} cannot be made a directory: "
                             f"{e.strerror}") from e
        if not os.access(value, os.W_OK | os.X_OK):
            raise ValueError(f"AFM_IMPRESSION_LOG_DIR={value} is not writable")
        return value.resolve()

    @field_validator("admin_token")
    @classmethod
    def _strong_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        if len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(f"AFM_ADMIN_TOKEN must have at least {MIN_TOKEN_CHARS} characters")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(f"AFM_CORS_ORIGINS entry {origin!r} is not * or an http(s) origin")
        return value

    @model_validator(mode="after")
    def _window_steps(self) -> Settings:
        steps = self.monitor_window_s / self.monitor_interval_s
        if not 1 <= steps <= MAX_WINDOW_STEPS:
            raise ValueError(f"AFM_MONITOR_WINDOW_S / AFM_MONITOR_INTERVAL_S must be between 1 "
                             f"and {MAX_WINDOW_STEPS} steps, got {steps:g}")
        return self

    @property
    def window_steps(self) -> int:
        """Buckets of the drift window: one per interval."""
        return math.ceil(self.monitor_window_s / self.monitor_interval_s)

    @property
    def batch_max_wait_s(self) -> float:
        return self.batch_max_wait_us / 1e6
