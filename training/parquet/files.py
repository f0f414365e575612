"""Where a Parquet dataset's files are: a file, a directory of part files (recursively, with
Hive-style `key=value` directories), a glob, or a list of these; local paths or URLs that
pyarrow's filesystems open (file://, s3://, gs://, hdfs://: `FileSystem.from_uri`, with the
credentials each finds in its environment).

Names starting with "." or "_" are skipped in directories and glob matches, as Spark and
Hive leave them (`_SUCCESS`, `.part-00000.crc`, `_temporary/`). A glob matches within path
components (`*`, `?`, `[...]`, as in `logs/day=2026-11-2*`); every matched directory is read
whole. The files are read in the order of their names, whatever order the paths came in.
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from urllib.parse import unquote

import pyarrow.fs as pafs

from training.errors import UsageError

HIDDEN = (".", "_")
SUFFIXES = (".parquet", ".parq")


@dataclass(frozen=True)
class DataFile:
    filesystem: pafs.FileSystem = field(compare=False)
    path: str
    """The file as its filesystem names it."""
    name: str
    """The file as the user would name it: a local path or a URL."""
    size: int
    mtime_ns: int | None

    def key(self) -> dict[str, object]:
        """What the file contributes to a cache key: a changed file has a new size or mtime."""
        return {"path": self.name, "size": self.size, "mtime_ns": self.mtime_ns}

    def partitions(self) -> dict[str, str]:
        """The Hive-style `key=value` directories on the file's path (values URL-decoded)."""
        found = {}
        for part in self.path.split("/")[:-1]:
            key, sep, value = part.partition("=")
            if sep and key:
                found[unquote(key)] = unquote(value)
        return found


def has_magic(path: str) -> bool:
    return any(c in path for c in "*?[")


def resolve(paths: str | list[str]) -> list[DataFile]:
    """Every file of the dataset, sorted by name and without repeats; a path that names
    nothing is an error."""
    found: dict[str, DataFile] = {}
    for entry in [paths] if isinstance(paths, str) else paths:
        files = _entry(entry)
        if not files:
            raise UsageError(f"no Parquet files {'match' if has_magic(entry) else 'under'} {entry}")
        found.update((f.name, f) for f in files)
    if not found:
        raise UsageError("no Parquet dataset given: a file, a directory, a glob or a list of these")
    return [found[name] for name in sorted(found)]


def _entry(entry: str) -> list[DataFile]:
    filesystem, path, prefix = _open(entry)
    if has_magic(path):
        candidates = _glob(filesystem, path)
    else:
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), entry)
        candidates = [info]
    files: list[DataFile] = []
    for info in candidates:
        infos = _walk(filesystem, info.path) if info.type == pafs.FileType.Directory else [info]
        files += [DataFile(filesystem, i.path, prefix + i.path, i.size or 0, i.mtime_ns)
                  for i in infos if i.type == pafs.FileType.File]
    return files


def _open(entry: str) -> tuple[pafs.FileSystem, str, str]:
    """(filesystem, its path, the prefix that makes a path a name again: a URL's scheme)."""
    if "://" not in entry:
        return pafs.LocalFileSystem(), os.path.abspath(entry), ""
    filesystem, path = pafs.FileSystem.from_uri(entry)
    at = entry.rfind(path.rstrip("/")) if path.strip("/") else -1
    prefix = entry[:at] if at > 0 else f"{filesystem.type_name}://"
    return filesystem, path, "" if filesystem.type_name == "local" else prefix


def _glob(filesystem: pafs.FileSystem, pattern: str) -> list[pafs.FileInfo]:
    """Whatever the pattern matches, one path component at a time."""
    parts = pattern.split("/")
    first = next(k for k, part in enumerate(parts) if has_magic(part))
    bases = ["/".join(parts[:first]) or "/"]
    for part in parts[first:]:
        if not has_magic(part):
            bases = [posixpath.join(base, part) for base in bases]
            continue
        matched = []
        for base in bases:
            try:
                listed = filesystem.get_file_info(pafs.FileSelector(base, allow_not_found=True))
            except (NotADirectoryError, OSError):  # a file where the pattern wants a directory
                continue
            matched += [i.path for i in listed
                        if fnmatchcase(i.base_name, part) and not i.base_name.startswith(HIDDEN)]
        bases = matched
    return [i for i in filesystem.get_file_info(sorted(bases)) if i.type != pafs.FileType.NotFound]


def _walk(filesystem: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    """The files under a directory, none hidden at any depth below it."""
    listed = filesystem.get_file_info(pafs.FileSelector(directory, recursive=True))
    root = directory.rstrip("/") + "/"
    return [i for i in listed if i.type == pafs.FileType.File
            and not any(p.startswith(HIDDEN) for p in i.path[len(root):].split("/"))]


def looks_like_parquet(path: str) -> bool:
    """A .parquet file, or a local directory or glob with one somewhere below: afm-eval's
    guess (remote paths are not listed to guess)."""
    if path.lower().rstrip("/").endswith(SUFFIXES):
        return True
    if "://" in path:
        return False
    try:
        candidates = [i.path for i in _glob(pafs.LocalFileSystem(), os.path.abspath(path))] \
            if has_magic(path) else [path]
    except OSError:
        return False
    return any(_holds_parquet(c) for c in candidates)


def _holds_parquet(path: str) -> bool:
    if not os.path.isdir(path):
        return path.lower().endswith(SUFFIXES)
    for _, directories, names in os.walk(path):
        directories[:] = [d for d in directories if not d.startswith(HIDDEN)]
        if any(n.lower().endswith(SUFFIXES) and not n.startswith(HIDDEN) for n in names):
            return True
    return False
