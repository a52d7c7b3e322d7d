"""Storage keys: one flatfile per raw object, and the lineage each row keeps is exactly its raw key."""

from datetime import datetime, timezone

import orjson
from hypothesis import given
from hypothesis import strategies as st

from ctr_assets.lake.layout import (
    arrival_of_raw_key,
    flat_key,
    quarantine_key,
    raw_key_of_flatfile,
)
from ctr_assets_tests.test_table import merge_flatfiles, table

NAMES = st.text(alphabet="ab/.%2F5gz-", min_size=1, max_size=12).filter(
    lambda name: "" not in name.split("/") and not name.startswith("/"))
RAW_KEYS = st.builds(lambda hour, name: f"raw/2026/03/02/{hour:02d}/{name}", st.integers(0, 23), NAMES)


@given(st.lists(RAW_KEYS, min_size=2, max_size=6, unique=True))
def test_distinct_raw_keys_never_share_a_flatfile_or_a_quarantine_file(keys):
    assert len({flat_key(key) for key in keys}) == len(keys)
    assert len({quarantine_key(key) for key in keys}) == len(keys)


@given(RAW_KEYS)
def test_a_flatfile_names_its_raw_key_exactly(key):
    assert raw_key_of_flatfile(flat_key(key)) == key


def test_firehose_keys_keep_the_original_lambdas_names():
    key = "raw/2026/03/02/08/ctr-stream-1-2026-03-02-08-05-07-6f1c.gz"
    assert flat_key(key) == "flatfiles/2026030208ctr-stream-1-2026-03-02-08-05-07-6f1c.gz"
    assert arrival_of_raw_key(key) == datetime(2026, 3, 2, 8, 5, 7, tzinfo=timezone.utc)
    assert arrival_of_raw_key("raw/2026/03/02/08/copied-by-hand") == datetime(2026, 3, 2, 8, tzinfo=timezone.utc)


def test_rows_of_look_alike_objects_each_keep_their_own_source(connection, storage):
    """`x` and `x.gz`, `a/b` and `ab`: what the Lambda's naming merged into one flatfile."""
    keys = ["raw/2026/11/27/10/x", "raw/2026/11/27/10/x.gz", "raw/2026/11/27/10/a/b", "raw/2026/11/27/10/ab"]
    flatfiles = []
    for number, key in enumerate(keys):
        storage.write(flat_key(key), (orjson.dumps(
            {"contactid": f"c{number}", "initiationtimestamp": "2026-11-27T10:00:00Z",
             "lastupdatetimestamp": "2026-11-27T10:06:00Z"}) + b"\n"))
        flatfiles.append(flat_key(key))

    result = merge_flatfiles(connection, storage, flatfiles)

    assert result.rows_inserted == 4
    assert {row["contactid"]: row["_source_key"] for row in table(connection, storage)} == {
        f"c{number}": key for number, key in enumerate(keys)}

