"""Every cell of every dashboard table against an independent reference (`reference.py`: plain Python from the
raw Firehose objects), for the hand-built contacts of every kind under many settings, and for a simulated day.
"""

from __future__ import annotations

import math
import shutil
from contextlib import closing
from datetime import datetime, timedelta, timezone

import dagster as dg
import duckdb
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ctr_assets.api import run_pipeline
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.layout import RAW
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.metrics.warehouse import (
    AGGREGATES,
    build_aggregate,
    prepare_metrics,
    refresh_ctr_view,
    scratch_connection,
)
from ctr_assets.sample import write_firehose_objects
from ctr_assets.settings import CtrSettings
from ctr_assets_tests.hand_built import HOUR, SERVICE_LEVEL_SECONDS
from ctr_assets_tests.helpers import local_table, settings_for
from ctr_assets_tests.reference import Report, Settings

# The columns that identify a row of each table; every other column is a value compared cell by cell.
GRAINS = {
    "queue_interval_metrics": ("interval_start", "queue_arn", "channel"),
    "daily_summary": ("day", "channel"),
    "agent_performance": ("day", "agent_username"),
    "contacts_per_agent": ("agent_username",),
    "agent_queue_contacts": ("day", "agent_username", "queue_arn"),
    "disconnect_reasons": ("day", "queue_arn", "channel", "outcome", "disconnect_reason"),
}
NOW = datetime.now(timezone.utc).replace(tzinfo=None)


def raw_objects(storage) -> dict[str, bytes]:
    return {item.key: storage.read(item.key) for item in storage.list(RAW)}


def built_tables(storage, settings, as_of: datetime, table_storage=None) -> dict[str, list[dict]]:
    """The aggregates as the pipeline builds them into `storage`, from the table in `table_storage` (by
    default the same), under `settings`."""
    tables = {}
    table_storage = table_storage or storage
    with closing(scratch_connection()) as connection:
        refresh_ctr_view(connection, table_storage, local_table(table_storage))
        prepare_metrics(connection, settings, as_of.replace(tzinfo=timezone.utc))
        for name in AGGREGATES:
            build_aggregate(connection, storage, name)
            relation = connection.sql(f"SELECT * FROM {name}")
            tables[name] = [dict(zip(relation.columns, row)) for row in relation.fetchall()]
    return tables


def mismatches(expected: dict[str, list[dict]], actual: dict[str, list[dict]]) -> tuple[int, list[str]]:
    """(cells compared, one line per cell that differs, or row or column that only one side has)."""
    cells, problems = 0, []
    for name, grain in GRAINS.items():
        want = {tuple(row[column] for column in grain): row for row in expected[name]}
        have = {tuple(row[column] for column in grain): row for row in actual[name]}
        assert len(want) == len(expected[name]) and len(have) == len(actual[name]), f"{name}: grain not unique"
        problems += [f"{name}: row {key} missing" for key in want.keys() - have.keys()]
        problems += [f"{name}: row {key} not in the reference" for key in have.keys() - want.keys()]
        for key in want.keys() & have.keys():
            columns = set(want[key]) | set(have[key])
            for column in sorted(columns):
                cells += 1
                if column not in want[key] or column not in have[key] or not same(want[key][column], have[key][column]):
                    problems.append(f"{name} {key} {column}: reference {want[key].get(column, '(no column)')!r}, "
                                    f"table {have[key].get(column, '(no column)')!r}")
    return cells, problems


def same(expected, actual) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        return expected is not None and actual is not None and math.isclose(expected, actual, rel_tol=1e-12)
    return expected == actual


def compare(storage, as_of: datetime, table_storage=None, **overrides) -> int:
    """Build under the settings (from the table in `table_storage`, by default `storage`'s own) and compare
    every cell with the reference of `storage`'s raw objects; returns the cells compared."""
    ours = CtrSettings.from_env({}, **{"storage_url": storage.root, "service_level_seconds": SERVICE_LEVEL_SECONDS,
                                       **overrides})
    reference = Report(raw_objects(storage), Settings(ours.service_level_seconds, ours.report_timezone,
                                                      ours.interval_minutes, ours.interval_rule), as_of)
    cells, problems = mismatches(reference.tables(), built_tables(storage, ours, as_of, table_storage))
    assert problems == [], "\n".join(problems[:40])
    return cells


@pytest.fixture(scope="module")
def hand_built_copy(hand_built, tmp_path_factory):
    """The hand-built raw objects, copied so that the aggregates can be rebuilt at will from the hand-built
    table (only read: an Iceberg table names its files by absolute paths, so it is not copied)."""
    storage = LocalStorage(root=str(tmp_path_factory.mktemp("reference") / "data"))
    shutil.copytree(hand_built.storage.path(RAW.rstrip("/")), storage.path(RAW.rstrip("/")))
    return storage, hand_built.storage


def test_every_cell_matches_the_reference_with_the_default_settings(hand_built_copy):
    copy, table = hand_built_copy
    assert compare(copy, NOW, table) > 700


def test_every_cell_matches_the_pipelines_own_tables(hand_built):
    """What the Dagster run itself wrote, not only what a rebuild gives."""
    with duckdb.connect(hand_built.settings.warehouse_path, read_only=True) as connection:
        as_of = connection.sql("SELECT as_of FROM metric_settings").fetchall()[0][0]
        actual = {}
        for name in AGGREGATES:
            relation = connection.sql(f"SELECT * FROM {name}")
            actual[name] = [dict(zip(relation.columns, row)) for row in relation.fetchall()]
    reference = Report(raw_objects(hand_built.storage), Settings(service_level_seconds=SERVICE_LEVEL_SECONDS), as_of)
    cells, problems = mismatches(reference.tables(), actual)
    assert problems == [] and cells > 700, problems[:40]


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    interval_minutes=st.sampled_from([15, 30, 60]),
    interval_rule=st.sampled_from(["disconnect", "enqueue"]),
    report_timezone=st.sampled_from(["UTC", "Asia/Tokyo", "America/New_York", "Asia/Kolkata", "Australia/Adelaide"]),
    service_level_seconds=st.integers(0, 120),
    as_of_minutes=st.integers(-90, 24 * 60),
)
def test_every_cell_matches_under_any_settings(hand_built_copy, interval_minutes, interval_rule, report_timezone,
                                               service_level_seconds, as_of_minutes):
    """Interval length and rule, zone (half-hour offsets included), threshold and report time all vary; the
    report time falls inside the data too, so partial intervals and days are compared."""
    copy, table = hand_built_copy
    compare(copy, HOUR.replace(tzinfo=None) + timedelta(minutes=as_of_minutes), table,
            interval_minutes=interval_minutes, interval_rule=interval_rule, report_timezone=report_timezone,
            service_level_seconds=service_level_seconds)


@pytest.fixture(scope="module")
def simulated_day(tmp_path_factory):
    """A simulated day (24 hours of the sample generator's default mix) run through the pipeline."""
    settings = settings_for(tmp_path_factory.mktemp("simulated_day"))
    storage = storage_for(settings)
    write_firehose_objects(storage.write, datetime(2026, 3, 2, tzinfo=timezone.utc), 24, 120, seed=5)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CTR_FIRST_HOUR", settings.first_hour)
        summary = run_pipeline(settings.storage_url, instance=dg.DagsterInstance.ephemeral())
    assert summary.ok, (summary.failed_checks, summary.failed_runs)
    return storage


@pytest.mark.parametrize("overrides", [{}, {"interval_rule": "enqueue", "interval_minutes": 15,
                                            "report_timezone": "Europe/London"}])
def test_every_cell_of_a_simulated_day_matches_the_reference(simulated_day, overrides):
    assert compare(simulated_day, datetime(2026, 3, 2, 18), **overrides) > 10_000
