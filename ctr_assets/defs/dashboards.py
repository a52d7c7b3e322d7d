"""The dashboard assets: one asset per aggregate (all built in one step, with the queue alerts as its checks)
and the HTML page over them."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from ctr_assets.defs.assets import CTR
from ctr_assets.lake.iceberg import TableLocation
from ctr_assets.lake.layout import DASHBOARDS
from ctr_assets.lake.storage import Storage
from ctr_assets.metrics import dashboard
from ctr_assets.metrics.alerts import interval_label, latest_interval
from ctr_assets.metrics.warehouse import (
    AGGREGATES,
    build_aggregate,
    fetch_table,
    markdown_table,
    metric_sql,
    prepare_metrics,
    refresh_ctr_view,
)
from ctr_assets.settings import CtrSettings

DASHBOARD = dg.AssetKey("dashboard")
DASHBOARD_PAGE = "index.html"
DASHBOARD_FILE = f"{DASHBOARDS}{DASHBOARD_PAGE}"
PRESIGNED_SECONDS = 7 * 24 * 3600  # the longest a SigV4 presigned link can be valid
QUEUE_METRICS = dg.AssetKey("queue_interval_metrics")
# The alerts, as warnings on queue_interval_metrics: where the data is, in the UI and `ctr-assets status`.
ALERTS = {
    "service_level": "A queue's service level in the latest complete interval is under CTR_SERVICE_LEVEL_TARGET, "
                     "out of at least CTR_ALERT_MIN_QUEUED contacts queued (a warning).",
    "abandonment": "A queue's abandonment rate in the latest complete interval is over CTR_ABANDONMENT_RATE_LIMIT, "
                   "out of at least CTR_ALERT_MIN_QUEUED contacts queued (a warning).",
}


def build_dashboard_assets() -> list:
    return [_aggregates_asset(), dashboard_page]


def _aggregates_asset() -> dg.AssetsDefinition:
    """Every dashboard aggregate is its own asset, all computed in one step: one warehouse connection and
    one refresh of the views serve them all (and Dagster resolves the ctr input over its partitions once)."""
    specs = [
        dg.AssetSpec(name, deps=[CTR], group_name="dashboards", kinds={"duckdb", "parquet"},
                     description=_aggregate_description(name))
        for name in AGGREGATES
    ]

    checks = [dg.AssetCheckSpec(f"{kind}_alert", asset=QUEUE_METRICS, description=description)
              for kind, description in ALERTS.items()]

    @dg.multi_asset(name="dashboard_aggregates", specs=specs, check_specs=checks, can_subset=True)
    def aggregates(context: dg.AssetExecutionContext, storage: Storage, table: TableLocation, warehouse: DuckDBResource,
                   settings: CtrSettings):
        names = [name for name in AGGREGATES if dg.AssetKey(name) in context.selected_asset_keys]
        alerts = [kind for kind in ALERTS
                  if dg.AssetCheckKey(QUEUE_METRICS, f"{kind}_alert") in context.selected_asset_check_keys]
        with warehouse.get_connection() as connection:
            if not refresh_ctr_view(connection, storage, table):
                raise dg.Failure(f"{', '.join(names)}: the ctr table has no data yet; materialize ctr first")
            prepare_metrics(connection, settings)
            for name in names:
                rows = build_aggregate(connection, storage, name)
                columns, data = fetch_table(connection, f"SELECT * FROM {name}")
                yield dg.MaterializeResult(
                    asset_key=name,
                    metadata={
                        "dagster/row_count": rows,
                        "dagster/table_name": name,
                        "preview": dg.MetadataValue.md(markdown_table(columns, data)),
                        "path": dg.MetadataValue.path(storage.uri(f"{DASHBOARDS}{name}.parquet")),
                    },
                )
            queues = latest_interval(connection) if alerts else []
        for kind in alerts:
            yield _alert(kind, queues)

    return aggregates


def _alert(kind: str, queues: list) -> dg.AssetCheckResult:
    """The queues of the latest complete interval that cross the threshold of `kind`, as a warning listing them."""
    crossing = [queue.describe(kind) for queue in queues if getattr(queue, f"{kind}_alert")]
    return dg.AssetCheckResult(
        asset_key=QUEUE_METRICS,
        check_name=f"{kind}_alert",
        passed=not crossing,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(crossing) if crossing else f"no queue crosses it in {interval_label(queues)}",
        metadata={"interval": interval_label(queues), "queues alerting": len(crossing),
                  "queues judged": sum(queue.contacts_queued >= queue.alert_min_queued for queue in queues),
                  "alerts": dg.MetadataValue.md("\n".join(f"- {line}" for line in crossing) or "none")},
    )


@dg.asset(key=DASHBOARD, deps=[dg.AssetKey(name) for name in AGGREGATES], group_name="dashboards", kinds={"html"})
def dashboard_page(storage: Storage, warehouse: DuckDBResource, settings: CtrSettings):
    """One self-contained HTML page (no network needed to view it) under dashboards/index.html; its `url`
    opens it from the UI (CTR_DASHBOARD_URL)."""
    with warehouse.get_connection() as connection:
        page = dashboard.render_dashboard(connection).encode()
    storage.write(DASHBOARD_FILE, page)
    location = storage.uri(DASHBOARD_FILE)
    return dg.MaterializeResult(
        metadata={"url": dg.MetadataValue.url(dashboard_link(settings, storage)),
                  "path": dg.MetadataValue.path(location), "bytes": len(page)}
    )


def dashboard_link(settings: CtrSettings, storage: Storage) -> str:
    """An http(s) link to the page, since a browser does not open a file:// link from the UI's http page:
    under CTR_DASHBOARD_URL, else the folder `ctr-assets ui` serves, else (a bucket) a presigned link."""
    folder = settings.dashboard_folder_url
    if folder is not None:
        return folder + DASHBOARD_PAGE
    return storage.presigned_url(DASHBOARD_FILE, PRESIGNED_SECONDS, "text/html; charset=utf-8")


def _aggregate_description(name: str) -> str:
    """The comment lines of the aggregate's SQL: the metric definitions, as the asset's description."""
    return " ".join(
        line.removeprefix("--").strip() for line in metric_sql(name).splitlines() if line.startswith("--")
    )

