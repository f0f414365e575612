"""The model choices shared by the worker processes of one server: the model served and
the shadow model scored beside it.

A reload (or a shadow request) reaches one worker. That worker publishes its choice in a
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
SHADOW_FILE = "shadow.json"


@dataclass(frozen=True)
class Choice:
    directory: Path
    sha256: str
    fraction: float | None = None  # a shadow model's share of live requests


class SharedChoice:
    def __init__(self, run_dir: Path, name: str = CHOICE_FILE) -> None:
        self._path = run_dir / name
        self._stamp: tuple[int, int] | None = None

    def publish(self, choice: Choice | None) -> None:
        """Write the choice; None: there is none (a shadow model removed)."""
        data = None if choice is None else {
            "directory": str(choice.directory), "sha256": choice.sha256, "fraction": choice.fraction}
        temporary = self._path.with_name(f".{self._path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self._path)
        self._stamp = self._current_stamp()

    def read(self) -> Choice | None:
        try:
            data = json.loads(self._path.read_text())
            if data is None:
                return None
            fraction = data.get("fraction")
            return Choice(Path(data["directory"]), str(data["sha256"]),
                          None if fraction is None else float(fraction))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # a damaged file is ignored: the worker keeps what it serves

    def changed(self) -> bool:
        """Whether the file changed since this worker last looked (or wrote it)."""
        stamp = self._current_stamp()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        return True

    def poll(self) -> Choice | None:
        """The choice if the file changed since this worker last looked, else None."""
        return self.read() if self.changed() else None

    def _current_stamp(self) -> tuple[int, int] | None:
        try:
            status = self._path.stat()
        except FileNotFoundError:
            return None
        return status.st_ino, status.st_mtime_ns
