"""The merge as one MERGE INTO statement (the Athena engine's): its text is pinned by a golden file, and the
same statement in DuckDB's dialect, applied to a DuckDB table standing in for Athena's, gives exactly the
local merge's table and counts on the same inputs (property-based)."""

import tempfile
from contextlib import closing, contextmanager
from datetime import date
from pathlib import Path

import duckdb
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ctr_assets.defs.checks import TABLE_RULES
from ctr_assets.lake.iceberg import load_table, schema_tree
from ctr_assets.lake.merge_into import (
    ATHENA,
    BATCH_WINNERS,
    DUCKDB,
    merge_into,
    merge_statement,
    rule_results,
    scope,
    table_rules_statement,
)
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.records.schema import quote, relation_schema, render
from ctr_assets_tests.helpers import local_table, table_rows
from ctr_assets_tests.helpers import merge as merge_locally
from ctr_assets_tests.test_table import DAY1, DAY2, ctr, put_flatfile

GOLDEN = Path(__file__).parent / "fixtures" / "merge_into_athena.sql"
STORED_TABLE = "stored"


class DuckDBTable:
    """Athena's part, played by DuckDB: the table's rows in a DuckDB table that follows the Iceberg schema as
    Athena reads it (old rows read new columns and struct fields as null), the statements in DuckDB's dialect."""

    dialect = DUCKDB

    def __init__(self, connection):
        self.connection = connection
        self.statements: list[str] = []

    def table(self, location) -> str:
        return STORED_TABLE

    @contextmanager
    def staged(self, connection, storage, location):
        self.follow(schema_tree(load_table(location).schema()))
        yield BATCH_WINNERS

    def rows(self, sql: str, purpose: str) -> list[tuple]:
        self.statements.append(sql)
        return self.connection.execute(sql).fetchall()

    def follow(self, schema: dict) -> None:
        if not self.connection.sql(f"SELECT * FROM duckdb_tables() WHERE table_name = '{STORED_TABLE}'").fetchall():
            columns = ", ".join(f"{quote(name)} {render(kind)}" for name, kind in schema.items())
            self.connection.execute(f"CREATE TABLE {STORED_TABLE} ({columns})")
            return
        have = relation_schema(self.connection.sql(f"SELECT * FROM {STORED_TABLE} LIMIT 0"))
        for name, kind in schema.items():
            if name not in have:
                self.connection.execute(f"ALTER TABLE {STORED_TABLE} ADD COLUMN {quote(name)} {render(kind)}")
            elif have[name] != kind:
                self.connection.execute(f"ALTER TABLE {STORED_TABLE} ALTER COLUMN {quote(name)} TYPE {render(kind)}")

    def contents(self) -> list[dict]:
        return _comparable(self.connection.sql(f"SELECT *, CAST(CAST(initiationtimestamp AS DATE) AS VARCHAR) AS day "
                                               f"FROM {STORED_TABLE} ORDER BY contactid"))


def _comparable(relation) -> list[dict]:
    """Rows without their null columns and struct fields: a column or struct field that no data file holds
    yet (added by a batch whose copies all lost) reads as absent locally."""
    return [_without_nulls(dict(zip(relation.columns, row))) for row in relation.fetchall()]


def _without_nulls(value):
    if isinstance(value, dict):
        return {name: _without_nulls(item) for name, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


class Twins:
    """The same flatfiles merged by the local engine into one table, and by MERGE INTO into a DuckDB table."""

    def __init__(self, root: Path, window_days: int = 2):
        self.local, self.remote = LocalStorage(root=str(root / "local")), LocalStorage(root=str(root / "remote"))
        self.local_connection, self.remote_connection = duckdb.connect(), duckdb.connect()
        self.engine = DuckDBTable(self.remote_connection)
        self.window_days = window_days

    def put(self, arrival: str, *records: dict, suffix: str = "0000") -> str:
        put_flatfile(self.remote, arrival, *records, suffix=suffix)
        return put_flatfile(self.local, arrival, *records, suffix=suffix)

    def merge(self, keys: list[str]):
        local = merge_locally(self.local_connection, self.local, local_table(self.local), keys)
        sizes = {key: len(self.remote.read(key)) for key in keys}
        remote = merge_into(self.remote_connection, self.remote, local_table(self.remote), sizes, self.engine,
                            self.window_days)
        return local, remote

    def local_contents(self) -> list[dict]:
        return [_without_nulls(row) for row in table_rows(self.local_connection, self.local, local_table(self.local))]

    def close(self) -> None:
        self.local_connection.close()
        self.remote_connection.close()


@contextmanager
def twins(window_days: int = 2):
    with tempfile.TemporaryDirectory() as folder:
        pair = Twins(Path(folder), window_days)
        try:
            yield pair
        finally:
            pair.close()


COUNTS = ("records_read", "duplicates_in_batch", "rows_inserted", "rows_updated", "rows_moved", "days_written",
          "new_columns", "variant_columns")


def assert_same(pair: Twins, local, remote) -> None:
    assert {name: getattr(remote, name) for name in COUNTS} == {name: getattr(local, name) for name in COUNTS}
    assert pair.engine.contents() == pair.local_contents()


# The golden statement: a table whose agent struct gained a field and whose `extra` went to its variant column
# after the batch was staged, over two ranges of days.
GOLDEN_TARGET = {
    "contactid": "VARCHAR", "initiationtimestamp": "TIMESTAMP", "lastupdatetimestamp": "TIMESTAMP",
    "agent": {"username": "VARCHAR", "skills": ["VARCHAR"], "hierarchygroups": {"level1": {"arn": "VARCHAR"}}},
    "mediastreams": [{"type": "VARCHAR", "codec": "VARCHAR"}], "end": "VARCHAR", "extra": "VARCHAR",
    "extra__v_text": "VARCHAR", "_source_key": "VARCHAR", "_arrived_at": "TIMESTAMP",
}
GOLDEN_SOURCE = {
    "contactid": "VARCHAR", "initiationtimestamp": "TIMESTAMP", "lastupdatetimestamp": "TIMESTAMP",
    "agent": {"username": "VARCHAR", "hierarchygroups": {"level1": {"arn": "VARCHAR"}}},
    "mediastreams": [{"type": "VARCHAR"}], "end": "VARCHAR", "extra__v_text": "VARCHAR",
    "_source_key": "VARCHAR", "_arrived_at": "TIMESTAMP",
}
GOLDEN_RANGES = scope([date(2026, 3, 2), date(2026, 3, 1), date(2026, 2, 20)], 1)


def test_the_athena_statement_is_the_golden_one():
    rendered = merge_statement("contact_centre.ctr", "contact_centre.ctr__batch_0123456789ab", GOLDEN_TARGET,
                               GOLDEN_SOURCE, GOLDEN_RANGES, ATHENA)
    assert rendered + "\n" == GOLDEN.read_text()


def test_the_golden_structure_runs_in_duckdb_and_rebuilds_structs_by_name():
    """The golden statement's DuckDB twin: fields the batch lacks become null, the others keep their values
    whatever their position, a missing column becomes null, and an out-of-scope copy is inserted again."""
    with closing(duckdb.connect()) as connection:
        engine = DuckDBTable(connection)
        engine.follow(GOLDEN_TARGET)
        columns = ", ".join(f"{quote(name)} {render(kind)}" for name, kind in GOLDEN_SOURCE.items())
        connection.execute(f"CREATE TABLE batch ({columns})")
        connection.execute("INSERT INTO batch VALUES ('a', '2026-03-02 09:00', '2026-03-02 09:30', "
                           "{'username': 'ann', 'hierarchygroups': {'level1': {'arn': 'g1'}}}, [{'type': 'AUDIO'}], "
                           "'e', 'text', 'raw/k', '2026-03-02 09:31'), "
                           "('far', '2026-03-02 09:00', '2026-03-02 09:30', NULL, NULL, NULL, NULL, 'raw/k', "
                           "'2026-03-02 09:31')")
        connection.execute(f"INSERT INTO {STORED_TABLE} (contactid, initiationtimestamp, lastupdatetimestamp, extra) "
                           "VALUES ('a', '2026-03-01 23:00', '2026-03-01 23:10', 'old'), "
                           "('far', '2026-01-01 09:00', '2026-01-01 09:30', 'outside the scope')")
        assert connection.execute(merge_statement(STORED_TABLE, "batch", GOLDEN_TARGET, GOLDEN_SOURCE, GOLDEN_RANGES,
                                                  DUCKDB)).fetchall() == [(2,)]
        rows = connection.sql(f"SELECT contactid, agent, mediastreams, \"end\", extra, extra__v_text, "
                              f"CAST(initiationtimestamp AS DATE) FROM {STORED_TABLE} ORDER BY ALL").fetchall()
    assert rows == [
        ("a", {"username": "ann", "skills": None, "hierarchygroups": {"level1": {"arn": "g1"}}},
         [{"type": "AUDIO", "codec": None}], "e", None, "text", date(2026, 3, 2)),
        ("far", None, None, None, "outside the scope", None, date(2026, 1, 1)),
        ("far", None, None, None, None, None, date(2026, 3, 2)),
    ]


def test_the_scope_is_each_batch_day_with_the_window_either_side():
    assert GOLDEN_RANGES == [(date(2026, 2, 19), date(2026, 2, 22)), (date(2026, 2, 28), date(2026, 3, 4))]
    assert scope([date(2026, 3, 1), date(2026, 3, 3)], 0) == [(date(2026, 3, 1), date(2026, 3, 2)),
                                                               (date(2026, 3, 3), date(2026, 3, 4))]
    assert scope([date(2026, 3, 1), date(2026, 3, 3)], 1) == [(date(2026, 2, 28), date(2026, 3, 5))]


def test_stale_copies_ties_and_date_moves_merge_as_locally(tmp_path):
    with twins() as pair:
        first = pair.put(f"{DAY1}T10:05:00", ctr("a", Agent={"Username": "ann"}), ctr("b"), ctr("tie"))
        fresher = pair.put(f"{DAY1}T12:05:00", ctr("a", initiated=f"{DAY2}T09:00:00Z", updated=f"{DAY2}T09:10:00Z",
                                                   Agent={"Username": "bob"}), suffix="0001")
        stale = pair.put(f"{DAY1}T13:05:00", ctr("b", updated=f"{DAY1}T09:00:00Z", Agent={"Username": "old"}),
                         ctr("tie", Agent={"Username": "later arrival wins"}), suffix="0002")
        for keys in ([first], [fresher], [stale]):
            assert_same(pair, *pair.merge(keys))
        local, remote = pair.merge([first, fresher, stale])  # again: nothing changes
        assert (remote.rows_inserted, remote.rows_updated, remote.snapshot_id) == (0, 0, None)
        assert_same(pair, local, remote)
        assert {row["contactid"]: row["day"] for row in pair.engine.contents()} == {"a": DAY2, "b": DAY1, "tie": DAY1}


def test_nested_fields_and_columns_added_or_left_out_by_later_batches_merge_as_locally(tmp_path):
    with twins() as pair:
        keys = [pair.put(f"{DAY1}T10:05:00", ctr("a", Agent={"Username": "ann"}, Attributes={"Lang": "en"})),
                pair.put(f"{DAY1}T11:05:00", ctr("a", updated=f"{DAY1}T11:00:00Z", Agent={"Username": "ann", "Skill": "x"}),
                         ctr("b", Attributes={"Vip": "yes"}, Extra={"K": "v"}), suffix="0001"),
                pair.put(f"{DAY1}T12:05:00", ctr("c", Extra="text now"), suffix="0002"),
                # a batch without the column: the updated row's old value goes, as the local merge replaces it
                pair.put(f"{DAY1}T13:05:00", ctr("b", updated=f"{DAY1}T13:00:00Z"), suffix="0003")]
        for key in keys:
            local, remote = pair.merge([key])
            assert_same(pair, local, remote)
        assert [(row["contactid"], row.get("extra"), row.get("extra__v_text")) for row in pair.engine.contents()] == [
            ("a", None, None), ("b", None, None), ("c", None, "text now")]
        assert remote.schema["agent"]["skill"] == "VARCHAR" and remote.schema["attributes"] == {"lang": "VARCHAR",
                                                                                                "vip": "VARCHAR"}


def test_a_contact_stored_outside_the_window_is_inserted_again_and_contactid_unique_reports_it(tmp_path):
    with twins(window_days=0) as pair:
        pair.merge([pair.put(f"{DAY1}T10:05:00", ctr("a"), ctr("b"))])
        moved = pair.put(f"{DAY2}T10:05:00", ctr("a", initiated=f"{DAY2}T09:00:00Z", updated=f"{DAY2}T09:10:00Z"),
                         suffix="0001")
        local, remote = pair.merge([moved])
        assert (local.rows_updated, local.rows_moved) == (1, 1)
        assert (remote.rows_inserted, remote.rows_updated) == (1, 0)
        rules = {name: sql for name, (_, _, sql) in TABLE_RULES.items()}
        rows, found = rule_results(pair.remote_connection.sql(table_rules_statement(STORED_TABLE, rules)).fetchall(),
                                   rules)
        assert rows == 3 and found["contactid_unique"] == (2, ["a", "a"])


def test_the_table_rules_statement_counts_as_the_local_checks_do():
    rules = {name: sql for name, (_, _, sql) in TABLE_RULES.items()}
    with closing(duckdb.connect()) as connection:
        connection.execute("CREATE TABLE stored AS SELECT * FROM (VALUES "
                           "('a', TIMESTAMP '2026-03-02 10:00', TIMESTAMP '2026-03-02 09:00'), "
                           "('a', TIMESTAMP '2026-03-02 10:00', TIMESTAMP '2026-03-02 11:00'), "
                           "(NULL, TIMESTAMP '2026-03-02 10:00', TIMESTAMP '2026-03-02 11:00'), "
                           + ", ".join(f"('late{n}', TIMESTAMP '2026-03-02 10:00', TIMESTAMP '2026-03-02 09:00')"
                                       for n in range(7))
                           + ") AS t(contactid, initiationtimestamp, disconnecttimestamp)")
        connection.execute("ALTER TABLE stored ADD COLUMN queue STRUCT(enqueuetimestamp TIMESTAMP, "
                           "dequeuetimestamp TIMESTAMP, duration BIGINT)")
        connection.execute("ALTER TABLE stored ADD COLUMN agent STRUCT(agentinteractionduration BIGINT, "
                           "customerholdduration BIGINT, aftercontactworkduration BIGINT)")
        rows, found = rule_results(connection.sql(table_rules_statement("stored", rules)).fetchall(), rules)
    assert rows == 10
    assert found["contactid_unique"] == (3, [None, "a", "a"])
    assert found["timestamps_ordered"] == (8, ["a", "late0", "late1", "late2", "late3"])
    assert found["durations_non_negative"] == (0, [])


# Property: any sequence of merges of any flatfiles (re-merges, stale and tied copies, date moves within the
# window, struct fields and variant columns appearing) gives the local merge's table and counts.
CONTACTS = st.sampled_from(["a", "b", "c"])
DAYS = ["2026-11-26", "2026-11-27", "2026-11-28"]
TIMES = st.sampled_from(["T00:30:00Z", "T10:00:00Z", "T23:45:00Z"])


@st.composite
def records(draw) -> dict:
    record = {"ContactId": draw(CONTACTS), "InitiationTimestamp": draw(st.sampled_from(DAYS)) + draw(TIMES)}
    updated = draw(st.sampled_from([None] + [f"{day}T12:00:00Z" for day in DAYS]))
    if updated is not None:
        record["LastUpdateTimestamp"] = updated
    if draw(st.booleans()):
        record["Agent"] = draw(st.fixed_dictionaries({"Username": st.sampled_from(["ann", "bob"])},
                                                      optional={"Skill": st.sampled_from(["x", "y"]), "Team": st.just("t")}))
    if draw(st.booleans()):
        record["Extra"] = draw(st.one_of(st.sampled_from(["one", "two"]), st.fixed_dictionaries({"K": st.just("v")})))
    return record


flatfiles = st.lists(st.tuples(st.sampled_from(["T10:05:00", "T11:05:00"]), st.lists(records(), min_size=1, max_size=4)),
                     min_size=1, max_size=4)


@settings(max_examples=40, deadline=None)
@given(files=flatfiles, data=st.data())
def test_merge_into_gives_the_local_merges_table_and_counts(files, data):
    with twins() as pair:
        keys = [pair.put(f"{DAYS[1]}{arrival}", *batch, suffix=f"{number:04d}") for number, (arrival, batch) in enumerate(files)]
        merges = data.draw(st.lists(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True),
                                    min_size=1, max_size=3))
        for batch in merges + [keys]:  # then all of them again, some for the second time
            local, remote = pair.merge(batch)
            assert_same(pair, local, remote)
            event(f"updated: {bool(local.rows_updated)}, moved: {bool(local.rows_moved)}")
            event(f"new struct fields or columns: {bool(local.new_columns)}, variant columns: {bool(local.variant_columns)}")
        local, remote = pair.merge(keys)
        assert (remote.rows_inserted, remote.rows_updated, remote.days_written) == (0, 0, [])
        assert_same(pair, local, remote)
        # The statement itself changes nothing on a re-merge (merge_into skips it when the count says so).
        ranges = scope([date.fromisoformat(day) for day in DAYS], 2)
        target = relation_schema(pair.remote_connection.sql(f"SELECT * FROM {STORED_TABLE} LIMIT 0"))
        source = relation_schema(pair.remote_connection.sql(f"SELECT * FROM {BATCH_WINNERS} LIMIT 0"))
        statement = merge_statement(STORED_TABLE, BATCH_WINNERS, target, source, ranges, DUCKDB)
        assert pair.remote_connection.execute(statement).fetchall() == [(0,)]
