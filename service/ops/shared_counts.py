"""Counts the worker processes of one server share, so that whichever worker answers a
scrape can merge them all (drift statistics: PSIs do not add up, the counts under them do).

Each worker writes its latest counts, a dict of arrays, to `<run dir>/monitor/<pid>.npz`
(a new file renamed over the old, so a reader sees a file whole); `gather` reads every
worker's, its own included. A dead worker's file stays until its counts are older than the
caller cares for (`remove_older`): what it counted before it died still happened.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

DIRECTORY = "monitor"
Arrays = dict[str, np.ndarray]


class SharedCounts:
    def __init__(self, run_dir: Path, worker: int | None = None) -> None:
        """`worker`: this process's number among the server's (its pid by default)."""
        self.directory = run_dir / DIRECTORY
        self.directory.mkdir(parents=True, exist_ok=True)
        self._own = self.directory / f"{os.getpid() if worker is None else worker}.npz"

    def publish(self, arrays: Arrays) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types allow_pickle only
        temporary = self.directory / f".{self._own.name}.tmp"
        temporary.write_bytes(buffer.getvalue())
        os.replace(temporary, self._own)

    def gather(self) -> list[Arrays]:
        """Every worker's latest counts; an unreadable file (a worker killed mid-write
        leaves only its hidden temporary) is skipped."""
        found = []
        for path in sorted(self.directory.glob("[0-9]*.npz")):
            try:
                with np.load(path, allow_pickle=False) as data:
                    found.append({name: data[name] for name in data.files})
            except (OSError, ValueError, zipfile.BadZipFile):
                continue
        return found

    def remove_older(self, seconds: float, now: float) -> None:
        """Drop the files of workers that have written nothing for `seconds`."""
        for path in self.directory.glob("[0-9]*.npz"):
            try:
                if now - path.stat().st_mtime > seconds:
                    path.unlink()
            except FileNotFoundError:
                continue
