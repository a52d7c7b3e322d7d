"""The dashboard aggregates are computed in one step but stay separate assets: any one can be
materialized alone, and without a table none is materialized."""

import dagster as dg

from ctr_assets.api import run_pipeline
from ctr_assets.definitions import hourly_partitions
from ctr_assets.defs.assets import build_assets
from ctr_assets.defs.dashboards import build_dashboard_assets
from ctr_assets.defs.resources import storage_for, table_for, warehouse_for
from ctr_assets_tests.helpers import settings_for, write_sample


def materialize(settings, *names: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        build_assets(hourly_partitions(settings)) + build_dashboard_assets(), selection=list(names), instance=dg.DagsterInstance.ephemeral(),
        resources={"storage": storage_for(settings), "table": table_for(settings, storage_for(settings)),
                   "warehouse": warehouse_for(settings), "settings": settings},
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
