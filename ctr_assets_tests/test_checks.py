"""The table rules run as one Dagster step: each rule still fails on its own bad case, with its own
severity, and any one of them can still be run alone."""

from contextlib import closing
from datetime import timedelta

import dagster as dg
import pytest

from ctr_assets.api import run_pipeline
from ctr_assets.definitions import hourly_partitions
from ctr_assets.defs.assets import CTR
from ctr_assets.defs.checks import build_checks
from ctr_assets.aws.clients import AwsClients
from ctr_assets.defs.resources import athena_for, storage_for, table_for
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
