"""`ctr-assets` as a user runs it: real processes, real folders, a real S3 API."""

import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ctr_assets.cli import main
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.layout import flat_key
from ctr_assets.lake.storage import LocalStorage
from ctr_assets_tests.drivers import derived_state
from ctr_assets_tests.helpers import write_sample

CLI = [str(Path(sys.executable).parent / "ctr-assets")]


def cli_environment(env: dict | None = None) -> dict:
    """This environment without the caller's CTR_* settings and Dagster home, plus `env` (a None value unsets)."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("CTR_", "DAGSTER_HOME"))}
    environment.update({"CTR_FIRST_HOUR": "2026-01-01-00:00", **(env or {})})
    return {key: value for key, value in environment.items() if value is not None}


def ctr_assets(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], cwd=cwd, env=cli_environment(env), capture_output=True, text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single line a user error prints on standard error (exit code 2)."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("ctr-assets") and "Traceback" not in result.stdout
    return line


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    """A working directory whose ./ctr_data went through `simulate` and `run` (shared by the tests that only
    read it)."""
    folder = tmp_path_factory.mktemp("processed")
    assert ctr_assets("simulate", "--start", "2026-03-02T08", "--hours", "1", "--contacts-per-hour", "30",
                      cwd=folder).returncode == 0
    assert ctr_assets("run", cwd=folder).returncode == 0
    return folder


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
    table = sorted((tmp_path / "ctr_data" / "parquet" / "ctr").rglob("*"))
    before = {path: path.read_bytes() for path in table if path.is_file()}
    assert any(path.suffix == ".parquet" for path in before)

    second = ctr_assets("run", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 raw objects pending" in second.stdout and f"table:     {rows} rows" in second.stdout
    after = {path: path.read_bytes() for path in sorted((tmp_path / "ctr_data" / "parquet" / "ctr").rglob("*"))
             if path.is_file()}
    assert after == before

    status = ctr_assets("status", cwd=tmp_path)
    assert "(0 pending)" in status.stdout and f"table rows:   {rows}" in status.stdout
    query = ctr_assets("query", "SELECT count(DISTINCT contactid) AS n FROM ctr", cwd=tmp_path)
    assert str(rows) in query.stdout


def test_the_warehouse_file_serves_the_ctr_view_and_aggregates_to_any_duckdb_client(processed):
    import duckdb

    with duckdb.connect(str(processed / "ctr_data" / "ctr.duckdb"), read_only=True) as connection:
        per_agent = dict(connection.sql("SELECT agent_username, contacts FROM contacts_per_agent").fetchall())
        from_view = dict(connection.sql(
            "SELECT agent.username, count(*) FROM ctr WHERE agent.connectedtoagenttimestamp IS NOT NULL "
            "AND initiationmethod <> 'MONITOR' GROUP BY 1").fetchall())
    assert per_agent == from_view and per_agent


def test_a_bad_setting_is_one_clear_line_naming_it(tmp_path):
    result = ctr_assets("run", cwd=tmp_path, env={"CTR_ETL_CRON": "every hour"})
    assert one_line_error(result) == "ctr-assets: error: CTR_ETL_CRON: 'every hour' is not a valid cron expression"


@pytest.mark.parametrize("args, env, expected", [
    (["simulate", "--hours", "-1"], {}, "argument --hours: expected a whole number of at least 1, got '-1'"),
    (["simulate", "--contacts-per-hour", "0"], {}, "argument --contacts-per-hour: expected a whole number"),
    (["simulate", "--start", "yesterday"], {}, "argument --start: expected YYYY-MM-DDTHH (UTC)"),
    (["simulate", "--start", "2016-06-01T10"], {}, "--start: 2016-06-01T10 is before Amazon Connect launched"),
    (["simulate", "--stream", "a/../b"], {}, "argument --stream: expected a delivery stream name"),
    (["run", "--storage", "a-file"], {}, "a-file is a file, not a storage folder"),
    (["run", "--storage", ""], {}, "CTR_STORAGE_URL: empty"),
    (["run", "--verbose", "--bogus"], {}, "unrecognized arguments: --bogus"),
    (["query"], {}, "the following arguments are required: sql"),
    (["ui", "--port", "70000"], {}, "argument --port: expected a whole number from 1 to 65535"),
    (["ui"], {"CTR_DASHBOARD_URL": "file:///srv/reports/"}, "CTR_DASHBOARD_URL: 'file:///srv/reports/' is not an "
                                                           "http(s):// address"),
    (["run"], {"CTR_FIRST_HOUR": "2026-03-02 08:00"}, "CTR_FIRST_HOUR: '2026-03-02 08:00' is not an hour"),
    (["run"], {"CTR_DUCKDB_PATH": "a-file/ctr.duckdb"}, "a-file: File exists"),
])
def test_every_user_error_is_one_line_and_exit_code_2(tmp_path, args, env, expected):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "ctr_data" / "raw").mkdir(parents=True)
    assert expected in one_line_error(ctr_assets(*args, cwd=tmp_path, env=env))


@pytest.mark.parametrize("sql, expected", [
    ("SELEC 1", 'ctr-assets: error: SQL: Parser Error: syntax error at or near "SELEC"'),
    ("SELECT * FROM no_such_table", "ctr-assets: error: SQL: Catalog Error: Table with name no_such_table does not exist!"),
])
def test_sql_errors_in_query_are_one_line(processed, sql, expected):
    assert one_line_error(ctr_assets("query", sql, cwd=processed)).startswith(expected)


def test_a_storage_without_raw_is_refused_unless_created_and_nothing_is_created_by_accident(tmp_path):
    for command in (["run"], ["status"], ["query", "SELECT 1"], ["quarantine", "list"]):
        line = one_line_error(ctr_assets(*command, "--storage", "typo", cwd=tmp_path))
        assert f"CTR_STORAGE_URL: {tmp_path / 'typo'} has no raw/ folder" in line and "--create" in line
    assert not (tmp_path / "typo").exists()

    created = ctr_assets("run", "--storage", "new", "--create", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "0 raw objects pending" in created.stdout and (tmp_path / "new" / "raw").is_dir()
    assert ctr_assets("status", "--storage", "new", cwd=tmp_path).returncode == 0


def test_hours_older_than_the_first_hour_setting_are_processed_without_knowing_it(tmp_path):
    """Connect exists since 2017; the partitions start where the data does (CTR_FIRST_HOUR is left unset)."""
    unset = {"CTR_FIRST_HOUR": None}
    assert ctr_assets("simulate", "--start", "2019-05-01T10", "--hours", "1", "--contacts-per-hour", "20",
                      cwd=tmp_path, env=unset).returncode == 0
    result = ctr_assets("run", cwd=tmp_path, env=unset)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hours 2019-05-01-1" in result.stdout and "FAILED" not in result.stderr
    first = ctr_assets("query", "SELECT min(_arrived_at)::DATE AS d FROM ctr", cwd=tmp_path, env=unset)
    assert "2019-05-01" in first.stdout


@pytest.mark.parametrize("hour, expected", [
    (datetime(2016, 12, 31, 23, tzinfo=timezone.utc), "this arrival hour is before Amazon Connect launched (2017)"),
    (datetime.now(timezone.utc) + timedelta(hours=2), "this arrival hour is in the future"),
])
def test_an_arrival_hour_no_partition_can_hold_is_one_line_naming_its_folder(tmp_path, hour, expected):
    storage = LocalStorage(root=str(tmp_path / "ctr_data"))
    write_sample(storage, hours=1, contacts_per_hour=5, batch_seconds=3600)
    folder = f"raw/{hour:%Y/%m/%d/%H}/"
    storage.write(f"{folder}ctr-stream-1-{hour:%Y-%m-%d-%H-%M-%S}-misplaced", b"{}")
    line = one_line_error(ctr_assets("run", cwd=tmp_path))
    assert line.startswith(f"ctr-assets: error: {tmp_path / 'ctr_data'}/{folder}: {expected}")
    assert line.endswith("move its objects into the folder of the hour Firehose delivered them in")


def test_an_interrupt_is_one_line_and_exit_code_130(tmp_path):
    process = subprocess.Popen([*CLI, "simulate", "--hours", "48", "--contacts-per-hour", "400"], cwd=tmp_path,
                               env=cli_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "objects written" in process.stderr.readline()
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=60)
    assert process.returncode == 130 and errors.strip().splitlines() == ["ctr-assets: interrupted"]


def test_ctrl_c_during_a_run_stops_it_cleanly_and_the_next_run_finishes_the_work(tmp_path):
    """Ctrl-C reaches the whole process group, flatten workers included: the run says it was interrupted
    (exit 130, not "failed"), the workers finish the objects they hold and exit, nothing is left staged,
    and the next run ends where an uninterrupted one does."""
    write_sample(LocalStorage(root=str(tmp_path / "ctr_data")), hours=6, contacts_per_hour=1000, batch_seconds=60)
    shutil.copytree(tmp_path / "ctr_data", tmp_path / "clean" / "ctr_data")
    process = subprocess.Popen([*CLI, "run"], cwd=tmp_path, env=cli_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in process.stdout:
        if line.lstrip().startswith("flattened 1/"):
            os.killpg(process.pid, signal.SIGINT)  # as a terminal does: to every process of the group
            break
    _, errors = process.communicate(timeout=120)

    assert process.returncode == 130, errors
    # The last line is ours; Dagster's compute-log helpers print their own KeyboardInterrupt before it.
    assert errors.strip().splitlines()[-1] == "ctr-assets: interrupted"
    deadline = time.monotonic() + 30
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group_alive(process.pid), "a worker outlived the interrupted run"
    assert list((tmp_path / "ctr_data").rglob(".tmp-*")) == []
    interrupted = LocalStorage(root=str(tmp_path / "ctr_data"))
    assert len(list(interrupted.list("flatfiles/"))) < len(list(interrupted.list("raw/"))), "the run was not stopped"

    assert ctr_assets("run", cwd=tmp_path).returncode == 0
    assert ctr_assets("run", cwd=tmp_path / "clean").returncode == 0
    clean = LocalStorage(root=str(tmp_path / "clean" / "ctr_data"))
    assert derived_state(interrupted) == derived_state(clean)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_bucket_flag_counts_like_the_setting_and_a_folder_flag_says_what_conflicts(moto, tmp_path):
    bucket = f"s3://{moto.new_bucket()}/contact-centre"
    queue = moto.client("sqs").create_queue(QueueName=f"q-{tmp_path.name[-8:]}")["QueueUrl"]
    env = {"CTR_S3_ENDPOINT_URL": moto.url, "CTR_GLUE_DATABASE": f"connect_{tmp_path.name[-8:]}".lower(),
           "CTR_SQS_QUEUE_URL": queue}
    assert ctr_assets("simulate", "--storage", bucket, "--start", "2026-03-02T08", "--hours", "1",
                      "--contacts-per-hour", "10", cwd=tmp_path, env=env).returncode == 0
    ran = ctr_assets("run", "--storage", bucket, cwd=tmp_path, env=env)
    assert ran.returncode == 0, ran.stderr
    assert int(ran.stdout.split("table:")[1].split()[0]) > 0

    (tmp_path / "folder" / "raw").mkdir(parents=True)
    line = one_line_error(ctr_assets("run", "--storage", "folder", cwd=tmp_path, env=env))
    assert line.startswith("ctr-assets: error: CTR_SQS_QUEUE_URL: ") and "'folder'" in line


def test_every_command_works_on_a_bucket(s3_settings, monkeypatch, capsys):
    """In this process (the commands above already run as real processes): CTR_S3_ENDPOINT_URL points at moto."""
    bucket = s3_settings.storage_url
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    def ctr_assets_here(*args: str) -> str:
        assert main(list(args)) == 0, capsys.readouterr().err
        return capsys.readouterr().out

    simulated = ctr_assets_here("simulate", "--storage", bucket, "--start", "2026-03-02T08", "--hours", "1",
                                "--contacts-per-hour", "20")
    run = ctr_assets_here("run", "--storage", bucket)
    rows = int(run.split("table:")[1].split()[0])
    status = ctr_assets_here("status", "--storage", bucket)
    query = ctr_assets_here("query", "--storage", bucket, "SELECT count(DISTINCT contactid) AS n FROM ctr")

    assert f"under {bucket}/raw/" in simulated
    assert rows > 0 and f"dashboard: {bucket}/dashboards/index.html" in run
    assert "(0 pending)" in status and f"table rows:   {rows}" in status
    assert str(rows) in query


def test_a_missing_bucket_is_one_clear_line(moto, monkeypatch, capsys):
    monkeypatch.setenv("CTR_S3_ENDPOINT_URL", moto.url)
    monkeypatch.setenv("CTR_GLUE_DATABASE", "connect")
    assert main(["status", "--storage", "s3://no-such-bucket/ctr"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "ctr-assets: error: CTR_STORAGE_URL: bucket 'no-such-bucket' does not exist: check the name, AWS_REGION "
        "and CTR_S3_ENDPOINT_URL"]


def test_a_bucket_prefix_without_raw_objects_or_table_is_refused_unless_created(s3_settings, monkeypatch, capsys):
    typo = s3_settings.storage_url + "-typo"
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["run", "--storage", typo]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"ctr-assets: error: CTR_STORAGE_URL: {typo}/raw/ holds no objects and {typo} no table: "
                    "check --storage (or CTR_STORAGE_URL), or pass --create to start there")
    assert main(["run", "--storage", typo, "--create"]) == 0


def test_a_permission_missing_inside_a_dagster_run_is_one_line_naming_it(s3_settings, moto, monkeypatch, capsys):
    storage = storage_for(s3_settings)
    write_sample(storage, hours=1, contacts_per_hour=5, batch_seconds=3600)
    reader = moto.user_allowed("s3:ListBucket", "s3:GetObject", "glue:*")  # may look, may not write flatfiles
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", reader["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", reader["aws_secret_access_key"])
    monkeypatch.delenv("DAGSTER_HOME", raising=False)

    with moto.enforcing_iam():
        code = main(["run"])

    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert code == 2
    assert line.startswith("ctr-assets: error: AWS credentials (") and "needs s3:PutObject" in line
    assert f"{storage.url}/flatfiles/" in line


def test_retention_is_a_lifecycle_rule_on_a_bucket_and_a_cleanup_on_a_folder(s3_settings, moto, tmp_path, capsys,
                                                                             monkeypatch):
    assert main(["retention", "--hours", "48"]) == 0  # CTR_STORAGE_URL names the bucket
    monkeypatch.delenv("CTR_GLUE_DATABASE")  # a folder's table has its catalog inside it
    (rule,) = moto.client("s3").get_bucket_lifecycle_configuration(Bucket=s3_settings.s3_location[0])["Rules"]
    assert rule["Filter"] == {"Prefix": "contact-centre/flatfiles/"} and rule["Expiration"] == {"Days": 2}

    folder = tmp_path / "folder"
    (folder / "flatfiles").mkdir(parents=True)
    (folder / "flatfiles" / "2026030208x").write_text("{}\n")
    assert main(["retention", "--storage", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "2 day(s)" in out[0] and out[1].startswith("deleted 0 objects older than 24 h")


@pytest.fixture(scope="module")
def backlog(tmp_path_factory) -> Path:
    """A storage holding a backlog of a few thousand contacts in five arrival hours, never processed: tests
    copy it."""
    folder = tmp_path_factory.mktemp("backlog")
    assert ctr_assets("simulate", "--start", "2026-03-02T08", "--hours", "2", "--contacts-per-hour", "1500",
                      cwd=folder).returncode == 0
    return folder / "ctr_data"


def test_a_long_run_shows_its_progress_as_it_goes_when_piped(backlog, tmp_path):
    shutil.copytree(backlog, tmp_path / "ctr_data")
    process = subprocess.Popen([*CLI, "run"], cwd=tmp_path, env=cli_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines = []  # (line, whether the process was still running when it was read)
    for line in process.stdout:
        lines.append((line.rstrip("\n"), process.poll() is None))
    assert process.wait(timeout=300) == 0, process.stderr.read()

    progress = [(re.fullmatch(FLATTEN_PROGRESS, line), running) for line, running in lines
                if "flattened" in line and "objects" in line]
    assert len(progress) >= 2 and all(match for match, _ in progress), lines
    assert all(running for _, running in progress)  # read while the run went on, not printed at exit
    counts = [tuple(map(int, match.groups())) for match, _ in progress]
    for done, total, records, written, quarantined in counts:
        assert written + quarantined == records and 0 < done <= total
    assert [count[0] for count in counts] == sorted(count[0] for count in counts)
    done, total, records, written, quarantined = counts[-1]
    assert re.search(r", [\d,]+ records/s, [\d.]+ s$", progress[-1][0].group(0))
    assert done == total == len([path for path in (backlog / "raw").rglob("*") if path.is_file()])
    summary = next(line for line, _ in lines if line.startswith("records:"))
    assert summary.startswith(f"records:   {records} in, {written} written, {quarantined} quarantined")
    steps = [line.strip() for line, running in lines if running and line.strip().startswith(("ctr:", "flattened:"))]
    assert steps[:2] == ["flattened: started", next(s for s in steps if s.startswith("flattened: done in "))]
    assert steps[2] == "ctr: started" and steps[3].startswith("ctr: done in ")


def test_on_a_terminal_the_flatten_progress_is_one_live_line(backlog, tmp_path):
    shutil.copytree(backlog, tmp_path / "ctr_data")
    controller, terminal = pty.openpty()
    process = subprocess.Popen([*CLI, "run"], cwd=tmp_path, env=cli_environment(), stdout=terminal,
                               stderr=subprocess.PIPE)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=300) == 0, process.stderr.read()

    text = output.decode()
    objects = len([path for path in (backlog / "raw").rglob("*") if path.is_file()])
    assert "flattening: 100%|" in text and f"{objects}/{objects} [" in text and " objects/s" in text
    assert "\r" in text.split("flattened: started")[1].split("flattened: done")[0]  # redrawn in place
    assert not re.search(r"^ +flattened \d+/\d+ objects", text, re.M)  # no plain lines on a terminal


FLATTEN_PROGRESS = (r"    flattened (\d+)/(\d+) objects: (\d+) records \((\d+) written, (\d+) quarantined\)"
                    r"(?:, [\d,]+ records/s, (?:about \d+ s left|[\d.]+ s))?")


def test_a_merge_out_of_memory_fails_the_run_in_one_line_saying_what_to_change(backlog, tmp_path):
    shutil.copytree(backlog, tmp_path / "ctr_data")
    spill = tmp_path / "tmp"
    spill.mkdir()
    (spill / "ctr_assets_duckdb").write_text("")  # DuckDB cannot spill: 64 MB is all the merge has
    failed = ctr_assets("run", cwd=tmp_path, env={"CTR_DUCKDB_MEMORY_MB": "64", "TMPDIR": str(spill)})

    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("ctr-assets: run failed in step ctr: OutOfMemoryException: ")
    assert line.endswith(f"; raise CTR_DUCKDB_MEMORY_MB (now 64) or free disk for DuckDB's temp folder "
                         f"({spill}/ctr_assets_duckdb), then run again")
    assert not re.search(r"^(table|records|storage):", failed.stdout, re.M), failed.stdout
    assert "rows inserted" not in failed.stdout and "ctr: done" not in failed.stdout

    rerun = ctr_assets("run", cwd=tmp_path)
    assert rerun.returncode == 0 and re.search(r"^table: +\d+ rows", rerun.stdout, re.M), rerun.stderr


def test_a_failed_step_names_itself_and_the_dagster_run_that_tells_the_rest(tmp_path):
    assert ctr_assets("simulate", "--start", "2026-03-02T08", "--hours", "1", "--contacts-per-hour", "20",
                      cwd=tmp_path).returncode == 0
    storage = LocalStorage(root=str(tmp_path / "ctr_data"))
    raw = next(item.key for item in storage.list("raw/"))
    # A flatfile the flatten step trusts (it exists) and the merge cannot read: the ctr step fails.
    storage.write(flat_key(raw), b'{"contactid": "a", "initiationtimestamp": "not a time"}\n')

    failed = ctr_assets("run", cwd=tmp_path)

    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()
    match = re.fullmatch(r"ctr-assets: run failed in step ctr: InvalidInputException: .*\"not a time\".*; "
                         r"the Dagster run ([0-9a-f-]{36}) has the details \(`ctr-assets ui`\); fix the cause, "
                         r"then run again", line)
    assert match, line
    assert not re.search(r"^(table|records):", failed.stdout, re.M)
    status = ctr_assets("query", "SELECT 1", cwd=tmp_path)  # the table was never written
    assert status.returncode == 1 and "no data yet" in status.stderr
    instance_runs = subprocess.run(
        [sys.executable, "-c", "import dagster as dg, sys; i = dg.DagsterInstance.from_config(sys.argv[1]); "
         "print(i.get_run_by_id(sys.argv[2]).status.value)", str(tmp_path / ".dagster_home"), match[1]],
        capture_output=True, text=True)
    assert instance_runs.stdout.strip() == "FAILURE", instance_runs.stderr
