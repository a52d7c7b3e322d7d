"""The storage boundary: transient errors retried with backoff, persistent ones failing clearly with nothing
half written, keys that cannot leave the root, and the lock every process shares."""

import os
import signal
import time
from pathlib import Path

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import PrivateAttr

from ctr_assets.lake.layout import flat_key, quarantine_key
from ctr_assets.lake.pipeline import ObjectFailed, flatten_hours, pending_raw_keys
from ctr_assets.lake.storage import (
    LocalStorage,
    StorageError,
    is_transient_error,
    retry_transient,
)
from ctr_assets.records.flatten import flatten_object
from ctr_assets_tests.drivers import (
    PROCESSES,
    copy_raw,
    derived_state,
    run_all_pending,
    write_crash_sample,
)
from ctr_assets_tests.helpers import SAMPLE_START

ENDPOINT = "https://ctr-bucket.s3.us-east-1.amazonaws.com"


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "try again"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "GetObject")


# What botocore raises when S3 throttles, fails on its side, or the connection drops.
TRANSIENT_FAULTS = [
    lambda: client_error("SlowDown", 503),
    lambda: client_error("Throttling", 400),
    lambda: client_error("InternalError", 500),
    lambda: client_error("503", 503),
    lambda: ConnectionClosedError(endpoint_url=ENDPOINT),
    lambda: EndpointConnectionError(endpoint_url=ENDPOINT),
    lambda: ReadTimeoutError(endpoint_url=ENDPOINT),
    lambda: ResponseStreamingError(error="Connection reset by peer"),
]


class FlakyStorage(LocalStorage):
    """A folder that fails each operation `failures` times in a row with the transient errors botocore
    raises (taking turns), then lets it through; keys containing `broken` never get through."""

    failures: int = 2
    broken: str = ""
    _streaks: dict = PrivateAttr(default_factory=dict)
    _injected: int = PrivateAttr(default=0)

    def _fault(self, operation: str, key: str) -> None:
        streak = self._streaks.get((operation, key), 0)
        if streak < self.failures or (self.broken and self.broken in key):
            self._streaks[(operation, key)] = streak + 1
            self._injected += 1
            raise TRANSIENT_FAULTS[self._injected % len(TRANSIENT_FAULTS)]()
        self._streaks.pop((operation, key), None)

    def _list(self, prefix, start_after):
        self._fault("list", prefix)
        return super()._list(prefix, start_after)

    def _read(self, key):
        self._fault("read", key)
        return super()._read(key)

    def _exists(self, key):
        self._fault("exists", key)
        return super()._exists(key)

    def _delete(self, key):
        self._fault("delete", key)
        super()._delete(key)

    def _publish(self, staged, key):
        self._fault("publish", key)
        super()._publish(staged, key)


@pytest.mark.parametrize("make_error", TRANSIENT_FAULTS)
def test_throttling_server_errors_and_dropped_connections_are_transient(make_error):
    assert is_transient_error(make_error())


@pytest.mark.parametrize("error", [
    client_error("AccessDenied", 403), client_error("NoSuchKey", 404), client_error("NoSuchBucket", 404),
    NoCredentialsError(), FileNotFoundError("gone"), PermissionError("denied"), ValueError("bug"),
])
def test_errors_a_retry_cannot_fix_are_not_transient(error):
    assert not is_transient_error(error)


def test_backoff_doubles_with_full_jitter_and_is_bounded():
    delays = []
    with pytest.raises(StorageError, match=r"read raw/x: still failing after 6 attempts: ClientError: .*SlowDown"):
        retry_transient(lambda: (_ for _ in ()).throw(client_error("SlowDown", 503)), "read raw/x",
                        attempts=6, base_seconds=1.0, max_seconds=8.0, sleep=delays.append)
    assert len(delays) == 5
    assert all(0 <= delay <= bound for delay, bound in zip(delays, [1, 2, 4, 8, 8]))


def test_a_transient_error_is_retried_until_it_passes_and_others_are_not_retried():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionClosedError(endpoint_url=ENDPOINT)
        return "ok"

    assert retry_transient(flaky, "read k", attempts=5, base_seconds=0, sleep=lambda _: None) == "ok"
    assert len(calls) == 3
    denied = []
    with pytest.raises(ClientError):
        retry_transient(lambda: denied.append(1) or (_ for _ in ()).throw(client_error("AccessDenied", 403)),
                        "read k", attempts=5, base_seconds=0)
    assert denied == [1]


def test_the_pipeline_on_a_flaky_store_ends_like_on_a_healthy_one(tmp_path, monkeypatch):
    # One process, so every injected fault is counted here (worker processes would keep their own counts).
    monkeypatch.setattr("ctr_assets.lake.pipeline.available_cores", lambda: 1)
    write_crash_sample(LocalStorage(root=str(tmp_path / "sample")))
    for name in ("healthy", "flaky"):
        copy_raw(tmp_path / "sample", tmp_path / name)
    run_all_pending(str(tmp_path / "healthy"))
    flaky = FlakyStorage(root=str(tmp_path / "flaky"), failures=2, retry_base_seconds=0)

    run_all_pending(str(tmp_path / "flaky"), flaky)

    assert derived_state(flaky) == derived_state(LocalStorage(root=str(tmp_path / "healthy")))
    assert flaky._injected > 100
    print(f"\nretries exercised on a flaky store: {flaky._injected}")


def test_a_persistent_error_fails_naming_the_object_leaves_nothing_half_written_and_a_rerun_completes(tmp_path):
    write_crash_sample(LocalStorage(root=str(tmp_path / "healthy")))
    copy_raw(tmp_path / "healthy", tmp_path / "flaky")
    run_all_pending(str(tmp_path / "healthy"))
    broken = "extras-first"
    flaky = FlakyStorage(root=str(tmp_path / "flaky"), failures=1, broken=broken, retry_base_seconds=0)
    (hour, keys), *_ = pending_raw_keys(flaky).items()
    (key,) = [key for key in keys if broken in key]

    with pytest.raises(ObjectFailed) as failure:
        flatten_hours(flaky, [hour])

    assert failure.value.key == key
    assert str(failure.value).startswith(f"{key}: StorageUnavailable: read {key}: still failing after 5 attempts: ")
    healed = LocalStorage(root=str(tmp_path / "flaky"))
    assert not healed.exists(flat_key(key)) and not healed.exists(quarantine_key(key))
    assert list((tmp_path / "flaky").rglob(".tmp-*")) == []
    run_all_pending(str(tmp_path / "flaky"))
    assert derived_state(healed) == derived_state(LocalStorage(root=str(tmp_path / "healthy")))


def test_a_failure_stops_the_objects_in_flight_without_leaving_their_staged_files(tmp_path, monkeypatch):
    # The first object cannot be read; the second is still being written when that failure stops the
    # workers (forked after the patch below, so they sleep in it too).
    storage = LocalStorage(root=str(tmp_path))
    write_crash_sample(storage)
    (hour, keys), *_ = pending_raw_keys(storage).items()
    first, second = keys[:2]
    flaky = FlakyStorage(root=str(tmp_path), failures=0, broken=first.rsplit("/", 1)[-1], retry_base_seconds=0)

    def slow_for_the_second(data, key, *rest):
        if key == second:
            time.sleep(3)
        return flatten_object(data, key, *rest)

    monkeypatch.setattr("ctr_assets.lake.pipeline.flatten_object", slow_for_the_second)
    with pytest.raises(ObjectFailed) as failure:
        flatten_hours(flaky, [hour], workers=2)

    assert failure.value.key == first
    assert list(tmp_path.rglob(".tmp-*")) == []


@pytest.mark.parametrize("key", [
    "../outside", "raw/../../outside", "/etc/passwd", "raw//x", "raw/./x", ".", "..", "", "raw\\..\\x",
    "raw/x\0", ".locks/ctr_table.lock", "flatfiles/.tmp-abc",
])
def test_keys_cannot_escape_the_root_or_reach_its_bookkeeping(storage, key):
    for operation in (storage.read, storage.exists, storage.delete, lambda k: storage.write(k, b"x")):
        with pytest.raises(StorageError, match="refusing storage key"):
            operation(key)
    assert not (Path(storage.root).parent / "outside").exists()


@pytest.mark.parametrize("prefix", ["../", "../../etc/", "/etc/", "raw/../../"])
def test_listing_cannot_escape_the_root(storage, prefix):
    with pytest.raises(StorageError, match="refusing storage key"):
        list(storage.list(prefix))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab./\\\0~-", max_size=12))
def test_any_key_accepted_stays_inside_the_root(tmp_path_factory, key):
    storage = LocalStorage(root=str(tmp_path_factory.getbasetemp() / "keys" / "root"))
    try:
        path = storage.path(key)
    except StorageError:
        return
    assert path.resolve().is_relative_to(storage.root_path) and path != storage.root_path


def test_staged_files_are_never_listed_or_read_and_old_ones_are_removed(storage):
    storage.write("flatfiles/a", b"x")
    folder = storage.root_path / "flatfiles"
    fresh, old = folder / ".tmp-fresh", folder / ".tmp-old"
    for path in (fresh, old):
        path.write_bytes(b"half a record")
    os.utime(old, (time.time() - 7200, time.time() - 7200))

    assert [item.key for item in storage.list("flatfiles/")] == ["flatfiles/a"]
    assert storage.remove_abandoned_staging("flatfiles/") == 1
    assert fresh.exists() and not old.exists()  # a staged file this young may belong to a live writer


def _hold_lock(root: str, ready: str) -> None:
    with LocalStorage(root=root).lock("ctr_table"):
        Path(ready).touch()
        time.sleep(60)


def test_the_lock_excludes_other_processes_names_its_holder_and_dies_with_it(tmp_path):
    ready = tmp_path / "ready"
    holder = PROCESSES.Process(target=_hold_lock, args=(str(tmp_path / "data"), str(ready)))
    holder.start()
    while not ready.exists():
        time.sleep(0.01)
    waiting = LocalStorage(root=str(tmp_path / "data"), lock_timeout_seconds=0.3)
    with pytest.raises(StorageError, match=rf"ctr_table lock .* held by pid {holder.pid} on "):
        with waiting.lock("ctr_table"):
            pass

    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    began = time.monotonic()
    with waiting.lock("ctr_table"):
        assert time.monotonic() - began < 0.3
