"""Where CTR data lives: one interface, a local folder today and an S3 bucket with the same keys.

Assets only speak keys (`raw/2026/11/27/10/...`, `parquet/ctr/dt=.../ctr.parquet`). Writes are staged in a
local file and published in one step (a rename, or one PUT), so a reader never sees a half-written object.
"""

from __future__ import annotations

import os
import tempfile
from abc import ABC, abstractmethod
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import dagster as dg


class ObjectInfo(NamedTuple):
    key: str
    size: int
    last_modified: datetime


class StorageError(RuntimeError):
    """A storage problem explained in one line, naming the setting to check."""


class Storage(dg.ConfigurableResource, ABC):
    """A bucket or folder holding raw/, flatfiles/, quarantine/, parquet/, catalog/ and dashboards/."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The storage URL as a user would write it (a folder or s3://bucket/prefix)."""

    @abstractmethod
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order."""

    @abstractmethod
    def read(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    @contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        """A local path to fill; published under `key` in one step when the block exits cleanly."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """How DuckDB names `key` once `attach` has run on its connection."""

    @abstractmethod
    def attach(self, connection: Any) -> None:
        """Let a DuckDB connection read and write `uri(...)` paths."""

    def write(self, key: str, data: bytes) -> None:
        with self.writer(key) as path:
            path.write_bytes(data)

    def __reduce__(self):
        # Rebuilt from its fields, so a storage can be handed to worker processes.
        return _rebuild, (type(self), self.model_dump())


def _rebuild(kind: type[Storage], fields: dict[str, Any]) -> Storage:
    return kind(**fields)


def check_key(key: str) -> str:
    """Keys are relative and stay below the storage root."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or ".." in parts or "" in parts[:-1]:
        raise StorageError(f"refusing storage key {key!r}: keys are relative and stay inside the storage root")
    return key


class LocalStorage(Storage):
    """A folder on this machine with the bucket's key layout (the default; no cloud account needed)."""

    root: str

    @property
    def url(self) -> str:
        return str(self.root_path)

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def path(self, key: str) -> Path:
        return self.root_path / check_key(key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Walk only the folders the prefix can reach, so listing one hour never scans the whole tree.
        folder, _, name_start = prefix.rpartition("/")
        base = self.root_path / folder if folder else self.root_path
        if not base.is_dir():
            return
        keys = (path.relative_to(self.root_path).as_posix() for path in _walk_files(base))
        for key in sorted(key for key in keys if key.startswith(prefix)):
            stat = self.path(key).stat()
            yield ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc))

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    @contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, staged = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        os.close(handle)
        try:
            yield Path(staged)
            os.replace(staged, target)
        finally:
            Path(staged).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return self.path(key).as_posix() + ("/" if key.endswith("/") else "")

    def attach(self, connection: Any) -> None:
        return None


def _walk_files(base: Path) -> Iterator[Path]:
    for folder, _, files in os.walk(base):
        for name in files:
            if not name.startswith(".tmp-"):
                yield Path(folder) / name
