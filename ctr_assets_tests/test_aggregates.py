"""The dashboard aggregates are computed in one step but stay separate assets: any one can be
materialized alone, and without a table none is materialized. The queue alerts are that step's checks:
warnings in the UI, and lines in `ctr-assets status`."""

from contextlib import closing
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from ctr_assets.api import run_pipeline
from ctr_assets.cli import main
from ctr_assets.definitions import build_definitions, hourly_partitions
from ctr_assets.defs.assets import build_assets
from ctr_assets.defs.dashboards import build_dashboard_assets
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.metrics.alerts import interval_label, latest_interval
from ctr_assets.metrics.warehouse import (
    build_aggregate,
    prepare_metrics,
    refresh_ctr_view,
    scratch_connection,
)
from ctr_assets.settings import CtrSettings
from ctr_assets_tests.helpers import (
    connect_contact,
    firehose_object,
    raw_key,
    settings_for,
    write_sample,
)


def alert_lines(status: str) -> list[str]:
    """What `ctr-assets status` says from its `alerts:` line on."""
    lines = status.splitlines()
    return lines[next(number for number, line in enumerate(lines) if line.startswith("alerts:")):]


def materialize(settings, *names: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        build_assets(hourly_partitions(settings)) + build_dashboard_assets(), selection=list(names), instance=dg.DagsterInstance.ephemeral(),
        resources=build_definitions(settings).resources,
        raise_on_error=False)


def test_one_aggregate_can_be_materialized_alone(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    monkeypatch.setenv("CTR_FIRST_HOUR", settings.first_hour)
    write_sample(storage_for(settings), hours=1, contacts_per_hour=20)
    assert run_pipeline(settings.storage_url, instance=dg.DagsterInstance.ephemeral()).ok

    result = materialize(settings, "daily_summary")

    assert result.success
    (event,) = result.get_asset_materialization_events()
    metadata = event.step_materialization_data.materialization.metadata
    assert event.asset_key == dg.AssetKey("daily_summary") and metadata["dagster/row_count"].value > 0
    assert metadata["dagster/table_name"].value == "daily_summary" and metadata["preview"].value.startswith("| ")


def test_without_a_table_no_aggregate_is_materialized_and_the_failure_says_why(tmp_path):
    settings = settings_for(tmp_path)

    result = materialize(settings, "contacts_per_agent", "disconnect_reasons")

    assert not result.success and not result.get_asset_materialization_events()
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "the ctr table has no data yet" in description
    assert "contacts_per_agent" in description and "disconnect_reasons" in description


TEN = datetime(2026, 3, 2, 10, tzinfo=timezone.utc)


def queued(contact_id: str, queue: str, at: datetime, wait: int, answered: bool = True) -> dict:
    """A voice contact queued in `queue` at `at` for `wait` seconds, then answered by ann, or abandoned."""
    return connect_contact(contact_id, at, queue=queue, enqueued=at + timedelta(seconds=10), wait=wait,
                           agent="ann" if answered else None, talk=100 if answered else 0)


@pytest.fixture
def alerting(tmp_path, monkeypatch):
    """Sales crosses both thresholds in the latest complete interval (10:00); Support is fine there, though its
    09:00 interval was bad; Billing's 10:00 is bad but has too few contacts queued to judge."""
    settings = settings_for(tmp_path)
    for name in ("CTR_SERVICE_LEVEL_SECONDS", "CTR_SERVICE_LEVEL_TARGET", "CTR_ABANDONMENT_RATE_LIMIT",
                 "CTR_ALERT_MIN_QUEUED", "CTR_INTERVAL_MINUTES", "CTR_INTERVAL_RULE", "CTR_REPORT_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CTR_FIRST_HOUR", settings.first_hour)
    minutes = lambda n: TEN + timedelta(minutes=n)  # noqa: E731
    contacts = [
        # Sales 10:00: 5 queued, 2 within 20 s (40% < 80%), 1 abandoned (20% > 10%).
        *(queued(f"sales-{n}", "Sales", minutes(n), wait) for n, wait in enumerate((5, 10, 40, 50))),
        queued("sales-gone", "Sales", minutes(5), 60, answered=False),
        # Support 10:00: 5 queued, all within 20 s, none abandoned; 09:00: 5 abandoned (an earlier interval).
        *(queued(f"support-{n}", "Support", minutes(10 + n), 5) for n in range(5)),
        *(queued(f"support-early-{n}", "Support", minutes(-50 + n), 90, answered=False) for n in range(5)),
        # Billing 10:00: 2 queued, both abandoned: under CTR_ALERT_MIN_QUEUED (5).
        *(queued(f"billing-{n}", "Billing", minutes(20 + n), 90, answered=False) for n in range(2)),
    ]
    storage = storage_for(settings)
    storage.write(raw_key(TEN, 3000), firehose_object(*contacts))
    instance = dg.DagsterInstance.ephemeral()
    assert run_pipeline(settings.storage_url, instance=instance).ok  # warnings do not fail a run
    return settings, instance


def test_alerts_are_warnings_on_queue_metrics_naming_the_queues_of_the_latest_interval(alerting):
    settings, instance = alerting
    records = {name: instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("queue_interval_metrics"), f"{name}_alert")).event.dagster_event
        .event_specific_data for name in ("service_level", "abandonment")}
    for evaluation in records.values():
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.metadata["interval"].value == "2026-03-02 10:00–11:00"
        assert evaluation.metadata["queues alerting"].value == 1 and evaluation.metadata["queues judged"].value == 2
    assert records["service_level"].description == "Sales: service level 40.0% < target 80% (2 of 5 queued in time)"
    assert records["abandonment"].description == "Sales: abandonment 20.0% > limit 10% (1 of 5 queued)"


def test_status_shows_the_alerts_with_the_current_thresholds(alerting, capsys, monkeypatch):
    settings, _ = alerting
    assert main(["status", "--storage", settings.storage_url]) == 0
    assert alert_lines(capsys.readouterr().out) == ["alerts:       2026-03-02 10:00–11:00: 2 queue alerts",
                         "  WARNING Sales: service level 40.0% < target 80% (2 of 5 queued in time)",
                         "  WARNING Sales: abandonment 20.0% > limit 10% (1 of 5 queued)"]
    monkeypatch.setenv("CTR_ALERT_MIN_QUEUED", "2")
    monkeypatch.setenv("CTR_SERVICE_LEVEL_TARGET", "30")
    assert main(["status", "--storage", settings.storage_url]) == 0
    assert alert_lines(capsys.readouterr().out) == [  # Billing is judged now; Sales' 40% meets a 30% target
        "alerts:       2026-03-02 10:00–11:00: 3 queue alerts",
        "  WARNING Billing: service level 0.0% < target 30% (0 of 2 queued in time)",
        "  WARNING Billing: abandonment 100.0% > limit 10% (2 of 2 queued)",
        "  WARNING Sales: abandonment 20.0% > limit 10% (1 of 5 queued)"]


def test_alerts_pass_when_no_queue_crosses_and_status_says_so(alerting, capsys, monkeypatch):
    settings, _ = alerting
    monkeypatch.setenv("CTR_SERVICE_LEVEL_TARGET", "0")
    monkeypatch.setenv("CTR_ABANDONMENT_RATE_LIMIT", "100")
    result = materialize(CtrSettings.from_env(storage_url=settings.storage_url), "queue_interval_metrics")
    evaluations = result.get_asset_check_evaluations()
    assert {evaluation.check_name for evaluation in evaluations} == {"service_level_alert", "abandonment_alert"}
    assert all(evaluation.passed for evaluation in evaluations)
    assert main(["status", "--storage", settings.storage_url]) == 0
    assert alert_lines(capsys.readouterr().out) == ["alerts:       2026-03-02 10:00–11:00: no queue alerts"]


def test_status_before_any_dashboard_says_how_to_get_one(tmp_path, capsys):
    (tmp_path / "data" / "raw").mkdir(parents=True)  # a storage (it has raw/) that nothing was run on yet
    assert main(["status", "--storage", str(tmp_path / "data")]) == 0
    assert alert_lines(capsys.readouterr().out) == [
        "alerts:       no dashboard tables yet: `ctr-assets run` builds them"]


def test_an_interval_still_running_is_not_judged(alerting):
    """Built at 10:30, the 10:00 interval is still running: the alerts judge 09:00, where Support lost 5 of 5."""
    settings, _ = alerting
    with closing(scratch_connection()) as connection:
        refresh_ctr_view(connection, storage_for(settings), table_for(settings, storage_for(settings)))
        prepare_metrics(connection, settings, datetime(2026, 3, 2, 10, 30, tzinfo=timezone.utc))
        build_aggregate(connection, storage_for(settings), "queue_interval_metrics")
        queues = latest_interval(connection)
    assert interval_label(queues) == "2026-03-02 09:00–10:00"
    assert [(queue.queue_name, queue.service_level_alert, queue.abandonment_alert) for queue in queues] == [
        ("Support", True, True)]
