"""The table rules run as one Dagster step: each rule still fails on its own bad case, with its own
severity, and any one of them can still be run alone."""

import os
import time
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from ctr_assets.api import run_pipeline
from ctr_assets.definitions import PROCESSED_JOB, build_definitions, hourly_partitions
from ctr_assets.defs.assets import CTR
from ctr_assets.defs.checks import build_checks
from ctr_assets.aws.clients import AwsClients
from ctr_assets.defs.resources import athena_for, storage_for, table_for
from ctr_assets.lake.layout import floor_hour, hour_of_raw_key
from ctr_assets.lake.pipeline import flatten_raw_object, merge_hours
from ctr_assets.metrics.warehouse import scratch_connection
from ctr_assets_tests.helpers import (
    SAMPLE_START,
    copy_into_another_day,
    ctr_record,
    firehose_object,
    raw_key,
    settings_for,
)


def contact(contact_id: str, disconnect_minutes: int = 5, hold: int = 0) -> dict:
    record = ctr_record(contact_id, SAMPLE_START, Agent={"Username": "ann", "AgentInteractionDuration": 200,
                                                         "CustomerHoldDuration": hold, "AfterContactWorkDuration": 20})
    record["DisconnectTimestamp"] = (SAMPLE_START + timedelta(minutes=disconnect_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return record


@pytest.fixture
def table(tmp_path):
    """A local storage and a function adding records to its table through the pipeline (Dagster runs)."""
    settings = settings_for(tmp_path)
    storage = storage_for(settings)
    instance = dg.DagsterInstance.ephemeral()

    def add(*records: dict) -> None:
        storage.write(raw_key(SAMPLE_START, second=len(list(storage.list("raw/")))), firehose_object(*records))
        assert run_pipeline(settings=settings, instance=instance).merged

    return settings, storage, add


def copy_to_another_date(settings, storage, contact_id: str) -> None:
    with closing(scratch_connection()) as connection:
        copy_into_another_day(connection, storage, table_for(settings, storage), contact_id, "2020-01-01")


def run_table_rules(settings, storage, *names: str) -> dg.ExecuteInProcessResult:
    """Execute the table rules (all, or the named ones) against the table as it is, without merging."""
    selection = (dg.AssetSelection.checks(*[dg.AssetCheckKey(CTR, name) for name in names]) if names
                 else dg.AssetSelection.checks_for_assets(CTR))
    definitions = dg.Definitions(
        assets=[dg.AssetSpec(CTR, partitions_def=hourly_partitions(settings))],
        asset_checks=build_checks(),
        jobs=[dg.define_asset_job("table_rules", selection=selection)],
        resources={"storage": storage, "table": table_for(settings, storage), "settings": settings,
                   "athena": athena_for(settings, storage, AwsClients())},
        executor=dg.in_process_executor,
    )
    return definitions.resolve_job_def("table_rules").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def test_a_clean_table_passes_every_rule(table):
    settings, storage, add = table
    add(contact("good"))

    result = run_table_rules(settings, storage)

    assert result.success
    assert {name: (e.passed, e.metadata["rows"].value) for name, e in evaluations(result).items()} == {
        "contactid_unique": (True, 1), "timestamps_ordered": (True, 1), "durations_non_negative": (True, 1)}


def test_each_rule_fails_on_its_own_bad_rows_and_only_the_blocking_one_fails_the_run(table):
    settings, storage, add = table
    add(contact("good"), contact("twice"), contact("disconnected_first", disconnect_minutes=-1),
        contact("negative_hold", hold=-5))
    copy_to_another_date(settings, storage, "twice")

    result = run_table_rules(settings, storage)

    found = evaluations(result)
    assert not result.success  # contactid_unique is blocking
    expected = {"contactid_unique": (dg.AssetCheckSeverity.ERROR, ["twice", "twice"]),
                "timestamps_ordered": (dg.AssetCheckSeverity.WARN, ["disconnected_first"]),
                "durations_non_negative": (dg.AssetCheckSeverity.WARN, ["negative_hold"])}
    for name, (severity, sample) in expected.items():
        evaluation = found[name]
        assert not evaluation.passed and evaluation.severity == severity, name
        assert evaluation.metadata["violations"].value == len(sample), name
        assert sorted(evaluation.metadata["sample contactids"].value) == sample, name
        assert evaluation.metadata["rows"].value == 5, name


def test_one_rule_can_run_alone(table):
    settings, storage, add = table
    add(contact("good"), contact("disconnected_first", disconnect_minutes=-1))

    result = run_table_rules(settings, storage, "timestamps_ordered")

    assert list(evaluations(result)) == ["timestamps_ordered"]
    assert not evaluations(result)["timestamps_ordered"].passed and result.success


def test_an_empty_table_passes_with_no_rows(table):
    settings, storage, _ = table

    result = run_table_rules(settings, storage)

    assert result.success and len(evaluations(result)) == 3
    assert all(e.passed and e.metadata["rows"].value == 0 for e in evaluations(result).values())


def land(storage, key: str, hours_ago: float) -> str:
    """A raw object in `key`'s hour folder, written `hours_ago` (a folder's files carry any time we give them)."""
    storage.write(key, firehose_object(ctr_record(key.rsplit("/", 1)[1], SAMPLE_START)))
    written = time.time() - hours_ago * 3600
    os.utime(Path(storage.root) / key, (written, written))
    return key


def process(settings, storage, keys: list[str]) -> None:
    """Flatten and merge exactly these objects, as runs of their hours would have."""
    for key in keys:
        flatten_raw_object(storage, key)
    with closing(scratch_connection()) as connection:
        merge_hours(storage, table_for(settings, storage), sorted({hour_of_raw_key(key) for key in keys}), connection)


def raw_processed(settings, storage) -> dg.AssetCheckEvaluation:
    """The raw_processed check, through the job its daily schedule runs."""
    job = build_definitions(settings, storage).resolve_job_def(PROCESSED_JOB)
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_an_object_unprocessed_past_the_threshold_fails_raw_processed_until_it_is_processed(tmp_path):
    settings = settings_for(tmp_path)
    storage = storage_for(settings)
    now = floor_hour(datetime.now(timezone.utc))
    stuck = land(storage, raw_key(now - timedelta(hours=40), suffix="stuck"), hours_ago=settings.unprocessed_alert_hours + 1)
    land(storage, raw_key(now - timedelta(hours=40), second=5, suffix="young"), hours_ago=settings.unprocessed_alert_hours - 1)

    failed = raw_processed(settings, storage)
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert failed.metadata["unprocessed objects"].value == 1
    assert failed.metadata["oldest key"].value == stuck
    assert "ctr-assets run" in failed.metadata["what to do"].value

    process(settings, storage, [stuck])
    assert raw_processed(settings, storage).passed


def test_raw_processed_counts_exactly_across_gaps_and_years_old_hour_folders(tmp_path):
    settings = settings_for(tmp_path)
    storage = storage_for(settings)
    now = floor_hour(datetime.now(timezone.utc))
    hours = [datetime(2019, 5, 4, 3, tzinfo=timezone.utc), datetime(2022, 12, 31, 23, tzinfo=timezone.utc),
             now - timedelta(days=400), now - timedelta(hours=72), now - timedelta(hours=30), now - timedelta(hours=2)]
    done = [land(storage, raw_key(hour, suffix="done"), hours_ago=100) for hour in hours[::2]]
    process(settings, storage, done)
    overdue = [land(storage, raw_key(hour, second=n + 1, suffix="late"), hours_ago=28 + n) for n, hour in enumerate(hours)]
    for hour in hours:
        land(storage, raw_key(hour, second=30, suffix="young"), hours_ago=2)

    evaluation = raw_processed(settings, storage)
    assert evaluation.metadata["unprocessed objects"].value == len(overdue)
    assert evaluation.metadata["oldest key"].value == overdue[-1]
