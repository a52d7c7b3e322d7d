"""Merging flatfiles into the Parquet CTR table: dedup, idempotence, schema evolution (design rules 3-5, 7)."""

import io
import json
import os
import time
from datetime import datetime

import pytest

from ctr_assets.lake.storage import LocalStorage
from ctr_assets.lake.table import (
    BATCH_FOLDER_PREFIX,
    merge_flatfiles,
    partition_file,
    remove_abandoned_batch_folders,
    sql_text,
    table_files,
    table_schema,
)
from ctr_assets.records.flatten import flatten_object
from ctr_assets.records.schema import column_paths

DAY1, DAY2 = "2026-11-27", "2026-11-28"


def ctr(contact_id: str, initiated: str = f"{DAY1}T10:00:00Z", updated: str = f"{DAY1}T10:06:00Z", **fields) -> dict:
    """A Connect-shaped CTR."""
    return {"ContactId": contact_id, "InitiationTimestamp": initiated, "LastUpdateTimestamp": updated, **fields}


def put_flatfile(storage, arrival: str, *records: dict, suffix: str = "0000") -> str:
    """Flatten `records` as one raw object that arrived at `arrival` and store its flatfile."""
    moment = datetime.fromisoformat(arrival)
    raw_name = f"ctr-stream-1-{moment:%Y-%m-%d-%H-%M-%S}-{suffix}"
    raw = b"".join(json.dumps(record, separators=(",", ":")).encode() for record in records)
    flat, quarantine = io.BytesIO(), io.BytesIO()
    stats = flatten_object(raw, f"raw/{moment:%Y/%m/%d/%H}/{raw_name}", flat, quarantine)
    assert stats.records_written == len(records), quarantine.getvalue()
    key = f"flatfiles/{moment:%Y%m%d%H}{raw_name}"
    storage.write(key, flat.getvalue())
    return key


def table(connection, storage, columns: str = "*") -> list[dict]:
    """Every row of the table across partitions, by contactid."""
    relation = connection.sql(
        f"SELECT {columns} FROM read_parquet({sql_text(storage.uri('parquet/ctr/') + '*/*.parquet')}, "
        "union_by_name=true, hive_partitioning=true) ORDER BY contactid"
    )
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def column(connection, storage, expression: str) -> dict:
    return {row["contactid"]: row["value"] for row in table(connection, storage, f"contactid, {expression} AS value")}


def file_types(connection, storage, key: str) -> dict[str, str]:
    relation = connection.sql(f"SELECT * FROM read_parquet({sql_text(storage.uri(key))}) LIMIT 0")
    return {name: str(kind) for name, kind in zip(relation.columns, relation.types)}


def test_records_become_one_row_each_partitioned_by_utc_initiation_date(connection, storage):
    key = put_flatfile(
        storage,
        f"{DAY2}T02:05:00",
        ctr("a", Agent={"Username": "ann"}, Queue={"ARN": "arn:q1", "Duration": 30}),
        ctr("b", initiated=f"{DAY1}T23:30:00-02:00"),  # 01:30 UTC on DAY2
        ctr("c", initiated=f"{DAY2}T00:10:00Z"),
    )
    result = merge_flatfiles(connection, storage, [key])
    assert (result.records_read, result.rows_inserted, result.rows_updated) == (3, 3, 0)
    assert result.partitions_written == [partition_file(DAY1), partition_file(DAY2)]
    assert sorted(table_files(storage)) == [partition_file(DAY1), partition_file(DAY2)]
    columns = "contactid, CAST(dt AS VARCHAR), initiationtimestamp, agent.username, queue.arn, queue.duration"
    rows = [tuple(row.values()) for row in table(connection, storage, columns)]
    assert rows == [
        ("a", DAY1, datetime(2026, 11, 27, 10), "ann", "arn:q1", 30),
        ("b", DAY2, datetime(2026, 11, 28, 1, 30), None, None, None),
        ("c", DAY2, datetime(2026, 11, 28, 0, 10), None, None, None),
    ]


def test_each_row_records_which_raw_object_it_came_from_and_when_that_arrived(connection, storage):
    key = put_flatfile(storage, f"{DAY1}T10:05:07", ctr("a"), suffix="abcd-ef")
    merge_flatfiles(connection, storage, [key])
    (row,) = table(connection, storage, "_source_key, _arrived_at")
    assert row == {
        "_source_key": "raw/2026/11/27/10/ctr-stream-1-2026-11-27-10-05-07-abcd-ef",
        "_arrived_at": datetime(2026, 11, 27, 10, 5, 7),
    }


def test_each_row_of_a_batch_of_many_flatfiles_keeps_its_own_source(connection, storage):
    keys = [
        put_flatfile(storage, f"{DAY1}T{hour:02d}:05:00", *(ctr(f"{hour}-{n}") for n in range(3)), suffix=f"{hour:04d}")
        for hour in range(10, 15)
    ]
    # A flatfile whose last line has no newline must not run into the next one's first record.
    storage.write(keys[0], storage.read(keys[0]).rstrip(b"\n"))
    result = merge_flatfiles(connection, storage, keys)
    assert (result.records_read, result.rows_inserted) == (15, 15)
    assert column(connection, storage, "_source_key") == {
        f"{hour}-{n}": f"raw/2026/11/27/{hour}/ctr-stream-1-2026-11-27-{hour}-05-00-{hour:04d}"
        for hour in range(10, 15) for n in range(3)
    }


def test_empty_objects_reach_parquet(connection, storage):
    key = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a", ContactDetails={}, Extra={}, Attributes={}))
    merge_flatfiles(connection, storage, [key])
    (row,) = table(connection, storage)
    assert row["contactdetails"] == {"name": None, "description": None}
    assert row["extra"] == "{}"


def test_an_updated_copy_in_a_later_hour_wins(connection, storage):
    first = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a", Agent={"Username": "ann"}))
    later = put_flatfile(storage, f"{DAY1}T13:01:00", ctr("a", updated=f"{DAY1}T12:59:00Z", Agent={"Username": "bob"}))
    merge_flatfiles(connection, storage, [first])
    result = merge_flatfiles(connection, storage, [later])
    assert (result.rows_inserted, result.rows_updated) == (0, 1)
    assert column(connection, storage, "agent.username") == {"a": "bob"}


def test_a_stale_copy_arriving_later_does_not_win(connection, storage):
    fresh = put_flatfile(storage, f"{DAY1}T11:05:00", ctr("a", updated=f"{DAY1}T11:00:00Z", Agent={"Username": "new"}))
    stale = put_flatfile(storage, f"{DAY1}T14:05:00", ctr("a", updated=f"{DAY1}T10:06:00Z", Agent={"Username": "old"}))
    merge_flatfiles(connection, storage, [fresh])
    result = merge_flatfiles(connection, storage, [stale])
    assert (result.rows_inserted, result.rows_updated, result.partitions_written) == (0, 0, [])
    assert column(connection, storage, "agent.username") == {"a": "new"}


def test_exact_duplicates_collapse_within_and_across_flatfiles(connection, storage):
    record = ctr("a", Queue={"Name": "Q"})
    one = put_flatfile(storage, f"{DAY1}T10:05:00", record, record, ctr("b"))
    two = put_flatfile(storage, f"{DAY1}T10:05:00", record, suffix="0001")
    result = merge_flatfiles(connection, storage, [one, two])
    assert (result.records_read, result.duplicates_in_batch, result.rows_inserted) == (4, 2, 2)
    assert [row["contactid"] for row in table(connection, storage)] == ["a", "b"]


@pytest.mark.parametrize("order", ["earlier first", "later first", "one batch"])
def test_a_tie_on_last_update_goes_to_the_later_arrival(connection, storage, order):
    earlier = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a", Agent={"Username": "earlier"}))
    later = put_flatfile(storage, f"{DAY1}T11:05:00", ctr("a", Agent={"Username": "later"}))
    batches = {
        "earlier first": [[earlier], [later]],
        "later first": [[later], [earlier]],
        "one batch": [[later, earlier]],
    }
    for batch in batches[order]:
        merge_flatfiles(connection, storage, batch)
    assert column(connection, storage, "agent.username") == {"a": "later"}


def test_differing_copies_tied_in_one_object_keep_the_same_winner_whatever_their_order(connection, tmp_path):
    copies = [ctr("a", Agent={"Username": name}) for name in ("ann", "bob", "cy")]
    winners = set()
    for number, order in enumerate([copies, copies[::-1], copies[1:] + copies[:1]]):
        storage = LocalStorage(root=str(tmp_path / f"order{number}"))
        merge_flatfiles(connection, storage, [put_flatfile(storage, f"{DAY1}T10:05:00", *order)])
        winners.add(column(connection, storage, "agent.username")["a"])
    assert len(winners) == 1


def test_a_contact_keeps_one_row_when_its_copies_arrive_on_different_days(connection, storage):
    initiated = f"{DAY1}T23:58:00Z"
    first = put_flatfile(storage, f"{DAY1}T23:59:30", ctr("a", initiated=initiated, updated=f"{DAY1}T23:59:00Z"))
    second = put_flatfile(
        storage,
        f"{DAY2}T00:20:00",
        ctr("a", initiated=f"{DAY2}T00:58:00+01:00", updated=f"{DAY2}T00:15:00Z", DisconnectReason="AGENT_DISCONNECT"),
    )
    merge_flatfiles(connection, storage, [first])
    result = merge_flatfiles(connection, storage, [second])
    assert (result.rows_inserted, result.rows_updated) == (0, 1)
    assert table_files(storage) == [partition_file(DAY1)]
    assert table(connection, storage, "contactid, CAST(dt AS VARCHAR) AS dt, disconnectreason") == [
        {"contactid": "a", "dt": DAY1, "disconnectreason": "AGENT_DISCONNECT"}
    ]


def _history(storage) -> list[str]:
    return [
        put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a", Attributes={"Lang": "en"}), ctr("b", Extra=5)),
        put_flatfile(
            storage,
            f"{DAY1}T12:05:00",
            ctr("a", updated=f"{DAY1}T12:00:00Z", Attributes={"Lang": "fr", "Vip": True}),
            ctr("c", initiated=f"{DAY2}T00:30:00Z", updated=f"{DAY2}T00:40:00Z", Extra="five"),
        ),
        put_flatfile(
            storage, f"{DAY1}T13:05:00", ctr("a", updated=f"{DAY1}T11:00:00Z"), ctr("b", Agent={"Username": "tie"})
        ),
        put_flatfile(
            storage, f"{DAY2}T01:05:00", ctr("c", initiated=f"{DAY2}T00:30:00Z", updated=f"{DAY2}T00:40:00Z", Extra=[1])
        ),
    ]


def _content(connection, storage) -> list[dict]:
    return table(connection, storage, "* EXCLUDE (dt)")


def test_remerging_the_same_flatfiles_changes_nothing(connection, storage):
    keys = _history(storage)
    merge_flatfiles(connection, storage, keys)
    before = _content(connection, storage)
    files = {key: storage.read(key) for key in table_files(storage)}
    for batch in (keys, keys[::-1], keys[:1], keys[2:]):
        result = merge_flatfiles(connection, storage, batch)
        changes = (result.rows_inserted, result.rows_updated, result.partitions_written, result.partitions_widened)
        assert changes == (0, 0, [], [])
    assert _content(connection, storage) == before
    assert {key: storage.read(key) for key in table_files(storage)} == files


def test_merging_in_any_order_gives_the_same_table(connection, tmp_path):
    tables = []
    for number, order in enumerate([(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1), (1, 3, 0, 2), None]):
        storage = LocalStorage(root=str(tmp_path / f"order{number}"))
        keys = _history(storage)
        for batch in [keys] if order is None else [[keys[index]] for index in order]:
            merge_flatfiles(connection, storage, batch)
        tables.append(_content(connection, storage))
    assert all(content == tables[0] for content in tables)
    rows = {row["contactid"]: row for row in tables[0]}
    assert rows["a"]["attributes"] == {"lang": "fr", "vip": "true"}
    assert rows["b"]["agent"]["username"] == "tie"
    assert rows["c"]["extra"] == "[1]"


def test_a_new_attribute_becomes_a_struct_field_that_older_rows_read_as_null(connection, storage):
    older = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("old", Attributes={"Lang": "en"}))
    merge_flatfiles(connection, storage, [older])
    newer = put_flatfile(
        storage,
        f"{DAY1}T11:05:00",
        ctr("new", Attributes={"Lang": "fr", "Vip": "yes"}),
        ctr("next-day", initiated=f"{DAY2}T09:00:00Z", Attributes={"Vip": "no"}),
    )
    result = merge_flatfiles(connection, storage, [newer])
    assert result.schema["attributes"] == {"lang": "VARCHAR", "vip": "VARCHAR"}
    assert column(connection, storage, "attributes") == {
        "new": {"lang": "fr", "vip": "yes"},
        "next-day": {"lang": None, "vip": "no"},
        "old": {"lang": "en", "vip": None},
    }


def test_an_unknown_field_whose_type_changes_widens_losslessly_to_text_in_every_partition(connection, storage):
    first = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a", Extra=5, Items=[{"N": 1}], Obj={"A": 1}, Big=7))
    second = put_flatfile(
        storage,
        f"{DAY2}T10:05:00",
        ctr("b", initiated=f"{DAY2}T10:00:00Z", Extra="five", Items=[{"N": "x"}], Obj="text", Big=2**64 - 1),
    )
    merge_flatfiles(connection, storage, [first])
    assert file_types(connection, storage, partition_file(DAY1))["extra"] == "BIGINT"
    result = merge_flatfiles(connection, storage, [second])
    assert result.partitions_widened == [partition_file(DAY1)]
    for key in (partition_file(DAY1), partition_file(DAY2)):
        types = file_types(connection, storage, key)
        assert (types["extra"], types["items"], types["obj"], types["big"]) == (
            "VARCHAR", 'STRUCT(n VARCHAR)[]', "VARCHAR", "VARCHAR"
        ), key
    assert table(connection, storage, "contactid, extra, items, obj, big") == [
        {"contactid": "a", "extra": "5", "items": [{"n": "1"}], "obj": '{"a":1}', "big": "7"},
        {"contactid": "b", "extra": "five", "items": [{"n": "x"}], "obj": "text", "big": "18446744073709551615"},
    ]
    assert merge_flatfiles(connection, storage, [first, second]).partitions_widened == []


def test_partition_files_hold_each_column_once_and_the_schema_reported_is_the_tables(connection, storage):
    results = [merge_flatfiles(connection, storage, [key]) for key in _history(storage)]
    for key in table_files(storage):
        schema = connection.sql(f"SELECT name FROM parquet_schema({sql_text(storage.uri(key))})")
        names = [row[0] for row in schema.fetchall()]
        top_level = set(file_types(connection, storage, key))
        assert "dt" not in names and not any(name.endswith("_1") for name in names), key
        assert {"contactid", "_source_key", "_arrived_at"} <= top_level
    current, _ = table_schema(connection, storage)
    assert "dt" not in current
    assert all(set(result.schema) == set(results[0].schema) | {"extra"} for result in results)
    assert column_paths(results[-1].schema) == column_paths(current)


def test_a_batch_with_no_records_changes_nothing(connection, storage):
    merge_flatfiles(connection, storage, [put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a"))])
    before = _content(connection, storage)
    storage.write("flatfiles/2026112711ctr-stream-1-2026-11-27-11-05-00-0000", b"")
    result = merge_flatfiles(connection, storage, ["flatfiles/2026112711ctr-stream-1-2026-11-27-11-05-00-0000"])
    assert (result.records_read, result.rows_inserted, result.partitions_written) == (0, 0, [])
    assert "json" not in result.schema
    assert _content(connection, storage) == before


def test_no_flatfiles_is_a_no_op(connection, storage):
    result = merge_flatfiles(connection, storage, [])
    assert (result.records_read, result.partitions_written) == (0, [])
    assert table_files(storage) == []


def dates(connection, storage) -> dict[str, str]:
    return {row["contactid"]: row["dt"] for row in table(connection, storage, "contactid, CAST(dt AS VARCHAR) AS dt")}


def test_an_update_whose_initiation_date_changed_moves_the_row_to_its_new_date(connection, storage):
    first = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a", Agent={"Username": "ann"}), ctr("b"))
    moved = put_flatfile(storage, f"{DAY1}T13:05:00",
                         ctr("a", initiated=f"{DAY2}T09:00:00Z", updated=f"{DAY2}T09:10:00Z", Agent={"Username": "bob"}))
    merge_flatfiles(connection, storage, [first])
    result = merge_flatfiles(connection, storage, [moved])
    assert (result.rows_inserted, result.rows_updated, result.rows_moved) == (0, 1, 1)
    assert result.partitions_written == [partition_file(DAY2), partition_file(DAY1)]  # gaining file first
    assert dates(connection, storage) == {"a": DAY2, "b": DAY1}
    assert column(connection, storage, "agent.username") == {"a": "bob", "b": None}


def test_a_partition_left_empty_by_a_move_is_removed(connection, storage):
    first = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a"))
    moved = put_flatfile(storage, f"{DAY1}T13:05:00", ctr("a", initiated=f"{DAY2}T09:00:00Z", updated=f"{DAY2}T09:10:00Z"))
    merge_flatfiles(connection, storage, [first])
    merge_flatfiles(connection, storage, [moved])
    assert table_files(storage) == [partition_file(DAY2)]


def test_a_stale_copy_with_another_date_is_not_added_to_that_date(connection, storage):
    fresh = put_flatfile(storage, f"{DAY1}T13:05:00", ctr("a", updated=f"{DAY1}T12:00:00Z", Agent={"Username": "new"}))
    stale = put_flatfile(storage, f"{DAY1}T14:05:00",
                         ctr("a", initiated=f"{DAY2}T01:00:00Z", updated=f"{DAY1}T11:00:00Z", Agent={"Username": "old"}))
    merge_flatfiles(connection, storage, [fresh])
    result = merge_flatfiles(connection, storage, [stale])
    assert (result.rows_inserted, result.rows_updated, result.rows_moved, result.partitions_written) == (0, 0, 0, [])
    assert table_files(storage) == [partition_file(DAY1)]
    assert column(connection, storage, "agent.username") == {"a": "new"}


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 0, 2), (1, 2, 0), None])
def test_moves_give_the_same_table_in_any_merge_order(connection, tmp_path, order):
    storage = LocalStorage(root=str(tmp_path / "data"))
    keys = [
        put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a"), ctr("b"), ctr("c", initiated=f"{DAY2}T08:00:00Z")),
        put_flatfile(storage, f"{DAY1}T12:05:00", ctr("a", initiated=f"{DAY2}T08:00:00Z", updated=f"{DAY2}T09:00:00Z")),
        put_flatfile(storage, f"{DAY2}T12:05:00", ctr("c", updated=f"{DAY2}T11:00:00Z"),
                     ctr("a", initiated=f"{DAY1}T23:00:00Z", updated=f"{DAY1}T23:30:00Z")),
    ]
    for batch in [keys] if order is None else [[keys[index]] for index in order]:
        merge_flatfiles(connection, storage, batch)
    assert dates(connection, storage) == {"a": DAY2, "b": DAY1, "c": DAY1}


def test_a_contact_doubled_across_dates_is_healed_by_its_next_merge(connection, storage):
    """What a run killed between publishing the gaining and the losing file leaves behind."""
    key = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a"), ctr("b", initiated=f"{DAY2}T08:00:00Z"))
    merge_flatfiles(connection, storage, [key])
    copy = f"SELECT * REPLACE ('2026-11-28 08:00:00'::TIMESTAMP AS initiationtimestamp) FROM read_parquet({sql_text(storage.uri(partition_file(DAY1)))})"
    with storage.writer(partition_file(DAY2)) as staged:
        connection.execute(f"COPY ({copy} UNION ALL BY NAME SELECT * FROM read_parquet({sql_text(storage.uri(partition_file(DAY2)))})) "
                           f"TO {sql_text(staged.as_posix())} (FORMAT parquet)")
    assert sorted(row["contactid"] for row in table(connection, storage, "contactid")) == ["a", "a", "b"]

    result = merge_flatfiles(connection, storage, [key])

    assert result.rows_moved == 1 and (result.rows_inserted, result.rows_updated) == (0, 0)
    assert dates(connection, storage) == {"a": DAY2, "b": DAY2}


def test_batch_files_left_by_a_killed_merge_are_removed_once_abandoned(tmp_path):
    old, recent, other = tmp_path / f"{BATCH_FOLDER_PREFIX}old", tmp_path / f"{BATCH_FOLDER_PREFIX}recent", tmp_path / "other"
    for folder in (old, recent, other):
        folder.mkdir()
        (folder / "batch-0.ndjson").write_bytes(b"{}\n")
    an_hour_and_more_ago = time.time() - 3700
    for path in (old / "batch-0.ndjson", old, other / "batch-0.ndjson", other):
        os.utime(path, (an_hour_and_more_ago, an_hour_and_more_ago))

    assert remove_abandoned_batch_folders(str(tmp_path)) == 1
    assert sorted(path.name for path in tmp_path.iterdir()) == [recent.name, other.name]
