"""The Athena engine (CTR_MERGE_ENGINE=athena) against moto's Athena, Glue and S3 APIs: its settings, how it
launches and polls queries, its failures as one line, and the metadata it reports. Moto runs no SQL: what
the statements do is held to the local merge in test_merge_into.py."""

import json
import urllib.request
from contextlib import closing
from datetime import date, datetime, timedelta, timezone

import pytest

from ctr_assets.aws.athena import (
    BATCH_INFIX,
    RESULTS_PREFIX,
    STAGING_PREFIX,
    AthenaEngine,
    cost_estimate,
)
from ctr_assets.aws.clients import AwsClients
from ctr_assets.definitions import ETL_JOB, MAINTENANCE_JOB, build_definitions
from ctr_assets.defs.assets import FLATTENED
from ctr_assets.defs.checks import TABLE_RULES
from ctr_assets.defs.resources import athena_for, storage_for, table_for
from ctr_assets.lake.iceberg import create_table, iceberg_schema_of, load_catalog, load_table, schema_tree
from ctr_assets.lake.layout import MERGED, partition_of_hour
from ctr_assets.lake.merge_into import ATHENA, merge_statement, scope, table_rules_statement
from ctr_assets.lake.pipeline import flatten_hours, merge_hours, pending_raw_keys
from ctr_assets.lake.storage import StorageError
from ctr_assets.metrics.warehouse import scratch_connection
from ctr_assets.settings import CtrSettings, SettingError
from ctr_assets_tests.conftest import REGION
from ctr_assets_tests.helpers import SAMPLE_START, ctr_record, firehose_object, raw_key, settings_for
from ctr_assets_tests.test_checks import run_table_rules


@pytest.mark.parametrize("overrides, message", [
    ({"merge_engine": "spark"}, "CTR_MERGE_ENGINE: 'spark' is not one of local, athena"),
    ({"merge_engine": "athena"}, "CTR_MERGE_ENGINE: athena works on the table in the Glue Data Catalog: it needs "
                                 "s3:// storage (CTR_STORAGE_URL) and CTR_GLUE_DATABASE"),
    ({"merge_engine": "athena", "storage_url": "s3://bucket-x", "catalog_uri": "sqlite:////tmp/c.db"},
     "CTR_MERGE_ENGINE: athena works on the table in the Glue Data Catalog"),
    ({"athena_workgroup": "no spaces"}, "CTR_ATHENA_WORKGROUP: 'no spaces' is not a workgroup name"),
    ({"athena_output_location": "/tmp/results"}, "CTR_ATHENA_OUTPUT_LOCATION: '/tmp/results' is not an s3://bucket/folder"),
    ({"athena_merge_window_days": -1}, "CTR_ATHENA_MERGE_WINDOW_DAYS: must not be negative"),
    ({"athena_price_per_tb": -5}, "CTR_ATHENA_PRICE_PER_TB: must not be negative"),
])
def test_an_unusable_athena_setting_is_one_line_naming_it(tmp_path, overrides, message):
    with pytest.raises(SettingError) as raised:
        settings_for(tmp_path, **overrides)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_athena_settings_are_read_from_the_environment(tmp_path):
    settings = CtrSettings.from_env({"CTR_STORAGE_URL": "s3://bucket-x/ctr", "CTR_GLUE_DATABASE": "contact_centre",
                                     "CTR_MERGE_ENGINE": "athena", "CTR_ATHENA_WORKGROUP": "ctr-etl",
                                     "CTR_ATHENA_OUTPUT_LOCATION": "s3://results-bucket/athena/",
                                     "CTR_ATHENA_MERGE_WINDOW_DAYS": "0", "CTR_ATHENA_PRICE_PER_TB": "6.75"})
    assert (settings.merge_engine, settings.athena_workgroup, settings.athena_output_location,
            settings.athena_merge_window_days, settings.athena_price_per_tb) == (
        "athena", "ctr-etl", "s3://results-bucket/athena/", 0, 6.75)
    assert CtrSettings.from_env({}).merge_engine == "local"


# --- queries: launch, polling, failures, cost ---------------------------------------------------------------

def set_transitions(moto, times: int | None) -> None:
    """moto's Athena queries advance a state (QUEUED, RUNNING, SUCCEEDED) every `times` polls; None: at once."""
    path, body = ("set-transition", {"model_name": "athena::execution", "transition": {"progression": "manual",
                                                                                       "times": times}}) \
        if times else ("unset-transition", {"model_name": "athena::execution"})
    request = urllib.request.Request(f"{moto.url}/moto-api/state-manager/{path}", data=json.dumps(body).encode())
    urllib.request.urlopen(request, timeout=10).close()


@pytest.fixture
def slow_queries(moto):
    yield lambda times: set_transitions(moto, times)
    set_transitions(moto, None)


@pytest.fixture
def engine(moto):
    moto.athena_outcomes()
    bucket = moto.new_bucket()
    return AthenaEngine(aws=AwsClients(), output_location=f"s3://{bucket}/athena/results/", poll_seconds=0.05)


def execution(moto, query_id: str) -> dict:
    return moto.client("athena").get_query_execution(QueryExecutionId=query_id)["QueryExecution"]


def test_a_query_is_started_in_the_workgroup_polled_to_its_end_and_reported_with_its_cost(moto, engine, slow_queries):
    slow_queries(3)  # three polls in each of QUEUED and RUNNING
    moto.athena_outcomes({"data_scanned": 123_456_789})

    query = engine.run("SELECT count(*) FROM contact_centre.ctr", "probe", "contact_centre")

    assert (query.purpose, query.state, query.data_scanned_bytes) == ("probe", "SUCCEEDED", 123_456_789)
    assert query.cost_usd == pytest.approx(118 / 2**20 * 5.0)  # 118 MB at $5 per TB
    started = execution(moto, query.query_id)
    assert started["Query"] == "SELECT count(*) FROM contact_centre.ctr" and started["WorkGroup"] == "primary"
    assert started["QueryExecutionContext"] == {"Database": "contact_centre"}
    assert started["ResultConfiguration"]["OutputLocation"].startswith(engine.output_location)


def test_athena_bills_at_least_ten_megabytes_and_nothing_for_a_failed_query():
    assert cost_estimate(0, "SUCCEEDED", 5.0) == cost_estimate(10 * 2**20, "SUCCEEDED", 5.0) == 10 / 2**20 * 5.0
    assert cost_estimate(10 * 2**20 + 1, "CANCELLED", 6.75) == 11 / 2**20 * 6.75
    assert cost_estimate(2**40, "FAILED", 5.0) == 0


@pytest.mark.parametrize("reason, starts, names", [
    ("Insufficient Lake Formation permission(s) on ctr", "AWS credentials (", "Lake Formation SELECT, INSERT, DELETE"),
    ("Insufficient permissions to execute the query. User: arn:aws:iam::1:user/x is not authorized to perform: "
     "glue:GetTable", "AWS credentials (", "glue:GetTable"),
    ("No output location provided. An output location is required either through the Workgroup result "
     "configuration setting or as an API input.", "CTR_ATHENA_OUTPUT_LOCATION: ", "s3:PutObject"),
    ("ICEBERG_COMMIT_ERROR: Failed to commit Iceberg update to table", "Athena query ", "another writer committed"),
    ("COLUMN_NOT_FOUND: line 1:8: Column 'x' cannot be resolved\nmore detail", "Athena query ", "COLUMN_NOT_FOUND"),
])
def test_a_failed_query_is_one_line_naming_what_to_check(moto, engine, reason, starts, names):
    moto.athena_outcomes({"state": "FAILED", "reason": reason})
    with pytest.raises(StorageError) as raised:
        engine.run("SELECT x FROM contact_centre.ctr", "probe", "contact_centre")
    message = str(raised.value)
    assert message.startswith(starts) and names in message and "\n" not in message, message
    assert "(probe) FAILED" in message


def test_a_query_outliving_the_timeout_is_stopped(moto, engine, slow_queries):
    slow_queries(10**6)
    engine = AthenaEngine(aws=AwsClients(), output_location=engine.output_location, poll_seconds=0.05,
                          timeout_seconds=0.5)
    with pytest.raises(StorageError, match=r"^Athena query (\S+) \(probe\) still QUEUED after 0.5 s: stopped it") as raised:
        engine.run("SELECT 1", "probe", "contact_centre")
    query_id = str(raised.value).split()[2]
    assert execution(moto, query_id)["Status"]["State"] == "CANCELLED"


def test_a_missing_workgroup_or_permission_is_one_line(moto, engine):
    with pytest.raises(StorageError, match="^CTR_ATHENA_WORKGROUP: Athena refused workgroup 'adhoc' "):
        AthenaEngine(aws=AwsClients(), workgroup="adhoc").run("SELECT 1", "probe", "contact_centre")
    poller = moto.user_allowed("athena:GetQueryExecution")
    denied = AthenaEngine(aws=AwsClients(**poller), output_location=engine.output_location)
    with moto.enforcing_iam(), pytest.raises(StorageError) as raised:
        denied.run("SELECT 1", "probe", "contact_centre")
    assert str(raised.value).startswith("AWS credentials (") and "needs athena:StartQueryExecution" in str(raised.value)


def athena_results(moto, *results: tuple[list[str], list[tuple]]) -> None:
    """What the next queries return, as Athena returns it: a header row, then every value as text (null: no value)."""
    body = {"region": REGION, "results": [
        {"rows": [{"Data": [{"VarCharValue": name} for name in columns]}]
         + [{"Data": [{} if cell is None else {"VarCharValue": str(cell)} for cell in row]} for row in rows],
         "column_info": [{"Name": name, "Label": name, "Type": "varchar"} for name in columns]}
        for columns, rows in results]}
    request = urllib.request.Request(f"{moto.url}/moto-api/static/athena/query-results", data=json.dumps(body).encode())
    urllib.request.urlopen(request, timeout=10).close()


def test_results_come_back_as_rows_of_text_without_athenas_header(moto, engine):
    athena_results(moto, (["rule", "contactid", "violations"], [(None, None, 10), ("contactid_unique", "a", 2)]))
    query = engine.run("SELECT ...", "probe", "contact_centre")
    assert engine.results(query.query_id) == [(None, None, "10"), ("contactid_unique", "a", "2")]


# --- the merge, the table rules and upkeep through Athena -----------------------------------------------------

HOUR = SAMPLE_START
STAGED: list[dict] = []  # what a spying engine saw staged when it ran the MERGE


class SpyingEngine(AthenaEngine):
    """Athena as moto plays it, and a look at the staged batch from pyiceberg when the MERGE is started."""

    def run(self, sql: str, purpose: str, database: str):
        if purpose == "merge":
            batch = sql.split("\n")[1].removeprefix("USING ").split(" AS ")[0]
            location = table_for(CtrSettings.from_env(), storage_for(CtrSettings.from_env()))
            staged = load_catalog(location).load_table(tuple(batch.split(".")))
            STAGED.append({"name": batch, "sql": sql, "rows": staged.scan().to_arrow().to_pylist(),
                           "schema": schema_tree(staged.schema()), "table": schema_tree(load_table(location).schema())})
        return super().run(sql, purpose, database)


@pytest.fixture
def athena_settings(s3_settings, moto, monkeypatch) -> CtrSettings:
    monkeypatch.setenv("CTR_MERGE_ENGINE", "athena")
    moto.athena_outcomes()
    return CtrSettings.from_env({}, **{**s3_settings.model_dump(), "merge_engine": "athena"})


def put_hour(storage, *records: dict) -> None:
    storage.write(raw_key(HOUR), firehose_object(*records))
    flatten_hours(storage, [HOUR], workers=1)


def changes_result(*rows: tuple) -> tuple[list[str], list[tuple]]:
    return ["day", "stored_day", "contacts"], list(rows)


def test_a_merge_stages_the_deduplicated_batch_as_an_iceberg_table_runs_one_merge_and_drops_the_batch(
        athena_settings, moto):
    storage = storage_for(athena_settings)
    location = table_for(athena_settings, storage)
    put_hour(storage, ctr_record("a", HOUR), ctr_record("a", HOUR, HOUR + timedelta(minutes=30), Channel="CHAT"),
             ctr_record("b", HOUR, Agent={"Username": "ann"}))
    athena_results(moto, changes_result(("2026-03-02", None, 2)))
    moto.athena_outcomes({"data_scanned": 4_000}, {"data_scanned": 3 * 2**20})
    engine = SpyingEngine(aws=AwsClients(), output_location=storage.uri(RESULTS_PREFIX), poll_seconds=0.05)
    STAGED.clear()

    with closing(scratch_connection()) as connection:
        result = merge_hours(storage, location, [HOUR], connection, {}, engine.merge)

    (staged,) = STAGED
    assert sorted((row["contactid"], row["channel"]) for row in staged["rows"]) == [("a", "CHAT"), ("b", "VOICE")]
    assert all(staged["schema"][name] == kind for name, kind in staged["table"].items() if name in staged["schema"])
    day = date(2026, 3, 2)
    assert staged["sql"] == merge_statement(f"{location.namespace}.ctr", staged["name"], staged["table"], staged["schema"],
                                            scope([day], athena_settings.athena_merge_window_days), ATHENA)
    assert (result.records_read, result.duplicates_in_batch, result.rows_inserted, result.days_written) == (
        3, 1, 2, ["2026-03-02"])
    assert [(query.purpose, query.state, query.data_scanned_bytes) for query in result.queries] == [
        ("count changes", "SUCCEEDED", 4_000), ("merge", "SUCCEEDED", 3 * 2**20)]
    assert [execution(moto, query.query_id)["Query"] for query in result.queries][1] == staged["sql"]
    assert {"contactid", "agent", "_source_key"} <= set(result.new_columns)  # the schema came first, by pyiceberg
    tables = [table["Name"] for table in moto.client("glue").get_tables(DatabaseName=location.namespace)["TableList"]]
    assert tables == ["ctr"] and list(storage.list(STAGING_PREFIX)) == []
    assert pending_raw_keys(storage, location) == {}  # the ledger knows the flatfiles are merged


def test_a_batch_that_changes_nothing_runs_no_merge(athena_settings, moto):
    storage = storage_for(athena_settings)
    put_hour(storage, ctr_record("a", HOUR))
    engine = athena_for(athena_settings, storage, AwsClients())
    with closing(scratch_connection()) as connection:  # moto answers the count with no rows: nothing changes
        result = merge_hours(storage, table_for(athena_settings, storage), [HOUR], connection, {}, engine.merge)
    assert [query.purpose for query in result.queries] == ["count changes"]
    assert (result.rows_inserted, result.rows_updated, result.snapshot_id) == (0, 0, None)


def test_the_ctr_asset_reports_its_athena_queries_and_the_table_rules_wait_for_upkeep(athena_settings, moto):
    storage = storage_for(athena_settings)
    storage.write(raw_key(HOUR), firehose_object(ctr_record("a", HOUR), ctr_record("b", HOUR)))
    athena_results(moto, changes_result(("2026-03-02", None, 2)))
    moto.athena_outcomes({"data_scanned": 1_000}, {"data_scanned": 50 * 2**20})
    definitions = build_definitions(athena_settings)

    result = definitions.resolve_job_def(ETL_JOB).execute_in_process(partition_key=partition_of_hour(HOUR))

    (materialization,) = result.asset_materializations_for_node("ctr")
    metadata = materialization.metadata
    queries = metadata["athena query ids"].value
    assert [(query["purpose"], query["state"]) for query in queries] == [("count changes", "SUCCEEDED"),
                                                                          ("merge", "SUCCEEDED")]
    assert metadata["athena data scanned (bytes)"].value == 1_000 + 50 * 2**20
    assert metadata["athena cost estimate (USD)"].value == round((10 + 50) / 2**20 * 5.0, 6)
    assert metadata["rows inserted"].value == 2
    started = [execution(moto, query["query_id"]) for query in queries]
    assert all(query["ResultConfiguration"]["OutputLocation"].startswith(storage.uri("athena/results/"))
               for query in started)
    assert {evaluation.asset_key for evaluation in result.get_asset_check_evaluations()} == {FLATTENED}
    upkeep = definitions.resolve_job_def(MAINTENANCE_JOB)
    assert {key.name for key in upkeep.asset_layer.asset_graph.asset_check_keys} == set(TABLE_RULES)


def test_the_table_rules_run_as_one_athena_query(athena_settings, moto):
    storage = storage_for(athena_settings)
    location = table_for(athena_settings, storage)
    create_table(location, {"contactid": "VARCHAR", "initiationtimestamp": "TIMESTAMP"})
    athena_results(moto, (["rule", "contactid", "violations"], [
        ("contactid_unique", "twice", 2), (None, None, 5), ("contactid_unique", "twice", 2),
        ("timestamps_ordered", "disconnected_first", 1)]))
    moto.athena_outcomes({"data_scanned": 70 * 2**20})

    result = run_table_rules(athena_settings, storage)

    found = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not result.success  # contactid_unique is blocking
    assert {name: (e.passed, e.metadata["violations"].value, e.metadata["sample contactids"].value,
                   e.metadata["rows"].value) for name, e in found.items()} == {
        "contactid_unique": (False, 2, ["twice", "twice"], 5),
        "timestamps_ordered": (False, 1, ["disconnected_first"], 5),
        "durations_non_negative": (True, 0, [], 5)}
    (query,) = found["contactid_unique"].metadata["athena query ids"].value
    rules = {name: sql for name, (_, _, sql) in TABLE_RULES.items()}
    assert execution(moto, query["query_id"])["Query"] == table_rules_statement(f"{location.namespace}.ctr", rules)
    assert query["data_scanned_bytes"] == 70 * 2**20


def test_upkeep_runs_optimize_and_vacuum_keeps_what_expiring_snapshots_merged_and_drops_abandoned_batches(
        athena_settings, moto):
    storage = storage_for(athena_settings)
    location = table_for(athena_settings, storage)
    put_hour(storage, ctr_record("a", HOUR))
    with closing(scratch_connection()) as connection:  # a table the local engine wrote: its snapshot lists the flatfiles
        merge_hours(storage, location, [HOUR], connection, {})
    for item in storage.list(MERGED):  # as if the run died between its commit and its ledger entry
        storage.delete(item.key)
    engine = athena_for(athena_settings, storage, AwsClients())
    abandoned = f"ctr{BATCH_INFIX}0123456789ab"
    load_catalog(location).create_table((location.namespace, abandoned), iceberg_schema_of({"contactid": "VARCHAR"}),
                                        location=storage.uri(f"{STAGING_PREFIX}{abandoned}"))

    young = engine.maintain(storage, location, retention_hours=0)
    report = engine.maintain(storage, location, retention_hours=24, now=datetime.now(timezone.utc) + timedelta(days=2))

    assert young.batches_removed == 0 and report.batches_removed == 1 and list(storage.list(STAGING_PREFIX)) == []
    statements = [execution(moto, query.query_id)["Query"] for query in young.queries + report.queries]
    table = f"{location.namespace}.ctr"
    assert statements == [
        f"ALTER TABLE {table} SET TBLPROPERTIES ('vacuum_max_snapshot_age_seconds'='0')",
        f"OPTIMIZE {table} REWRITE DATA USING BIN_PACK", f"VACUUM {table}",
        f"ALTER TABLE {table} SET TBLPROPERTIES ('vacuum_max_snapshot_age_seconds'='86400')",
        f"OPTIMIZE {table} REWRITE DATA USING BIN_PACK", f"VACUUM {table}"]
    assert pending_raw_keys(storage, location) == {}  # the ledger has what the expiring snapshot merged
    assert report.describe().startswith("ran snapshot retention, compaction, snapshot expiry and unused files through "
                                        "Athena (0.0 MB scanned, about $0.0001); removed 1 batches")
