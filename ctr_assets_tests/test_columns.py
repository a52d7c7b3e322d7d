"""No key of a record can take a column the pipeline gives a meaning of its own (lineage, the partition,
variants, what DuckDB's readers add): it is renamed as a key collision is, and its value kept."""

import tempfile

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from ctr_assets.lake.storage import LocalStorage
from ctr_assets.records.columns import RESERVED, VARIANT_SUFFIX, is_reserved
from ctr_assets.records.normalize import free_reserved_names
from ctr_assets_tests.test_table import ctr, merge_flatfiles, put_flatfile, table

RESERVED_LIKE = st.sampled_from(sorted(RESERVED) + ["x" + VARIANT_SUFFIX, VARIANT_SUFFIX, "_source_key_2"])
PLAIN = st.text(alphabet="abc_", min_size=1, max_size=5)


@given(st.lists(st.tuples(RESERVED_LIKE | PLAIN, st.integers()), max_size=8, unique_by=lambda pair: pair[0]))
def test_reserved_names_are_renamed_keeping_every_value_in_order(pairs):
    record = dict(pairs)
    renamed, count = free_reserved_names(record)
    assert not any(map(is_reserved, renamed))
    assert list(renamed.values()) == list(record.values())
    assert count == sum(map(is_reserved, record))
    assert len(renamed) == len(record)  # no two keys land on one name
    assert {key: value for key, value in renamed.items() if key in record} == {
        key: value for key, value in record.items() if not is_reserved(key)}


def test_a_record_carrying_the_pipelines_own_column_names_changes_nothing_about_the_others(connection, storage):
    hostile = {"_Source_Key": "raw/forged", "_arrived_at": "2099-01-01T00:00:00Z", "filename": "f.parquet",
               "File_Row_Number": 7, "initiationtimestamp_day": "2000-01-01", "Agent__v_text": "text", "rowid": 3}
    key = put_flatfile(storage, "2026-11-27T10:05:00", ctr("hostile", **hostile), ctr("neighbour"))
    result = merge_flatfiles(connection, storage, [key])

    assert result.rows_inserted == 2
    rows = {row["contactid"]: row for row in table(connection, storage)}
    source = "raw/2026/11/27/10/ctr-stream-1-2026-11-27-10-05-00-0000"
    assert rows["hostile"]["_source_key"] == rows["neighbour"]["_source_key"] == source
    assert (rows["hostile"]["_source_key_2"], rows["hostile"]["_arrived_at_2"]) == ("raw/forged", "2099-01-01T00:00:00Z")
    assert (rows["hostile"]["filename_2"], rows["hostile"]["file_row_number_2"]) == ("f.parquet", "7")
    assert rows["hostile"]["initiationtimestamp_day_2"] == "2000-01-01"
    assert rows["hostile"]["agent__v_text_2"] == "text" and rows["hostile"]["rowid"] == "3"


# Names some engine on the table's path treats specially: DuckDB's pseudo-columns and reader columns, our
# lineage, partition and variant columns, Iceberg's metadata columns (as Spark and Trino expose them), the
# partition names of Hive-style tables and of Glue, and Connect's own keys under other spellings.
SPECIAL = sorted(RESERVED) + [
    "rowid", "oid", "filename", "file_index", "_file", "_pos", "_deleted", "_spec_id", "_partition",
    "_change_type", "_change_ordinal", "_commit_snapshot_id", "dt", "day", "year", "partition_0",
    "__hive_default_partition__", "x" + VARIANT_SUFFIX, "contactid" + VARIANT_SUFFIX, "_source_key_2", "key",
    "value", "row_number", "count", "select", "from", "group", "order", "null", "true",
]
SPELLINGS = st.sampled_from(SPECIAL).flatmap(lambda name: st.sampled_from([name, name.upper(), name.title()]))


@settings(max_examples=30, deadline=None)
@given(st.dictionaries(SPELLINGS, st.integers(-10**6, 10**6) | st.text("ab é", max_size=4), min_size=1, max_size=6))
def test_keys_named_like_any_engines_own_columns_never_cost_a_record_a_value_or_the_lineage(hostile):
    hostile = {key: value for key, value in hostile.items() if key.lower() not in ("contactid",)}
    with tempfile.TemporaryDirectory() as folder, duckdb.connect() as connection:
        storage = LocalStorage(root=folder)
        key = put_flatfile(storage, "2026-11-27T10:05:00", ctr("hostile", **hostile), ctr("neighbour"))
        result = merge_flatfiles(connection, storage, [key])
        rows = {row["contactid"]: row for row in table(connection, storage)}

    assert result.rows_inserted == 2 and sorted(rows) == ["hostile", "neighbour"]
    source = "raw/2026/11/27/10/ctr-stream-1-2026-11-27-10-05-00-0000"
    assert rows["hostile"]["_source_key"] == rows["neighbour"]["_source_key"] == source
    stored = [value for name, value in rows["hostile"].items() if name not in ("contactid", "_source_key", "_arrived_at")]
    for value in hostile.values():  # undocumented scalars are text: each value is somewhere, as its JSON text
        assert (value if isinstance(value, str) else str(value)) in stored, (value, rows["hostile"])
