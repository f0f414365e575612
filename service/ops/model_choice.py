"""The model choice shared by the worker processes of one server.

A reload request reaches one worker. That worker publishes the bundle it now serves in a
small file in the server's run directory; every worker polls the file and follows, and a
worker started later (a replacement after a crash) starts from it rather than from
AFM_MODEL_DIR. Writes are atomic (a new file renamed over the old), so a reader sees
either choice whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CHOICE_FILE = "model.json"


@dataclass(frozen=True)
class Choice:
    directory: Path
    sha256: str


class SharedChoice:
    def __init__(self, run_dir: Path) -> None:
        self._path = run_dir / CHOICE_FILE
        self._stamp: tuple[int, int] | None = None

    def publish(self, choice: Choice) -> None:
        temporary = self._path.with_name(f".{CHOICE_FILE}.{os.getpid()}")
        temporary.write_text(json.dumps({"directory": str(choice.directory),
                                         "sha256": choice.sha256}))
        os.replace(temporary, self._path)
        self._stamp = self._current_stamp()

    def read(self) -> Choice | None:
        try:
            data = json.loads(self._path.read_text())
            return Choice(Path(data["directory"]), str(data["sha256"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged file is ignored: the worker keeps what it serves

    def poll(self) -> Choice | None:
        """The choice if the file changed since this worker last looked, else None."""
        stamp = self._current_stamp()
        if stamp is None or stamp == self._stamp:
            return None
        self._stamp = stamp
        return self.read()

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            status = self._path.stat()
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_mtime_ns
