"""Where CTR data lives: one interface, a local folder today and an S3 bucket with the same keys.

Assets only speak keys (`raw/2026/11/27/10/...`, `parquet/ctr/dt=.../ctr.parquet`). `Storage` owns what
every implementation must get right the same way: keys stay inside the root, transient errors (throttling,
5xx, dropped connections) are retried with backoff around each primitive, and writes are staged in a local
file and published in one step (a rename, or one PUT), so a reader never sees a half-written object.
Implementations supply the primitives (`_list`, `_read`, `_exists`, `_delete`, `_publish`), where staged
files go, a lock shared by every process, and how DuckDB reaches their keys.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import socket
import tempfile
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, TypeVar

import dagster as dg
from botocore import exceptions as aws_errors
from pydantic import Field

log = logging.getLogger(__name__)
T = TypeVar("T")

STAGED_PREFIX = ".tmp-"  # a staged write; never an object, whatever its content
STAGED_ABANDONED_SECONDS = 3600  # a staged file this old belongs to a process that died before publishing
LOCKS_FOLDER = ".locks"
LOCK_POLL_SECONDS = 0.05
# Error codes and statuses that botocore's own "standard" retry mode treats as throttling or transient.
TRANSIENT_ERROR_CODES = frozenset({
    "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete", "Throttling", "ThrottlingException",
    "ThrottledException", "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown", "InternalError",
    "ServiceUnavailable",
})
TRANSIENT_STATUS_CODES = frozenset({429, 500, 502, 503, 504})
_STATUS_TEXTS = frozenset(str(status) for status in TRANSIENT_STATUS_CODES)
TRANSIENT_EXCEPTIONS = (
    aws_errors.ConnectionError,  # could not connect, connect timeout
    aws_errors.HTTPClientError,  # connection closed or reset, read timeout, body cut while streaming
    aws_errors.IncompleteReadError,
    ConnectionError,
    TimeoutError,
)


class ObjectInfo(NamedTuple):
    key: str
    size: int
    last_modified: datetime


class StorageError(RuntimeError):
    """A storage (or other AWS access) problem explained in one line, naming the setting or key to check."""


class StorageUnavailable(StorageError):
    """Transient errors (throttling, 5xx, dropped connections) that outlasted their retries: a rerun may pass."""


def is_transient_error(error: BaseException) -> bool:
    """Worth another try: throttling, server-side errors and dropped connections. Anything else (missing
    key, access denied, a full disk) fails at once, because repeating it cannot help."""
    if isinstance(error, aws_errors.ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # Some S3-compatible stores put the bare HTTP status in the code ("503").
        return code in TRANSIENT_ERROR_CODES or status in TRANSIENT_STATUS_CODES or code in _STATUS_TEXTS
    return isinstance(error, TRANSIENT_EXCEPTIONS)


def retry_transient(
    call: Callable[[], T],
    what: str,
    *,
    attempts: int,
    base_seconds: float,
    max_seconds: float = 20.0,
    is_transient: Callable[[BaseException], bool] = is_transient_error,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, repeated after a transient error with exponential backoff and full jitter (so many
    workers throttled together do not retry in step), at most `attempts` times in all. When the last
    attempt fails too, the error is a `StorageError` naming what failed and why."""
    attempt = 1
    while True:
        try:
            return call()
        except Exception as error:
            if not is_transient(error):
                raise
            if attempt >= attempts:
                if isinstance(error, StorageError):  # already explained in one line: keep that line first
                    raise StorageUnavailable(f"{error} (still failing after {attempt} attempts: {what})") from error
                raise StorageUnavailable(f"{what}: still failing after {attempt} attempts: {describe_error(error)}") from error
            delay = random.uniform(0, min(max_seconds, base_seconds * 2 ** (attempt - 1)))
            log.warning("%s: %s (attempt %d of %d), retrying in %.2f s", what, describe_error(error), attempt, attempts, delay)
            sleep(delay)
            attempt += 1


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class Storage(dg.ConfigurableResource, ABC):
    """A bucket or folder holding raw/, flatfiles/, quarantine/, parquet/, catalog/ and dashboards/."""

    retry_attempts: int = Field(default=5, description="Attempts per storage operation when errors are transient.")
    retry_base_seconds: float = Field(default=0.2, description="First backoff delay; it doubles per attempt (with jitter).")

    @property
    @abstractmethod
    def url(self) -> str:
        """The storage URL as a user would write it (a folder or s3://bucket/prefix)."""

    def list(self, prefix: str, start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order; only keys after `start_after` when given.
        Listed whole before the first is returned, so a retry never repeats or skips an object."""
        if prefix:
            check_key(prefix)
        return iter(self._retry(f"list {prefix or '/'}", lambda: self._list(prefix, start_after)))

    def read(self, key: str) -> bytes:
        return self._retry(f"read {check_key(key)}", lambda: self._read(key))

    def exists(self, key: str) -> bool:
        return self._retry(f"check {check_key(key)}", lambda: self._exists(key))

    def delete(self, key: str) -> None:
        self._retry(f"delete {check_key(key)}", lambda: self._delete(key))

    @contextmanager
    def writer(self, key: str) -> Iterator[Path]:
        """A local path to fill; published under `key` in one step when the block exits cleanly. A process
        killed before that leaves only a staged `.tmp-*` file, which is never read as data."""
        handle, staged = tempfile.mkstemp(prefix=STAGED_PREFIX, dir=self._staging_folder(check_key(key)))
        os.close(handle)
        try:
            yield Path(staged)
            self._retry(f"write {key}", lambda: self._publish(Path(staged), key))
        finally:
            Path(staged).unlink(missing_ok=True)

    def write(self, key: str, data: bytes) -> None:
        with self.writer(key) as path:
            path.write_bytes(data)

    def is_transient(self, error: BaseException) -> bool:
        """Which errors are retried; an implementation whose client raises other types can widen it."""
        return is_transient_error(error)

    def remove_abandoned_staging(self, prefix: str) -> int:
        """Delete staged writes under `prefix` left by processes that died before publishing them; returns
        how many. Implementations that stage outside the store (in the local temp folder) have none."""
        return 0

    @abstractmethod
    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the lock `name` against every other process using this storage, for the block.

        It must be released when its holder dies (a killed run may not block the table forever). A local
        folder uses `flock` on a file below the root, which the OS releases with the process. An S3
        implementation needs the same from the bucket: create `<prefix>/.locks/<name>` with a conditional
        PUT (`If-None-Match: *`) holding an owner and a lease expiry, renew the lease while the block runs,
        delete it on exit (`If-Match` its ETag), and take over a lease that has expired with a conditional
        PUT on the expired object's ETag, so two processes can never both believe they hold it. As a
        stalled holder can outlive its lease, it should also publish table files with `If-Match` on the
        ETag it read, so a writer that lost the lock cannot replace a newer file."""

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

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        return retry_transient(
            call, what, attempts=self.retry_attempts, base_seconds=self.retry_base_seconds, is_transient=self.is_transient
        )

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


def check_key(key: str) -> str:
    """Keys are relative and stay below the storage root: no `..` or `.` step, no empty step, no NUL."""
    parts = key.split("/")
    if (not key or key.startswith("/") or "\\" in key or "\0" in key
            or any(part in (".", "..") for part in parts) or "" in parts[:-1]):
        raise StorageError(f"refusing storage key {key!r}: keys are relative and stay inside the storage root")
    return key


class LocalStorage(Storage):
    """A folder on this machine with the bucket's key layout (the default; no cloud account needed).

    Names starting with `.` are the folder's own bookkeeping (staged writes, lock files), never objects."""

    root: str
    lock_timeout_seconds: float = Field(default=3600, description="How long to wait for a lock another process holds.")

    @property
    def url(self) -> str:
        return str(self.root_path)

    @property
    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve()

    def path(self, key: str) -> Path:
        if any(part.startswith(".") for part in check_key(key).split("/")):
            raise StorageError(f"refusing storage key {key!r}: names starting with '.' are reserved for the storage itself")
        return self.root_path / key

    def _list(self, prefix: str, start_after: str) -> list[ObjectInfo]:
        # Walk only the folders the prefix can reach, so listing one hour never scans the whole tree.
        root = self.root_path.as_posix()  # resolved once per listing, not once per key: it costs system calls
        folder, _, _ = prefix.rpartition("/")
        base = f"{root}/{folder}" if folder else root
        keys = sorted(key for key in _object_keys(root, base) if key.startswith(prefix) and key > start_after)
        found = (_info(key, f"{root}/{key}") for key in keys)
        return [info for info in found if info is not None]

    def _read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def _exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def _delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def _staging_folder(self, key: str) -> Path:
        # Beside the target, so publishing is a rename within one file system.
        folder = self.path(key).parent
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _publish(self, staged: Path, key: str) -> None:
        os.replace(staged, self.path(key))

    def remove_abandoned_staging(self, prefix: str) -> int:
        folder, _, _ = prefix.rpartition("/")
        base = self.root_path / folder if folder else self.root_path
        cutoff = time.time() - STAGED_ABANDONED_SECONDS
        removed = 0
        for parent, _, files in os.walk(base):
            for name in files:
                path = Path(parent) / name
                if name.startswith(STAGED_PREFIX) and _modified_before(path, cutoff):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        path = self.root_path / LOCKS_FOLDER / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+") as handle:
            deadline = time.monotonic() + self.lock_timeout_seconds
            while not _try_flock(handle):
                if time.monotonic() > deadline:
                    holder = path.read_text().strip() or "another process"
                    raise StorageError(f"gave up waiting {self.lock_timeout_seconds:g} s for the {name} lock ({path}), "
                                       f"held by {holder}")
                time.sleep(LOCK_POLL_SECONDS)
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}\n")
                handle.flush()
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def local_paths(self, keys: list[str]) -> Iterator[list[str]]:
        yield [self.path(key).as_posix() for key in keys]

    def uri(self, key: str) -> str:
        return self.path(key).as_posix() + ("/" if key.endswith("/") else "")

    def attach(self, connection: Any) -> None:
        return None


def _try_flock(handle) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _object_keys(root: str, base: str) -> Iterator[str]:
    """The keys of the files below `base`, joined from os.walk's folder and file names (no Path per file)."""
    for folder, folders, files in os.walk(base):
        folders[:] = [name for name in folders if not name.startswith(".")]
        relative = os.path.relpath(folder, root)
        start = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        for name in files:
            if not name.startswith("."):
                yield start + name


def _info(key: str, path: str) -> ObjectInfo | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:  # deleted by another process since the folder was walked
        return None
    return ObjectInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, timezone.utc))


def _modified_before(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:  # published or removed by its writer meanwhile
        return False
