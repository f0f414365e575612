"""The sha256 of a bundle's files, computed once per machine and trusted while each file
keeps its identity.

A server loads its bundle in the supervisor, again in each worker, and again in each worker
that follows a reload; hashing a bundle of large tables takes seconds each time. A
`VerifiedFiles` remembers each digest it computed with the identity of the file it read
(device, inode, size, mtime_ns, ctime_ns): in this process, and, given the server's run
directory, in a small JSON file there that the server's other processes read. A later load
of a file with the same identity takes the digest without reading the file. Changing the
file changes its identity: a write sets its mtime and ctime (which no user can set back),
a replacement (a rename over it) gives the name another inode.

What this trusts that hashing again would not: the file system's metadata, and the record
file, which is as trusted as the run directory (it already names the model every worker
serves). A file whose ctime lies within SETTLED_S of its verification is not remembered
(git's "racily clean" rule): a write in the same timestamp tick as the hash could otherwise
leave the identity as it was. Linux file systems with nanosecond timestamps tick every few
milliseconds; a file whose times are whole seconds is taken to be on a file system with
whole-second (FAT: two-second) timestamps, and waits COARSE_SETTLED_S.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import astuple, dataclass
from pathlib import Path

RECORD_FILE = "verified.json"
SETTLED_S = 0.1
COARSE_SETTLED_S = 2.0
MAX_RECORDS = 256


class FileChanged(Exception):
    """A file changed while it was read or after it was verified."""


@dataclass(frozen=True)
class Identity:
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, status: os.stat_result) -> Identity:
        return cls(status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns,
                   status.st_ctime_ns)

    @classmethod
    def at(cls, path: Path) -> Identity:
        return cls.of(path.stat())

    @property
    def key(self) -> str:
        return f"{self.device}:{self.inode}"


def hash_file(path: Path) -> tuple[str, Identity]:
    """The file's sha256 and the identity of what was read (FileChanged if it changed)."""
    with path.open("rb") as f:
        before = Identity.of(os.fstat(f.fileno()))
        digest = hashlib.file_digest(f, "sha256").hexdigest()
        if Identity.of(os.fstat(f.fileno())) != before:
            raise FileChanged(f"{path.name} changed while it was hashed")
    return digest, before


# This process's digests: a worker that runs in the supervisor's process (one worker, no run
# directory) takes the supervisor's.
_here: dict[str, tuple[Identity, str]] = {}


class VerifiedFiles:
    def __init__(self, run_dir: Path | None = None) -> None:
        """`run_dir`: where the digests are shared with the server's other processes."""
        self._record = run_dir / RECORD_FILE if run_dir is not None else None

    def sha256(self, path: Path) -> tuple[str, Identity]:
        """The file's sha256, remembered or computed, and its identity."""
        identity = Identity.at(path)
        known = self._known(identity)
        if known is not None:
            return known, identity
        started_ns = time.time_ns()
        digest, identity = hash_file(path)
        if identity.ctime_ns <= started_ns - _settled_ns(identity):
            self._remember(identity, digest)
        return digest, identity

    def _known(self, identity: Identity) -> str | None:
        entry = _here.get(identity.key)
        if entry is None and self._record is not None:
            entry = _parse(self._read().get(identity.key))
        if entry is None or entry[0] != identity:
            return None
        return entry[1]

    def _remember(self, identity: Identity, digest: str) -> None:
        _here.pop(identity.key, None)
        _here[identity.key] = (identity, digest)
        while len(_here) > MAX_RECORDS:
            del _here[next(iter(_here))]
        if self._record is None:
            return
        records = self._read()
        records.pop(identity.key, None)
        records[identity.key] = [*astuple(identity), digest]
        kept = dict(list(records.items())[-MAX_RECORDS:])
        temporary = self._record.with_name(f".{self._record.name}.{os.getpid()}")
        try:  # a record not written only costs another process a hash
            temporary.write_text(json.dumps(kept))
            os.replace(temporary, self._record)
        except OSError:
            temporary.unlink(missing_ok=True)

    def _read(self) -> dict[str, object]:
        assert self._record is not None
        try:
            records = json.loads(self._record.read_bytes())
        except (OSError, ValueError):
            return {}  # none yet, or damaged: files are hashed
        return records if isinstance(records, dict) else {}


def _settled_ns(identity: Identity) -> int:
    second = 1_000_000_000
    coarse = identity.mtime_ns % second == 0 and identity.ctime_ns % second == 0
    return int((COARSE_SETTLED_S if coarse else SETTLED_S) * second)


def _parse(raw: object) -> tuple[Identity, str] | None:
    if not isinstance(raw, list) or len(raw) != 6 or not isinstance(raw[5], str) or not all(
            isinstance(v, int) for v in raw[:5]):
        return None
    return Identity(*raw[:5]), raw[5]
