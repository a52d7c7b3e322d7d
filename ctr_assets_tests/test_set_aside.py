"""Raw objects the storage refuses to read (a bucket key with a `..`, `.` or empty step or a backslash, a link
leading out of a folder, a FIFO) are set aside with their reason, and every other object flows: one such
object never stops a run, and it is not pending forever."""

import os
import uuid
from contextlib import closing

import dagster as dg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctr_assets.api import run_pipeline
from ctr_assets.cli import main
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.layout import flat_key, raw_prefix
from ctr_assets.lake.pipeline import flatten_hours, pending_raw_keys, set_aside_objects
from ctr_assets.metrics.warehouse import scratch_connection
from ctr_assets_tests.helpers import SAMPLE_START, ctr_record, firehose_object, raw_key, settings_for, table_rows

HOUR = raw_prefix(SAMPLE_START)  # raw/2026/03/02/08/
REFUSED = [f"{HOUR}../sneaky", f"{HOUR}./dot", f"{HOUR}/double", f"{HOUR}back\\slash", f"{HOUR}x/../../y"]


def contact_ids(settings) -> list[str]:
    storage = storage_for(settings)
    with closing(scratch_connection()) as connection:
        return [row["contactid"] for row in table_rows(connection, storage, table_for(settings, storage), "contactid")]


def put_raw(moto, storage, key: str, contact_id: str) -> None:
    """Straight into the bucket, as Firehose or another tool could: the storage itself refuses such keys."""
    body = firehose_object(ctr_record(contact_id, SAMPLE_START))
    moto.client("s3").put_object(Bucket=storage.bucket, Key=storage.full_key(key), Body=body)


def test_keys_a_bucket_allows_but_the_storage_refuses_are_set_aside_and_the_others_flow(s3_settings, moto, capsys):
    settings = s3_settings
    storage, instance = storage_for(settings), dg.DagsterInstance.ephemeral()
    for number in range(3):
        storage.write(raw_key(SAMPLE_START, second=number), firehose_object(ctr_record(f"good-{number}", SAMPLE_START)))
    for number, key in enumerate(REFUSED):
        put_raw(moto, storage, key, f"refused-{number}")

    summary = run_pipeline(settings=settings, instance=instance)

    assert summary.ok, summary.failed_runs
    assert contact_ids(settings) == ["good-0", "good-1", "good-2"]
    aside = set_aside_objects(storage)
    assert sorted(aside) == sorted(REFUSED)
    assert all(reason.startswith(f"refusing storage key {key!r}") for key, reason in aside.items())
    assert pending_raw_keys(storage, table_for(settings, storage)) == {}
    assert run_pipeline(settings=settings, instance=instance).runs == []  # nothing left over to retry

    assert main(["status"]) == 0
    status = capsys.readouterr().out
    assert "set aside:    5 raw objects the storage refuses to read" in status
    assert f"  {HOUR}../sneaky: refusing storage key" in status


keys = st.lists(st.text(alphabet="ab./\\", min_size=1, max_size=8), min_size=1, max_size=4, unique=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=keys)
def test_any_raw_key_is_flattened_or_set_aside_and_nothing_stays_pending(moto, tmp_path, names):
    settings = settings_for(tmp_path, storage_url=f"s3://{moto.new_bucket()}/{uuid.uuid4().hex[:6]}",
                            s3_endpoint_url=moto.url)
    storage = storage_for(settings)
    for number, name in enumerate(names):
        put_raw(moto, storage, HOUR + name, f"c{number}")

    report = flatten_hours(storage, [SAMPLE_START], workers=1)

    flattened = {stats.source_key for stats in report.objects}
    listed = [item.key for item in storage.list(HOUR)]
    assert set(listed) == flattened | set(report.set_aside) and not flattened & set(report.set_aside)
    assert all(storage.exists(flat_key(key)) for key in flattened)
    assert set(report.set_aside) == {key for key in listed if storage.unreadable(key)}
    assert set(pending_raw_keys(storage, table_for(settings, storage)).get(SAMPLE_START, ())) == flattened


def test_links_leading_out_and_fifos_in_a_folder_are_set_aside_until_they_become_readable(tmp_path):
    settings = settings_for(tmp_path)
    storage, instance = storage_for(settings), dg.DagsterInstance.ephemeral()
    outside = tmp_path / "outside.json"
    outside.write_bytes(firehose_object(ctr_record("outside-secret", SAMPLE_START)))
    storage.write(raw_key(SAMPLE_START, second=1), firehose_object(ctr_record("good", SAMPLE_START)))
    linked, fifo = storage.root_path / raw_key(SAMPLE_START, second=2), storage.root_path / raw_key(SAMPLE_START, second=3)
    linked.symlink_to(outside)
    os.mkfifo(fifo)

    summary = run_pipeline(settings=settings, instance=instance)

    assert summary.ok, summary.failed_runs
    assert contact_ids(settings) == ["good"]
    aside = set_aside_objects(storage)
    assert sorted(aside) == [raw_key(SAMPLE_START, second=2), raw_key(SAMPLE_START, second=3)]
    assert "leads outside it" in aside[raw_key(SAMPLE_START, second=2)]
    assert "is not a regular file" in aside[raw_key(SAMPLE_START, second=3)]
    assert not any(b"outside-secret" in path.read_bytes() for path in storage.root_path.rglob("*")
                   if path.is_file() and not path.is_symlink())

    linked.unlink()  # replaced by the object itself: no longer set aside, processed like any late object
    linked.write_bytes(outside.read_bytes())
    assert pending_raw_keys(storage, table_for(settings, storage)) == {SAMPLE_START: [raw_key(SAMPLE_START, second=2)]}
    assert run_pipeline(settings=settings, instance=instance).ok
    assert contact_ids(settings) == ["good", "outside-secret"]
