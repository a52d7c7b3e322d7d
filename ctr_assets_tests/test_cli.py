"""`ctr-assets` as a user runs it: real processes, real folders."""

import os
import subprocess
import sys
from pathlib import Path

CLI = [str(Path(sys.executable).parent / "ctr-assets")]


def cli_environment(env: dict | None = None) -> dict:
    """This environment without the caller's CTR_* settings and Dagster home, plus `env`."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("CTR_", "DAGSTER_HOME"))}
    environment.update({"CTR_FIRST_HOUR": "2026-01-01-00:00", **(env or {})})
    return environment


def ctr_assets(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=cli_environment(env), capture_output=True, text=True, timeout=300)


def test_simulate_then_run_builds_the_table_and_dashboard_and_a_rerun_changes_nothing(tmp_path):
    simulated = ctr_assets("simulate", "--start", "2026-03-02T08", "--hours", "2", "--contacts-per-hour", "30",
                           cwd=tmp_path)
    assert simulated.returncode == 0, simulated.stderr
    assert "Firehose objects" in simulated.stdout and (tmp_path / "ctr_data" / "raw" / "2026").is_dir()

    first = ctr_assets("run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    rows = int(first.stdout.split("table:")[1].split()[0])
    assert rows > 0
    assert (tmp_path / "ctr_data" / "dashboards" / "index.html").is_file()
    assert (tmp_path / "ctr_data" / "ctr.duckdb").is_file()
    table = sorted((tmp_path / "ctr_data" / "parquet" / "ctr").glob("dt=*/ctr.parquet"))
    before = [path.read_bytes() for path in table]

    second = ctr_assets("run", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 raw objects pending" in second.stdout and f"table:     {rows} rows" in second.stdout
    assert [path.read_bytes() for path in table] == before

    status = ctr_assets("status", cwd=tmp_path)
    assert "(0 pending)" in status.stdout and f"table rows:   {rows}" in status.stdout
    query = ctr_assets("query", "SELECT count(DISTINCT contactid) AS n FROM ctr", cwd=tmp_path)
    assert str(rows) in query.stdout


def test_the_warehouse_file_serves_the_ctr_view_and_aggregates_to_any_duckdb_client(tmp_path):
    import duckdb

    ctr_assets("simulate", "--start", "2026-03-02T08", "--hours", "1", "--contacts-per-hour", "30", cwd=tmp_path)
    assert ctr_assets("run", cwd=tmp_path).returncode == 0
    with duckdb.connect(str(tmp_path / "ctr_data" / "ctr.duckdb"), read_only=True) as connection:
        per_agent = dict(connection.sql("SELECT agent_username, contacts FROM contacts_per_agent").fetchall())
        from_view = dict(connection.sql(
            "SELECT agent.username, count(*) FROM ctr WHERE agent.username IS NOT NULL GROUP BY 1").fetchall())
    assert per_agent == from_view and per_agent


def test_a_bad_setting_is_one_clear_line_naming_it(tmp_path):
    result = ctr_assets("run", cwd=tmp_path, env={"CTR_ETL_CRON": "every hour"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["ctr-assets: error: CTR_ETL_CRON: 'every hour' is not a valid cron expression"]
