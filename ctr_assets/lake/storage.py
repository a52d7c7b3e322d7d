"""Where CTR data lives: one interface, a local folder and an S3 bucket with the same keys.

Assets only speak keys (`raw/2026/11/27/10/...`, `flatfiles/...`). `Storage` owns what every implementation
must get right the same way: keys stay inside the root, and writes are staged in a local file and published
in one step (a rename, or one PUT), so a reader never sees a half-written object. Implementations supply
the primitives (`_list`, `_read`, `_exists`, `_delete`, `_publish`), where staged files go, and how DuckDB
reaches their keys. Transient errors are retried by the client that meets them (botocore's standard retry
mode on S3), and there is no lock: the table's commits are Iceberg's, optimistic.

A staged file is named after its writer's host and process (`.tmp-<host>-<pid>-<token>`), so the next run
removes what a killed writer left at once, and is created with mode 0666 less the umask, like any file the
user makes (tempfile.mkstemp would make it 0600, and publishing keeps the mode).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import dagster as dg

STAGED_PREFIX = ".tmp-"  # a staged write; never an object, whatever its content
STAGED_ABANDONED_SECONDS = 3600  # a staged file this old belongs to a process that died before publishing
HOST_TAG = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]  # a host name may hold any character
STAGED_NAME = re.compile(re.escape(STAGED_PREFIX) + r"(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-f]{16}")


class ObjectInfo(NamedTuple):
    key: str
    size: int
    last_modified: datetime


class StorageError(RuntimeError):
    """A storage (or other AWS access) problem explained in one line, naming the setting or key to check."""


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class Storage(dg.ConfigurableResource, ABC):
    """A bucket or folder holding raw/, flatfiles/, quarantine/, parquet/, catalog/ and dashboards/."""

    @property
    @abstractmethod
    def url(self) -> str:
        """The storage URL as a user would write it (a folder or s3://bucket/prefix)."""

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order; only keys after `start_after` when given.
        Listed whole before the first is returned."""
        if prefix:
            check_key(prefix)
        return iter(self._list(prefix, start_after))

    def read(self, key: str) -> bytes:
        return self._read(check_key(key))

    def unreadable(self, key: str) -> str | None:
        """Why the object `key` must never be read (the pipeline sets such a raw object aside instead of
        failing on it), or None. A bucket holds any key, also ones that would leave the root if joined."""
        try:
            check_key(key)
        except StorageError as error:
            return str(error)
        return None

    def exists(self, key: str) -> bool:
        return self._exists(check_key(key))

    def delete(self, key: str) -> None:
        self._delete(check_key(key))

    @contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        """A local path to fill; published under `key` in one step when the block exits cleanly. A process
        killed before that leaves only a staged `.tmp-*` file, which is never read as data."""
        staged = staged_file(self._staging_folder(check_key(key)))
        try:
            yield staged
            self._publish(staged, key)
        finally:
            staged.unlink(missing_ok=True)

    def write(self, key: str, data: bytes) -> None:
        with self.writer(key) as path:
            path.write_bytes(data)

    def remove_abandoned_staging(self) -> int:
        """Delete the staged writes that processes left when they died before publishing them; returns how
        many. Here: those in the local temp folder, where implementations that upload their writes stage."""
        return remove_abandoned(Path(tempfile.gettempdir()), ours_only=True)

    @abstractmethod
    @contextmanager
    def local_paths(self, keys: list[str]) -> Iterator[list[str]]:
        """Paths on this machine holding `keys` while the block runs (the files themselves, or copies)."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """How DuckDB names `key` once `attach` has run on its connection."""

    @abstractmethod
    def attach(self, connection: Any) -> None:
        """Let a DuckDB connection read and write `uri(...)` paths."""

    @abstractmethod
    def _list(self, prefix: str, start_after: str) -> list[ObjectInfo]: ...

    @abstractmethod
    def _read(self, key: str) -> bytes: ...

    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    @abstractmethod
    def _staging_folder(self, key: str) -> Path:
        """A local folder for the staged file of `key` (where `_publish` can move or upload it from)."""

    @abstractmethod
    def _publish(self, staged: Path, key: str) -> None:
        """Make the complete staged file the object `key`, in one step."""

    def apply_retention(self, prefix: str, hours: int) -> str:
        """Make objects under `prefix` expire `hours` after they were written; says what was done.

        Here: delete the ones already expired (run it periodically). A bucket overrides it with a lifecycle
        rule, so the store itself expires them."""
        cutoff = datetime.now(timezone.utc) - timedelta(hours=hours)
        expired = [item.key for item in self.list(prefix) if item.last_modified < cutoff]
        for key in expired:
            self.delete(key)
        return f"deleted {len(expired)} objects older than {hours} h under {self.uri(prefix)}"

    def __reduce__(self):
        # Rebuilt from its fields, so a storage can be handed to worker processes.
        return _rebuild, (type(self), self.model_dump())


def _rebuild(kind: type[Storage], fields: dict[str, Any]) -> Storage:
    return kind(**fields)


def staged_file(folder: Path) -> Path:
    """A new empty file in `folder` to stage a write in, named for `remove_abandoned`; mode 0666 less the
    umask, which publishing keeps."""
    path = folder / f"{STAGED_PREFIX}{HOST_TAG}-{os.getpid()}-{secrets.token_hex(8)}"
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
    return path


@contextmanager
def staged_folder() -> Iterator[Path]:
    """A private folder in the local temp folder for the block's work files, named like a staged file, so
    `remove_abandoned` removes it when its process was killed before removing it itself."""
    path = Path(tempfile.gettempdir(), f"{STAGED_PREFIX}{HOST_TAG}-{os.getpid()}-{secrets.token_hex(8)}")
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def remove_abandoned(folder: Path, ours_only: bool = False) -> int:
    """Delete the staged files and folders below `folder` (only directly in it with `ours_only`, which also
    leaves other programs' `.tmp-` names alone) whose writer is gone: a process of this host that no longer
    runs, or a writer of any host that started over an hour ago. Returns how many."""
    cutoff = time.time() - STAGED_ABANDONED_SECONDS
    walk = [(str(folder), os.listdir(folder) if folder.is_dir() else [])] if ours_only else (
        (parent, folders + files) for parent, folders, files in os.walk(folder))
    removed = 0
    for parent, names in walk:
        for name in names:
            match = STAGED_NAME.fullmatch(name)
            if not name.startswith(STAGED_PREFIX) or (ours_only and not match):
                continue
            path = Path(parent, name)
            gone = match is not None and match["host"] == HOST_TAG and not process_alive(int(match["pid"]))
            if gone or _modified_before(path, cutoff):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this host runs (someone else's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def check_key(key: str) -> str:
    """Keys are relative and stay below the storage root: no `..` or `.` step, no empty step, no NUL."""
    parts = key.split("/")
    if (not key or key.startswith("/") or "\\" in key or "\0" in key
            or any(part in (".", "..") for part in parts) or "" in parts[:-1]):
        raise StorageError(f"refusing storage key {key!r}: keys are relative and stay inside the storage root")
    return key


class LocalStorage(Storage):
    """A folder on this machine with the bucket's key layout (the default; no cloud account needed).

    Names starting with `.` are the folder's own bookkeeping (staged writes), never objects. A symbolic link
    in the folder is followed only where it leads to a place inside the folder: nothing is ever read, written
    or listed outside it (a link leading out is listed as an object of its own, which cannot be read)."""

    root: str

    @property
    def url(self) -> str:
        return str(self.root_path)

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def path(self, key: str) -> Path:
        """Where `key` is written: its folder with every link resolved (refused when that leaves the root),
        then its name, not followed: publishing replaces a link there, deleting removes the link."""
        if any(part.startswith(".") for part in check_key(key).split("/")):
            raise StorageError(f"refusing storage key {key!r}: names starting with '.' are reserved for the storage itself")
        folder, _, name = key.rpartition("/")
        return self._inside(folder, key) / name

    def _inside(self, relative: str, key: str) -> Path:
        """`relative` below the root with every link resolved; refused when that leaves the root."""
        root = self.root_path
        real = Path(os.path.realpath(root / relative))
        if real != root and not real.is_relative_to(root):
            raise StorageError(f"refusing storage key {key!r}: a symbolic link in {root} leads outside it, to {real}")
        return real

    def _readable(self, key: str) -> Path:
        """The file holding `key`, every link resolved inside the root. Only a regular file is read: a FIFO
        would block its reader forever."""
        self.path(key)
        real = self._inside(key, key)
        if real.exists() and not real.is_file():
            raise StorageError(f"refusing storage key {key!r}: {real} is not a regular file")
        return real

    def unreadable(self, key: str) -> str | None:
        try:
            self._readable(key)
        except StorageError as error:
            return str(error)
        return None

    def _list(self, prefix: str, start_after: str) -> list[ObjectInfo]:
        # Walk only the folders the prefix can reach, so listing one hour never scans the whole tree.
        folder, _, _ = prefix.rpartition("/")
        base = self._inside(folder, prefix)
        found = {key: (path, outside) for key, path, outside in _object_paths(self.root_path, base, f"{folder}/" if folder else "")
                 if key.startswith(prefix) and key > start_after}
        infos = (_info(key, *found[key]) for key in sorted(found))
        return [info for info in infos if info is not None]

    def _read(self, key: str) -> bytes:
        return self._readable(key).read_bytes()

    def _exists(self, key: str) -> bool:
        return self._readable(key).is_file()

    def _delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def _staging_folder(self, key: str) -> Path:
        # Beside the target, so publishing is a rename within one file system.
        folder = self.path(key).parent
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _publish(self, staged: Path, key: str) -> None:
        os.replace(staged, self.path(key))

    def remove_abandoned_staging(self) -> int:
        return remove_abandoned(self.root_path)

    @contextmanager
    def local_paths(self, keys: list[str]) -> Iterator[list[str]]:
        yield [self._readable(key).as_posix() for key in keys]

    def uri(self, key: str) -> str:
        """The real path of `key`, links resolved inside the root, so DuckDB, pyiceberg and SQLite, which open
        it themselves, never follow a link out of it."""
        self.path(key)
        return self._inside(key, key).as_posix() + ("/" if key.endswith("/") else "")

    def attach(self, connection: Any) -> None:
        return None


def _object_paths(root: Path, folder: Path, key_folder: str) -> Iterator[tuple[str, str, bool]]:
    """(key, path, whether it is a link leading out) of every object below `folder`, a real folder inside
    `root` whose key is `key_folder`. Names starting with `.` are skipped. Links are followed only while they
    stay inside `root`, each folder entered once (a link may point back up); a link leading out is an object
    of its own, never entered or read."""
    folders, entered = [(str(folder), key_folder)], {str(folder)}
    while folders:
        path, key_path = folders.pop()
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):  # removed meanwhile, or the prefix names a file
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            key, found, is_link = key_path + entry.name, entry.path, entry.is_symlink()
            if is_link:
                found = os.path.realpath(found)
                if not Path(found).is_relative_to(root):
                    yield key, entry.path, True
                    continue
            if os.path.isdir(found) if is_link else entry.is_dir(follow_symlinks=False):
                if found not in entered:
                    entered.add(found)
                    folders.append((found, key + "/"))
            else:
                yield key, found, False


def _info(key: str, path: str, outside: bool) -> ObjectInfo | None:
    """A listed object's size and time: of the link itself when it leads out of the root (nothing there is
    looked at)."""
    try:
        found = os.lstat(path) if outside else os.stat(path)
    except FileNotFoundError:  # deleted by another process since the folder was walked
        return None
    return ObjectInfo(key, found.st_size, datetime.fromtimestamp(found.st_mtime, timezone.utc))


def _modified_before(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:  # published or removed by its writer meanwhile
        return False
