"""No key of a record can take a column the pipeline gives a meaning of its own (lineage, the partition,
variants, what DuckDB's readers add): it is renamed as a key collision is, and its value kept."""

from hypothesis import given
from hypothesis import strategies as st

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
