"""`afm-serve`: check the bundle, then run uvicorn with one or more worker processes."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from pydantic import ValidationError

from model.bundle import BundleError
from model.validation import describe_error
from model.verification import RECORD_FILE, VerifiedFiles
from service.core.model import load_model
from service.ops.metrics import MULTIPROC_ENV
from service.ops.model_choice import CHOICE_FILE, SHADOW_FILE
from service.ops.process import configure_process
from service.ops.settings import Settings
from service.ops.shared_counts import DIRECTORY as COUNTS_DIRECTORY

log = logging.getLogger("service.cli")
GRACEFUL_SHUTDOWN_S = 30
FLAGS = {"model_dir": "AFM_MODEL_DIR", "host": "AFM_HOST", "port": "AFM_PORT",
         "workers": "AFM_WORKERS"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="afm-serve",
        description="Serve an AFM/FM bundle over HTTP. Settings come from AFM_* environment "
        "variables; these flags override them.",
    )
    parser.add_argument("--model-dir", help="bundle directory (AFM_MODEL_DIR)")
    parser.add_argument("--host", help="interface to bind (AFM_HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (AFM_PORT, default 8000)")
    parser.add_argument("--workers", type=int, help="worker processes (AFM_WORKERS, default 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        print(f"afm-serve: invalid setting {describe_error(e, Settings)}",
              file=sys.stderr)
        return 2
    configure_process(settings)
    problem = port_problem(settings.host, settings.port)
    if not problem and settings.grpc_port is not None:
        problem = grpc_port_problem(settings)
    if problem:
        print(f"afm-serve: {problem}", file=sys.stderr)
        return 2
    for key, env in FLAGS.items():  # worker processes read their settings from the environment
        if key in overrides:
            os.environ[env] = str(getattr(settings, key))
    made = _shared_dirs(settings)
    try:
        # Fail here, once, with one line, rather than in every worker with a traceback. The
        # digests go to the run directory: the workers check each file's identity, not its bytes.
        run_dir = os.environ.get("AFM_RUN_DIR")
        load_model(settings.model_dir, settings.ort_threads, settings.batch_max_size,
                   VerifiedFiles(Path(run_dir) if run_dir else None))
    except BundleError as e:
        print(f"afm-serve: cannot serve: {e}", file=sys.stderr)
        return 1
    else:
        _serve(settings)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    return 0


def port_problem(host: str, port: int) -> str | None:
    """Why afm-serve could not listen on host:port, in one line, or None. Binds the way
    uvicorn will (SO_REUSEADDR), so a port in TIME_WAIT is not reported busy."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return f"cannot listen on {host}: {e.strerror}; set --host (AFM_HOST) to an address of this machine"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            return (f"cannot listen on {host}:{port}: {e.strerror} (another afm-serve?); stop what "
                    f"uses it or choose another port with --port (AFM_PORT)")
    return None


def grpc_port_problem(settings: Settings) -> str | None:
    """Workers bind the gRPC port with SO_REUSEPORT (grpcio's default), which would also
    share it with another server already there: check that it is free first."""
    if settings.grpc_port == 0:
        return None if settings.workers == 1 else (
            "AFM_GRPC_PORT=0 (any free port) needs AFM_WORKERS=1: each worker would get another port")
    problem = port_problem(settings.host, settings.grpc_port or 0)
    return problem and problem.replace("--port (AFM_PORT)", "AFM_GRPC_PORT")


def _shared_dirs(settings: Settings) -> Path | None:
    """Several workers share metrics (files in PROMETHEUS_MULTIPROC_DIR), the model a
    reload chose, the shadow model and drift counts (AFM_RUN_DIR). Given directories are
    cleared of a previous run's state; missing ones are made in a temporary directory,
    returned for removal at exit."""
    given = os.environ.get(MULTIPROC_ENV)
    for stale in Path(given).glob("*.db") if given else ():
        stale.unlink()
    if settings.run_dir is not None:  # a previous run's choices and drift counts
        for name in (CHOICE_FILE, SHADOW_FILE, RECORD_FILE):
            (settings.run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(settings.run_dir / COUNTS_DIRECTORY, ignore_errors=True)
    if settings.workers == 1 or (given and settings.run_dir is not None):
        return None
    made = Path(tempfile.mkdtemp(prefix="afm-serve-"))
    if not given:
        (made / "metrics").mkdir()
        os.environ[MULTIPROC_ENV] = str(made / "metrics")
    if settings.run_dir is None:
        os.environ["AFM_RUN_DIR"] = str(made)
    return made


def _serve(settings: Settings) -> None:
    import uvicorn

    from service.http.bounded_protocol import BoundedHttpToolsProtocol

    # A partial, not a class made here: worker processes receive it pickled.
    protocol = functools.partial(BoundedHttpToolsProtocol, max_url_bytes=settings.max_url_bytes,
                                 max_header_bytes=settings.max_header_bytes)
    uvicorn.run(
        "service.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        http=protocol,  # type: ignore[arg-type]  # uvicorn calls it as it would a class
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        server_header=False,
    )


if __name__ == "__main__":
    sys.exit(main())
