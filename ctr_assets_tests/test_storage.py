"""The storage boundary: transient S3 errors retried by botocore's own retry mode, persistent ones failing
clearly with nothing half written, and keys that cannot leave the root."""

import os
import signal
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.layout import flat_key, quarantine_key
from ctr_assets.lake.pipeline import ObjectFailed, flatten_hours, pending_raw_keys
from ctr_assets.lake.storage import LocalStorage, StorageError
from ctr_assets_tests.drivers import copy_raw, derived_state, run_all_pending, write_crash_sample
from ctr_assets_tests.helpers import local_table, settings_for


class BrokenStorage(LocalStorage):
    """A folder on which reading keys that contain `broken` fails (an error no retry can mend), reading
    keys that contain `killed` kills the process reading them, and publishing keys that contain `slow`
    takes three seconds (a write in flight)."""

    broken: str = ""
    slow: str = ""
    killed: str = ""

    def _read(self, key):
        if self.broken and self.broken in key:
            raise PermissionError(f"{key}: no access")
        if self.killed and self.killed in key:
            os.kill(os.getpid(), signal.SIGKILL)  # the OOM killer's way: no exception, no cleanup
        return super()._read(key)

    def _publish(self, staged, key):
        if self.slow and self.slow in key:
            time.sleep(3)
        super()._publish(staged, key)


def test_a_flaky_bucket_ends_like_a_healthy_one_through_botocores_retries(moto, flaky_endpoint, tmp_path):
    """One request in four answered 503 SlowDown or dropped on the floor by a real HTTP proxy in front of
    the S3 API: the clients retry (botocore's standard mode, pyarrow's for the table's files) and the run
    ends as on a healthy bucket."""
    bucket = moto.new_bucket()
    healthy = settings_for(tmp_path / "healthy", storage_url=f"s3://{bucket}/healthy", s3_endpoint_url=moto.url,
                           glue_database="flaky_healthy", duckdb_path=str(tmp_path / "healthy.duckdb"))
    flaky = settings_for(tmp_path / "flaky", storage_url=f"s3://{bucket}/flaky", s3_endpoint_url=flaky_endpoint.url,
                         glue_database="flaky_flaky", duckdb_path=str(tmp_path / "flaky.duckdb"))
    for either in (healthy, flaky):
        write_crash_sample(storage_for(either))
    run_all_pending(healthy)
    flaky_endpoint.fail_every = 4

    run_all_pending(flaky)

    assert flaky_endpoint.injected > 20
    print(f"\nfaults injected on the way to the bucket: {flaky_endpoint.injected}")
    assert derived_state(storage_for(flaky), table_for(flaky, storage_for(flaky))) == derived_state(
        storage_for(healthy), table_for(healthy, storage_for(healthy)))


def test_a_persistent_error_fails_naming_the_object_leaves_nothing_half_written_and_a_rerun_completes(tmp_path):
    write_crash_sample(LocalStorage(root=str(tmp_path / "healthy")))
    write_crash_sample(LocalStorage(root=str(tmp_path / "broken")))
    run_all_pending(str(tmp_path / "healthy"))
    broken = BrokenStorage(root=str(tmp_path / "broken"), broken="extras-first")
    (hour, keys), *_ = pending_raw_keys(broken, local_table(broken)).items()
    (key,) = [key for key in keys if "extras-first" in key]

    with pytest.raises(ObjectFailed) as failure:
        flatten_hours(broken, [hour])

    assert failure.value.key == key
    assert str(failure.value) == f"{key}: PermissionError: {key}: no access"
    healed = LocalStorage(root=str(tmp_path / "broken"))
    assert not healed.exists(flat_key(key)) and not healed.exists(quarantine_key(key))
    assert list((tmp_path / "broken").rglob(".tmp-*")) == []
    run_all_pending(str(tmp_path / "broken"))
    assert derived_state(healed, local_table(healed)) == derived_state(
        LocalStorage(root=str(tmp_path / "healthy")), local_table(LocalStorage(root=str(tmp_path / "healthy"))))


def test_a_failure_lets_the_objects_in_flight_finish_and_starts_no_more(crash_sample, tmp_path):
    # The first object cannot be read; the second is still being written when the first one fails.
    copy_raw(crash_sample, tmp_path / "data")
    copy_raw(crash_sample, tmp_path / "healthy")
    storage = LocalStorage(root=str(tmp_path / "data"))
    hours = pending_raw_keys(storage, local_table(storage))
    keys = [key for hour_keys in hours.values() for key in hour_keys]
    first, second = keys[:2]
    broken = BrokenStorage(root=storage.root, broken=first.rsplit("/", 1)[-1], slow=second.rsplit("/", 1)[-1])
    with pytest.raises(ObjectFailed) as failure:
        flatten_hours(broken, list(hours), workers=2)

    assert failure.value.key == first
    assert list(tmp_path.rglob(".tmp-*")) == []
    assert storage.exists(flat_key(second)), "the object in flight was cut off instead of finished"
    assert len(keys) > 5 and not storage.exists(flat_key(keys[-1])), "objects kept starting after the failure"
    healthy = LocalStorage(root=str(tmp_path / "healthy"))
    flatten_hours(healthy, list(hours), workers=1)
    for key in keys[1:]:
        if storage.exists(flat_key(key)):
            assert storage.read(flat_key(key)) == healthy.read(flat_key(key))


def test_a_worker_killed_mid_object_fails_the_flatten_naming_the_object_instead_of_hanging(crash_sample, tmp_path):
    # The first object's result is the first one due, so it is the one named. (A broken pool also stops
    # the other worker, which may leave a staged file: never read, and removed once abandoned.)
    copy_raw(crash_sample, tmp_path)
    storage = LocalStorage(root=str(tmp_path))
    hours = pending_raw_keys(storage, local_table(storage))
    keys = [key for hour_keys in hours.values() for key in hour_keys]
    killer = BrokenStorage(root=storage.root, killed=keys[0].rsplit("/", 1)[-1])
    with pytest.raises(ObjectFailed) as failure:
        flatten_hours(killer, list(hours), workers=2)

    assert failure.value.key == keys[0] and "BrokenProcessPool" in str(failure.value)
    flatten_hours(storage, list(hours), workers=2)  # the next run flattens every object
    assert all(storage.exists(flat_key(key)) for key in keys)


@pytest.mark.parametrize("key", [
    "../outside", "raw/../../outside", "/etc/passwd", "raw//x", "raw/./x", ".", "..", "", "raw\\..\\x",
    "raw/x\0", ".hidden/file", "flatfiles/.tmp-abc",
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
    assert storage.remove_abandoned_staging() == 1
    assert fresh.exists() and not old.exists()  # a staged file this young may belong to a live writer
