"""Quarantine you can act on: list by reason, replay after a fix, idempotently, without touching files."""

import dagster as dg
import pytest

from ctr_assets.api import replay_quarantine, run_pipeline
from ctr_assets.defs.dashboards import DASHBOARD_FILE
from ctr_assets.lake.iceberg import load_table
from ctr_assets.lake.layout import QUARANTINE, flat_key, quarantine_key
from ctr_assets.lake.pipeline import pending_raw_keys
from ctr_assets.lake.quarantine import quarantined_items
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.records import fields
from ctr_assets.records.flatten import quarantine_entry
from ctr_assets_tests.drivers import run_all_pending, settings_of, table_contents
from ctr_assets_tests.helpers import (
    SAMPLE_START,
    ctr_record,
    firehose_object,
    local_table,
    raw_key,
)
from ctr_assets_tests.test_cli import ctr_assets

FIRST, SECOND = raw_key(SAMPLE_START, 10, "first"), raw_key(SAMPLE_START, 20, "second")


def write_raw(storage) -> None:
    storage.write(FIRST, firehose_object(ctr_record("a", SAMPLE_START), ctr_record("b", SAMPLE_START, Channel="CHAT")))
    storage.write(SECOND, firehose_object(ctr_record("c", SAMPLE_START)) + b"junk" + firehose_object(
        ctr_record("d", SAMPLE_START)) + b'{"ContactId":"cut')


@pytest.fixture
def quarantined(storage, monkeypatch):
    """A run under a field spec that was wrong (`Channel` declared a number), then fixed."""
    write_raw(storage)
    with monkeypatch.context() as wrong:
        wrong.setitem(fields.KNOWN_FIELDS, "channel", fields.INTEGER)
        run_all_pending(str(storage.root_path), storage)
    return storage


def reasons(storage) -> list[str]:
    return sorted(item.reason for item in quarantined_items(storage))


def replay_now(storage, reason=None):
    """`ctr-assets quarantine replay`: an ETL run over the hours holding quarantined items, through Dagster."""
    return replay_quarantine(reason=reason, settings=settings_of(storage.root), instance=dg.DagsterInstance.ephemeral())


def table_rows(storage) -> list[tuple]:
    return table_contents(storage, local_table(storage))


def snapshot(storage) -> int | None:
    current = load_table(local_table(storage))
    return current.current_snapshot().snapshot_id if current is not None else None


def test_items_are_listed_with_their_source_offset_and_reason(quarantined):
    items = quarantined_items(quarantined)
    assert reasons(quarantined) == ["invalid_json", "truncated"] + ["type_conflict"] * 4
    assert {item.source_key for item in items} == {FIRST, SECOND}
    assert [item.entry["detail"].split(":")[0] for item in quarantined_items(quarantined, "type_conflict")] == ["channel"] * 4
    junk = quarantined_items(quarantined, "invalid_json")[0]
    assert junk.content == b"junk" and quarantined.read(SECOND)[junk.entry["offset"]:].startswith(b"junk")


def test_a_replay_after_the_fix_moves_what_now_passes_into_the_table_and_keeps_the_rest(quarantined, tmp_path):
    report = replay_now(quarantined, "type_conflict")

    assert report.ok and report.replayed == {"examined": 4, "replayed": 4, "records_written": 4}
    assert report.merged["rows_inserted"] == 4
    assert reasons(quarantined) == ["invalid_json", "truncated"]
    assert pending_raw_keys(quarantined, local_table(quarantined)) == {}
    # The same table as a run that never had the wrong spec.
    clean = LocalStorage(root=str(tmp_path / "clean"))
    write_raw(clean)
    run_all_pending(str(clean.root_path), clean)
    assert table_rows(quarantined) == table_rows(clean)
    assert quarantined.read(flat_key(SECOND)) == clean.read(flat_key(SECOND))
    assert quarantined.read(quarantine_key(SECOND)) == clean.read(quarantine_key(SECOND))


def test_replaying_again_or_after_an_interruption_changes_nothing(quarantined, monkeypatch):
    with monkeypatch.context() as interrupted:  # the records are in their flatfiles; their items not yet removed
        interrupted.setattr("ctr_assets.lake.quarantine._remove_entries",
                            lambda *_: (_ for _ in ()).throw(OSError("interrupted")))
        assert not replay_now(quarantined).ok
    assert table_rows(quarantined) == [] and reasons(quarantined) == ["invalid_json", "truncated"] + ["type_conflict"] * 4

    finished = replay_now(quarantined)
    rows, committed = table_rows(quarantined), snapshot(quarantined)
    again = replay_now(quarantined)

    assert finished.replayed == {"examined": 6, "replayed": 4, "records_written": 4}
    assert finished.quarantined_by_reason == {"invalid_json": 1, "truncated": 1}
    assert len(rows) == 4 and finished.merged["rows_inserted"] == 4
    assert again.replayed == {"examined": 2, "replayed": 0, "records_written": 0} and again.merged == {}
    assert table_rows(quarantined) == rows and snapshot(quarantined) == committed
    assert reasons(quarantined) == ["invalid_json", "truncated"]


def test_an_item_that_still_fails_stays_exactly_as_it_was(quarantined):
    before = {item.key: quarantined.read(item.key) for item in quarantined.list(QUARANTINE)}
    with pytest.MonkeyPatch.context() as still_wrong:
        still_wrong.setitem(fields.KNOWN_FIELDS, "channel", fields.INTEGER)
        report = replay_now(quarantined)
    assert (report.replayed["examined"], report.replayed["replayed"]) == (6, 0)
    assert report.quarantined_by_reason == {"type_conflict": 4, "invalid_json": 1, "truncated": 1}
    assert {item.key: quarantined.read(item.key) for item in quarantined.list(QUARANTINE)} == before


def test_the_commands_list_by_reason_and_replay(tmp_path, monkeypatch):
    """Entries an earlier version set aside, recovered with one command and no file edited by hand."""
    storage = LocalStorage(root=str(tmp_path / "ctr_data"))
    monkeypatch.setenv("CTR_FIRST_HOUR", "2026-01-01-00:00")
    storage.write(FIRST, firehose_object(ctr_record("a", SAMPLE_START), ctr_record("b", SAMPLE_START)))
    assert run_pipeline(storage.url, instance=dg.DagsterInstance.ephemeral()).ok
    good = firehose_object(ctr_record("older", SAMPLE_START, Agent={  # olga was connected to it: it is hers
        "Username": "olga", "ConnectedToAgentTimestamp": SAMPLE_START.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    storage.write(SECOND, good + b"\x00\xff!")
    storage.write(quarantine_key(SECOND), quarantine_entry(SECOND, 0, len(good), "type_conflict", "channel: …", good, False)
                  + quarantine_entry(SECOND, len(good), len(good) + 3, "invalid_json", "Expecting value", b"\x00\xff!", False))

    listed = ctr_assets("quarantine", "list", cwd=tmp_path)
    only = ctr_assets("quarantine", "list", "--reason", "invalid_json", cwd=tmp_path)
    replayed = ctr_assets("quarantine", "replay", "--reason", "type_conflict", cwd=tmp_path)

    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[:6] == [
        "2 quarantined items from 1 raw objects", "by reason:", "        1  type_conflict", "        1  invalid_json",
        "by raw object:", f"        2  {SECOND}"]
    assert f"{SECOND} @0 +{len(good)}: type_conflict: channel: …" in listed.stdout
    assert only.stdout.startswith("1 quarantined items from 1 raw objects (reason invalid_json)")
    assert replayed.returncode == 0, replayed.stderr
    assert "replayed:  1 of 1 quarantined items, 1 records; still quarantined: none" in replayed.stdout
    assert reasons(storage) == ["invalid_json"]
    assert sorted(dict(row)["contactid"] for row in table_rows(storage)) == ["a", "b", "older"]
    assert b"olga" in storage.read(DASHBOARD_FILE)  # the replay refreshed the dashboards
