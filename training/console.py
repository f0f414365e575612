"""What the console scripts (`afm-train`, `afm-eval`, `afm-tune`) share: logging, reading a
run config, and a user's mistake as one line on stderr with exit status 2.

A user's mistake (a missing file, a mistyped `--set` key, a bundle that does not load, data
that does not fit the model) ends in one line naming the problem and what to do, as
`afm-serve` does; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from model.bundle import BundleError
from model.validation import describe
from training.config import RunConfig, load_config
from training.errors import UsageError

USAGE_ERROR = 2
DEBUG_HELP = "on an error, show the Python traceback instead of one line"


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@contextmanager
def user_errors(prog: str, debug: bool) -> Iterator[None]:
    """Turn the errors a user's input causes into one line and exit status 2."""
    try:
        yield
    except (UsageError, BundleError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError, ValueError) as e:
        if debug:
            raise
        # ValueError is what this code base raises for bad data and arguments.
        print(f"{prog}: {_one_line(e)}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from e


def _one_line(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return f"cannot read {error.filename}: {error.strerror}"
    if isinstance(error, IsADirectoryError | NotADirectoryError | PermissionError):  # read or write
        return f"cannot use {error.filename}: {error.strerror}"
    text = " ".join(str(error).split())
    if isinstance(error, UsageError | BundleError):
        return text
    return f"{text} (--debug shows where)"


def read_config(path: str, overrides: list[str]) -> RunConfig:
    """`--config PATH --set KEY=VALUE...` as a RunConfig, or a UsageError saying what is wrong."""
    if not Path(path).is_file():
        raise UsageError(f"no config file {path}: --config takes a TOML run config, e.g. "
                         "configs/synthetic-afm.toml")
    try:
        return load_config(path, overrides)
    except ValidationError as e:
        source = f"{path} with --set" if overrides else path
        raise UsageError(f"invalid config {source}: "
                         f"{describe(e.errors(include_url=False), RunConfig, 'the config')}") from e
    except ValueError as e:  # TOML syntax, or an override that is not key=value
        raise UsageError(f"config {path}: {' '.join(str(e).split())}") from e
