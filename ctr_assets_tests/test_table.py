"""Merging flatfiles into the Iceberg ctr table: dedup, idempotence, schema evolution, one commit per merge
(design rules 3-5, 7)."""

import io
import json
import os
import time
from datetime import datetime

import pytest

from ctr_assets.lake.iceberg import as_path, load_table, replace_files, snapshot_files
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.lake.table import BATCH_FOLDER_PREFIX, remove_abandoned_batch_folders
from ctr_assets.records.flatten import flatten_object
from ctr_assets.records.schema import column_paths, sql_text
from ctr_assets_tests.helpers import local_table, table_rows
from ctr_assets_tests.helpers import merge as merge_keys

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


def merge_flatfiles(connection, storage, keys):
    return merge_keys(connection, storage, local_table(storage), keys)


def table(connection, storage, columns: str = "*") -> list[dict]:
    """Every row of the table's current snapshot, by contactid (`day` is its partition)."""
    return table_rows(connection, storage, local_table(storage), columns)


def column(connection, storage, expression: str) -> dict:
    return {row["contactid"]: row["value"] for row in table(connection, storage, f"contactid, {expression} AS value")}


def table_days(storage) -> list[str]:
    """The days the current snapshot's data files hold."""
    return sorted({day.isoformat() for _, day in snapshot_files(load_table(local_table(storage))).data})


def data_files(storage) -> list[str]:
    return [as_path(uri) for uri, _ in snapshot_files(load_table(local_table(storage))).data]


def file_types(connection, path: str) -> dict[str, str]:
    relation = connection.sql(f"SELECT * FROM read_parquet({sql_text(path)}, hive_partitioning = false) LIMIT 0")
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
    assert result.days_written == [DAY1, DAY2]
    assert table_days(storage) == [DAY1, DAY2]
    columns = "contactid, day, initiationtimestamp, agent.username, queue.arn, queue.duration"
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
    assert (result.rows_inserted, result.rows_updated, result.days_written, result.snapshot_id) == (0, 0, [], None)
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
    assert table_days(storage) == [DAY1]
    assert table(connection, storage, "contactid, day, disconnectreason") == [
        {"contactid": "a", "day": DAY1, "disconnectreason": "AGENT_DISCONNECT"}
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
            storage, f"{DAY2}T01:05:00", ctr("c", initiated=f"{DAY2}T00:30:00Z", updated=f"{DAY2}T00:40:00Z", Extra="[1]")
        ),
    ]


def _content(connection, storage) -> list[dict]:
    return table(connection, storage)


def test_remerging_the_same_flatfiles_changes_nothing(connection, storage):
    keys = _history(storage)
    merge_flatfiles(connection, storage, keys)
    before = _content(connection, storage)
    snapshot = load_table(local_table(storage)).current_snapshot().snapshot_id
    for batch in (keys, keys[::-1], keys[:1], keys[2:]):
        result = merge_flatfiles(connection, storage, batch)
        assert (result.rows_inserted, result.rows_updated, result.days_written, result.snapshot_id) == (0, 0, [], None)
    assert _content(connection, storage) == before
    assert load_table(local_table(storage)).current_snapshot().snapshot_id == snapshot  # no commit at all


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


def test_undocumented_scalars_are_text_from_the_start_so_no_later_value_needs_a_wider_type(connection, storage):
    big = 9007199254740993  # 2**53 + 1: a DOUBLE column would round it
    first = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a", Extra=5, Items=[{"N": 1}], Big=big, Flag=True))
    second = put_flatfile(storage, f"{DAY2}T10:05:00", ctr("b", initiated=f"{DAY2}T10:00:00Z", Extra=5.5,
                                                          Items=[{"N": "x"}], Big=2**64 - 1, Flag="maybe"))
    merge_flatfiles(connection, storage, [first])
    result = merge_flatfiles(connection, storage, [second])
    assert result.variant_columns == []
    assert (result.schema["extra"], result.schema["items"], result.schema["big"], result.schema["flag"]) == (
        "VARCHAR", [{"n": "VARCHAR"}], "VARCHAR", "VARCHAR")
    assert table(connection, storage, "contactid, extra, items, big, flag") == [
        {"contactid": "a", "extra": "5", "items": [{"n": "1"}], "big": str(big), "flag": "true"},
        {"contactid": "b", "extra": "5.5", "items": [{"n": "x"}], "big": "18446744073709551615", "flag": "maybe"},
    ]


def test_fields_null_in_a_whole_batch_are_stored_and_take_their_values_later(connection, storage):
    """Real Connect fields are often null in every record of an hour: documented ones keep their documented
    type, undocumented ones get no column until a value comes; no column is ever typed NULL (Iceberg and
    Glue have no such type)."""
    nulls = {"AnsweringMachineDetectionStatus": None, "QualityMetrics": None, "Campaign": {"CampaignId": None},
             "Recordings": None, "Unknown": None, "Nested": {"Deep": None}}
    first = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a", **nulls), ctr("b", **nulls))
    result = merge_flatfiles(connection, storage, [first])
    assert result.rows_inserted == 2
    assert not any("NULL" in str(kind) for kind in result.schema.values()), result.schema
    assert "unknown" not in result.schema
    later = put_flatfile(storage, f"{DAY1}T11:05:00", ctr("c", Unknown="now", AnsweringMachineDetectionStatus="HUMAN_ANSWERED",
                                                        Campaign={"CampaignId": "cmp-1"}))
    merge_flatfiles(connection, storage, [later])
    assert table(connection, storage, "contactid, unknown, answeringmachinedetectionstatus AS amd, campaign") == [
        {"contactid": "a", "unknown": None, "amd": None, "campaign": {"campaignid": None}},
        {"contactid": "b", "unknown": None, "amd": None, "campaign": {"campaignid": None}},
        {"contactid": "c", "unknown": "now", "amd": "HUMAN_ANSWERED", "campaign": {"campaignid": "cmp-1"}},
    ]


@pytest.mark.parametrize("order", ["object first", "text first"])
def test_a_value_that_cannot_take_its_columns_type_goes_beside_it_as_text_in_either_order(connection, tmp_path, order):
    storage = LocalStorage(root=str(tmp_path / "data"))
    as_object = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("o", Obj={"A": 1, "B": [True]}, Lst=[{"K": "v"}]))
    as_text = put_flatfile(storage, f"{DAY1}T11:05:00", ctr("t", Obj="plain text", Lst="not a list"), suffix="1")
    batches = [as_object, as_text] if order == "object first" else [as_text, as_object]
    results = [merge_flatfiles(connection, storage, [key]) for key in batches]
    rows = {row["contactid"]: row for row in table(connection, storage)}
    if order == "object first":  # the columns are structs: text has no place in them
        assert results[1].variant_columns == ["obj__v_text", "lst__v_text"]
        assert rows["o"]["obj"] == {"a": "1", "b": ["true"]} and rows["o"]["obj__v_text"] is None
        assert rows["t"]["obj"] is None and rows["t"]["obj__v_text"] == "plain text"
        assert rows["t"]["lst__v_text"] == "not a list"
    else:  # the columns are text: an object is kept as its JSON text, in the column itself
        assert [result.variant_columns for result in results] == [[], []]
        assert json.loads(rows["o"]["obj"]) == {"a": 1, "b": [True]}
        assert json.loads(rows["o"]["lst"]) == [{"k": "v"}]
        assert rows["t"]["obj"] == "plain text"
    # nothing was retyped: the first batch's rows read exactly as they did
    assert merge_flatfiles(connection, storage, batches).snapshot_id is None


def test_data_files_name_every_column_by_its_iceberg_field_id_and_hold_no_partition_column(connection, storage):
    results = [merge_flatfiles(connection, storage, [key]) for key in _history(storage)]
    current = load_table(local_table(storage)).schema()
    ids = {field.name: field.field_id for field in current.fields}
    for path in data_files(storage):
        schema = connection.sql(f"SELECT name, field_id FROM parquet_schema({sql_text(path)})").fetchall()
        top_level = set(file_types(connection, path))
        assert not {"dt", "initiationtimestamp_day"} & top_level, path
        assert {"contactid", "_source_key", "_arrived_at"} <= top_level
        assert all(ids[name] == field_id for name, field_id in schema if name in ids), path
    assert all(set(result.schema) >= set(results[0].schema) for result in results)
    assert column_paths(results[-1].schema).keys() >= {"extra", "attributes.vip"}


def test_a_batch_with_no_records_changes_nothing(connection, storage):
    merge_flatfiles(connection, storage, [put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a"))])
    before = _content(connection, storage)
    storage.write("flatfiles/2026112711ctr-stream-1-2026-11-27-11-05-00-0000", b"")
    result = merge_flatfiles(connection, storage, ["flatfiles/2026112711ctr-stream-1-2026-11-27-11-05-00-0000"])
    assert (result.records_read, result.rows_inserted, result.days_written, result.snapshot_id) == (0, 0, [], None)
    assert _content(connection, storage) == before


def test_no_flatfiles_is_a_no_op(connection, storage):
    result = merge_flatfiles(connection, storage, [])
    assert (result.records_read, result.days_written) == (0, [])
    assert load_table(local_table(storage)) is None


def dates(connection, storage) -> dict[str, str]:
    return {row["contactid"]: row["day"] for row in table(connection, storage, "contactid, day")}


def test_an_update_whose_initiation_date_changed_moves_the_row_to_its_new_date(connection, storage):
    first = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a", Agent={"Username": "ann"}), ctr("b"))
    moved = put_flatfile(storage, f"{DAY1}T13:05:00",
                         ctr("a", initiated=f"{DAY2}T09:00:00Z", updated=f"{DAY2}T09:10:00Z", Agent={"Username": "bob"}))
    merge_flatfiles(connection, storage, [first])
    result = merge_flatfiles(connection, storage, [moved])
    assert (result.rows_inserted, result.rows_updated, result.rows_moved) == (0, 1, 1)
    assert result.days_written == [DAY1, DAY2]
    assert dates(connection, storage) == {"a": DAY2, "b": DAY1}
    assert column(connection, storage, "agent.username") == {"a": "bob", "b": None}


def test_a_merge_is_one_snapshot_so_a_moving_contact_is_never_seen_twice_or_missing(connection, storage):
    first = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a"), ctr("b"))
    moved = put_flatfile(storage, f"{DAY1}T13:05:00", ctr("a", initiated=f"{DAY2}T09:00:00Z", updated=f"{DAY2}T09:10:00Z"))
    merge_flatfiles(connection, storage, [first])
    before = load_table(local_table(storage)).current_snapshot().snapshot_id
    result = merge_flatfiles(connection, storage, [moved])
    snapshots = load_table(local_table(storage)).snapshots()
    assert [snapshot.snapshot_id for snapshot in snapshots][-2:] == [before, result.snapshot_id]
    assert snapshots[-1].summary.operation.value == "overwrite"
    for snapshot in snapshots:  # every state a reader could ever see: each contact once
        ids = [row["contactid"] for row in table_rows(connection, storage, local_table(storage), "contactid",
                                                          snapshot.snapshot_id)]
        assert sorted(ids) == ["a", "b"]


def test_a_day_left_empty_by_a_move_has_no_data_file(connection, storage):
    first = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a"))
    moved = put_flatfile(storage, f"{DAY1}T13:05:00", ctr("a", initiated=f"{DAY2}T09:00:00Z", updated=f"{DAY2}T09:10:00Z"))
    merge_flatfiles(connection, storage, [first])
    merge_flatfiles(connection, storage, [moved])
    assert table_days(storage) == [DAY2]


def test_a_stale_copy_with_another_date_is_not_added_to_that_date(connection, storage):
    fresh = put_flatfile(storage, f"{DAY1}T13:05:00", ctr("a", updated=f"{DAY1}T12:00:00Z", Agent={"Username": "new"}))
    stale = put_flatfile(storage, f"{DAY1}T14:05:00",
                         ctr("a", initiated=f"{DAY2}T01:00:00Z", updated=f"{DAY1}T11:00:00Z", Agent={"Username": "old"}))
    merge_flatfiles(connection, storage, [fresh])
    result = merge_flatfiles(connection, storage, [stale])
    assert (result.rows_inserted, result.rows_updated, result.rows_moved, result.days_written) == (0, 0, 0, [])
    assert table_days(storage) == [DAY1]
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


def test_a_contact_doubled_across_days_by_another_writer_is_healed_by_its_next_merge(connection, storage):
    """A table another engine broke: one contact in two days. The next merge of it keeps one row."""
    key = put_flatfile(storage, f"{DAY1}T10:05:00", ctr("a"), ctr("b", initiated=f"{DAY2}T08:00:00Z"))
    merge_flatfiles(connection, storage, [key])
    location = local_table(storage)
    current = load_table(location)
    day1 = [path for path in data_files(storage) if f"={DAY1}/" in path][0]
    extra = storage.root_path / "parquet/ctr/data/extra.parquet"
    connection.execute(f"COPY (SELECT * REPLACE ('2026-11-28 08:00:00'::TIMESTAMP AS initiationtimestamp) "
                       f"FROM read_parquet({sql_text(day1)}, hive_partitioning = false)) TO {sql_text(str(extra))} (FORMAT parquet, "
                       f"FIELD_IDS {__import__('ctr_assets.lake.iceberg', fromlist=['field_ids']).field_ids(current.schema())})")
    replace_files(current, [], [str(extra)], {})
    assert sorted(row["contactid"] for row in table(connection, storage, "contactid")) == ["a", "a", "b"]

    result = merge_flatfiles(connection, storage, [key])

    assert result.rows_moved == 1 and (result.rows_inserted, result.rows_updated) == (0, 0)
    assert sorted(row["contactid"] for row in table(connection, storage, "contactid")) == ["a", "b"]


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
