"""`ctr-assets`: simulate Firehose deliveries, run the pipeline, look at the result.

Every mistake a user can make on the command line (an argument, a setting, a storage, a path, the SQL of
`query`) ends with one line on standard error and exit code 2, never a stack trace.
"""

import argparse
import os
import re
import sys
from collections import Counter
from contextlib import closing
from datetime import datetime, timedelta, timezone

from dotenv import load_dotenv

from ctr_assets.lake.layout import FLATFILES, QUARANTINE, RAW, floor_hour
from ctr_assets.lake.storage import StorageError
from ctr_assets.settings import (
    DEFAULT_STORAGE_URL,
    FIRST_POSSIBLE_HOUR,
    CtrSettings,
    SettingError,
)

# Firehose's rule for delivery stream names, which become part of every object key.
STREAM_NAME = re.compile(r"[a-zA-Z0-9_.-]{1,64}")


def main(argv: list[str] | None = None) -> int:
    load_dotenv()
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except (SettingError, StorageError) as error:
        return _error(str(error))
    except OSError as error:  # a path given by a flag or a setting: missing, a file, not writable
        return _error(f"{error.filename}: {error.strerror}" if error.filename else str(error))
    except KeyboardInterrupt:
        print("ctr-assets: interrupted", file=sys.stderr)
        return 130


def _error(message: str) -> int:
    print(f"ctr-assets: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


def simulate(args: argparse.Namespace) -> int:
    """Write sample Firehose objects under raw/ (the original `sampledata` option)."""
    from ctr_assets.api import open_storage
    from ctr_assets.sample import write_firehose_objects

    now = datetime.now(timezone.utc)
    # The last complete hours by default; each hour's contacts depend only on the seed and the hour, so another
    # range adds other contacts and the same range writes the same objects again.
    start = args.start or floor_hour(now) - timedelta(hours=args.hours)
    if start > now:
        raise SettingError(f"--start: {start:%Y-%m-%dT%H} is in the future (UTC now: {now:%Y-%m-%dT%H:%M})")
    if start < FIRST_POSSIBLE_HOUR:
        raise SettingError(f"--start: {start:%Y-%m-%dT%H} is before Amazon Connect launched (2017)")
    storage = open_storage(CtrSettings.from_env(storage_url=args.storage), create=True)
    written = [0]

    def write(key: str, data: bytes) -> None:
        storage.write(key, data)
        written[0] += 1
        if written[0] % 100 == 0:
            print(f"  {written[0]} objects written", file=sys.stderr, flush=True)

    stats = write_firehose_objects(write, start, args.hours, args.contacts_per_hour, seed=args.seed, stream=args.stream,
                                   until=now)
    later = f"; {stats.held_back} records would arrive after now and were not written" if stats.held_back else ""
    print(f"wrote {stats.objects} Firehose objects with {stats.records} records ({stats.contacts} contacts) "
          f"under {storage.uri(RAW)}, hours from {start:%Y-%m-%dT%H}:00Z{later}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Process everything pending through Dagster, in this process."""
    from ctr_assets.api import run_pipeline

    with _Progress() as progress:
        summary = run_pipeline(args.storage, verbose=args.verbose, create=args.create, say=progress.say,
                               show=progress.show)
    return _report(summary)


class _Progress:
    """What a run is doing while it runs: on a terminal, the flatten step as one live line (tqdm: objects,
    records, rate, time left); otherwise plain lines, each flushed as it happens, so a pipe or a log file
    sees them then, not all at exit."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.bar = None

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exception) -> None:
        self._close_bar()

    def say(self, line: str) -> None:
        self._close_bar()
        print(line, file=self.stream, flush=True)

    def show(self, counts: dict) -> None:
        if not self.live:
            print(_progress_line(counts), file=self.stream, flush=True)
            return
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=counts["objects_total"], unit=" objects", desc="    flattening", file=self.stream,
                            dynamic_ncols=True, leave=True)
        self.bar.set_postfix_str(f"{counts['records_in']} records", refresh=False)
        self.bar.update(counts["objects_done"] - self.bar.n)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress_line(counts: dict) -> str:
    """One flatten progress line: objects done of all, records (written + quarantined), then the rate and the
    time left once there is a second to judge them by (the first objects also pay for starting the workers)."""
    done, total, seconds = counts["objects_done"], counts["objects_total"], counts["seconds"]
    line = (f"    flattened {done}/{total} objects: {counts['records_in']} records ({counts['records_written']} "
            f"written, {counts['records_quarantined']} quarantined)")
    if done == total:
        return f"{line}, {counts['records_in'] / max(seconds, 1e-3):,.0f} records/s, {seconds:.1f} s"
    if seconds < 1:
        return line
    return f"{line}, {counts['records_in'] / seconds:,.0f} records/s, about {seconds / done * (total - done):.0f} s left"


def _report(summary) -> int:
    """Print what the runs did (their records' counts); when a step failed, instead one line saying which step,
    why and what to do, on standard error, and 1 (a failed run must never look like a finished one)."""
    for check in summary.failed_checks:
        print(f"FAILED check {check}", file=sys.stderr)
    if summary.failed_steps:
        for failure in summary.failed_steps:
            step = f" in step {failure.step}" if failure.step else ""
            print(f"ctr-assets: run failed{step}: {failure.reason}; {failure.remedy}", file=sys.stderr)
        return 1
    flattened, merged, replayed = summary.flattened, summary.merged, summary.replayed
    print(f"storage:   {summary.storage_url}")
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(summary.quarantined_by_reason.items()))
    if replayed:
        print(f"replayed:  {replayed.get('replayed', 0)} of {replayed.get('examined', 0)} quarantined items, "
              f"{replayed.get('records_written', 0)} records; still quarantined: {reasons or 'none'}")
    else:
        print(f"records:   {flattened.get('records_in', 0)} in, {flattened.get('records_written', 0)} written, "
              f"{flattened.get('records_quarantined', 0)} quarantined{f' ({reasons})' if reasons else ''}, "
              f"{flattened.get('key_collisions', 0)} key collisions")
    print(f"table:     {summary.table_rows} rows ({merged.get('rows_inserted', 0)} inserted, "
          f"{merged.get('rows_updated', 0)} updated, {merged.get('rows_moved', 0)} moved, "
          f"{merged.get('duplicates_in_batch', 0)} duplicates collapsed)")
    if summary.dashboard:
        print(f"dashboard: {summary.dashboard}")
    return 0 if summary.ok else 1


def status(args: argparse.Namespace) -> int:
    """Counts of what is where: raw, pending, quarantined, table rows and snapshot; and the queue alerts of the
    latest complete interval."""
    from ctr_assets.api import open_storage
    from ctr_assets.defs.resources import table_for
    from ctr_assets.lake.iceberg import load_table
    from ctr_assets.lake.pipeline import pending_raw_keys, set_aside_objects
    from ctr_assets.metrics.alerts import interval_label, latest_interval
    from ctr_assets.metrics.warehouse import (
        read_aggregate,
        record_settings,
        scratch_connection,
    )

    settings = CtrSettings.from_env(storage_url=args.storage)
    storage = open_storage(settings)
    table = table_for(settings, storage)
    raw = sum(1 for _ in storage.list(RAW))
    pending = sum(len(keys) for keys in pending_raw_keys(storage, table).values())
    quarantined = sum(storage.read(item.key).count(b"\n") for item in storage.list(QUARANTINE))
    current = load_table(table)
    snapshot = current.current_snapshot() if current is not None else None
    rows = int(snapshot.summary["total-records"]) if snapshot and snapshot.summary else 0
    alerts = ["no dashboard tables yet: `ctr-assets run` builds them"]
    with closing(scratch_connection(settings.duckdb_memory_mb)) as connection:
        if read_aggregate(connection, storage, "queue_interval_metrics"):
            # The thresholds of the current settings, on the interval the last build counted.
            record_settings(connection, settings)
            queues = latest_interval(connection)
            alerts = [queue.describe(kind) for queue in queues for kind in ("service_level", "abandonment")
                      if getattr(queue, f"{kind}_alert")]
            alerts = [f"{interval_label(queues)}: {len(alerts) or 'no'} queue alert{'' if len(alerts) == 1 else 's'}",
                      *(f"  WARNING {alert}" for alert in alerts)]
    print(f"storage:      {storage.url}\nraw objects:  {raw} ({pending} pending)\n"
          f"quarantined:  {quarantined} items\n"
          f"table:        {table.display}, snapshot {snapshot.snapshot_id if snapshot else 'none'}\n"
          f"table rows:   {rows}\nalerts:       " + "\n".join(alerts))
    aside = set_aside_objects(storage)
    if aside:
        print(f"set aside:    {len(aside)} raw objects the storage refuses to read (never read, not pending)\n"
              + "\n".join(f"  {key}: {reason}" for key, reason in aside.items()))
    return 0


def query(args: argparse.Namespace) -> int:
    """Run SQL against the `ctr` view (and the aggregate tables, once built), as of now or an earlier snapshot."""
    import duckdb

    from ctr_assets.api import open_storage
    from ctr_assets.defs.resources import table_for
    from ctr_assets.lake.iceberg import load_table, snapshot_as_of
    from ctr_assets.metrics.warehouse import refresh_ctr_view, scratch_connection

    settings = CtrSettings.from_env(storage_url=args.storage)
    storage = open_storage(settings)
    table = table_for(settings, storage)
    try:
        snapshot_id = snapshot_as_of(load_table(table), args.as_of) if args.as_of else None
    except LookupError as error:
        raise SettingError(f"--as-of: {error}") from None
    with closing(scratch_connection(settings.duckdb_memory_mb)) as connection:
        if not refresh_ctr_view(connection, storage, table, snapshot_id):
            print("the ctr table has no data yet: run `ctr-assets run` first", file=sys.stderr)
            return 1
        try:
            relation = connection.sql(args.sql)
            if relation is not None:  # a statement without a result (SET, CREATE ...) has nothing to show
                relation.show(max_rows=args.limit)
        except duckdb.Error as error:
            raise SettingError(f"SQL: {_sql_error(error)}") from None
    return 0


def _sql_error(error: Exception) -> str:
    """DuckDB's message without the lines that point at the SQL's position (the user sees their SQL)."""
    lines = [line.strip() for line in str(error).splitlines()]
    return " ".join(line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"})


def quarantine_list(args: argparse.Namespace) -> int:
    """What is in quarantine: counts by reason and by raw object, then the items themselves."""
    from ctr_assets.api import open_storage
    from ctr_assets.lake.quarantine import quarantined_items

    items = quarantined_items(open_storage(CtrSettings.from_env(storage_url=args.storage)), args.reason)
    sources = Counter(item.source_key for item in items)
    print(f"{len(items)} quarantined items from {len(sources)} raw objects" + (f" (reason {args.reason})" if args.reason else ""))
    if not items:
        return 0
    print("by reason:")
    for reason, count in Counter(item.reason for item in items).most_common():
        print(f"  {count:>7}  {reason}")
    print("by raw object:")
    for source, count in sources.most_common():
        print(f"  {count:>7}  {source}")
    print("items (raw object @ byte offset +length: reason: detail):")
    for item in items[: args.limit]:
        entry = item.entry
        print(f"  {item.source_key} @{entry['offset']} +{entry['length']}: {item.reason}: {entry['detail'][:100]}")
    if len(items) > args.limit:
        print(f"  ... {len(items) - args.limit} more (--limit)")
    return 0


def quarantine_replay(args: argparse.Namespace) -> int:
    """Replay quarantined items through the current record logic; the ones that now pass go to the table."""
    from ctr_assets.api import replay_quarantine

    with _Progress() as progress:
        summary = replay_quarantine(args.storage, args.reason, verbose=args.verbose, say=progress.say,
                                    show=progress.show)
    return _report(summary)


def migrate(args: argparse.Namespace) -> int:
    """Turn a table of the earlier layout (parquet/ctr/dt=YYYY-MM-DD/ctr.parquet) into the Iceberg table."""
    from ctr_assets.api import open_storage
    from ctr_assets.defs.resources import table_for
    from ctr_assets.lake.migrate import migrate_partition_files
    from ctr_assets.metrics.warehouse import scratch_connection

    settings = CtrSettings.from_env(storage_url=args.storage)
    storage = open_storage(settings)
    with closing(scratch_connection(settings.duckdb_memory_mb)) as connection:
        report = migrate_partition_files(connection, storage, table_for(settings, storage))
    print(report.describe())
    return 0


def ui(args: argparse.Namespace) -> int:
    """Start the Dagster UI on the instance the CLI and the API use, bound to this machine only; and, when the
    dashboard link is an address on this machine (on a folder, by default), serve dashboards/ there, so the
    link in the UI opens the page. SIGTERM or Ctrl-C stops both."""
    import signal
    import subprocess
    import threading
    from urllib.parse import urlsplit

    from ctr_assets.api import persistent_instance
    from ctr_assets.lake.layout import DASHBOARDS

    settings = CtrSettings.from_env(storage_url=args.storage)
    home = persistent_instance().root_directory
    environment = {**os.environ, "DAGSTER_HOME": home, "CTR_STORAGE_URL": settings.storage_url}
    address = urlsplit(settings.dashboard_folder_url or "")
    server = None
    if (not settings.is_s3 and address.scheme == "http" and address.hostname in ("127.0.0.1", "localhost")
            and address.path == "/"):
        server = _folder_server(os.path.join(settings.storage_url, DASHBOARDS), address.port or 80)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        print(f"dashboards/ on {settings.dashboard_folder_url}", flush=True)
    print(f"Dagster UI on http://127.0.0.1:{args.port} (instance {home}); Ctrl-C stops it", flush=True)
    # Through this Python: `.venv/bin/ctr-assets ui` must work without the virtualenv on PATH.
    dagster = subprocess.Popen([sys.executable, "-m", "dagster", "dev", "-m", "ctr_assets.definitions",
                                "-h", "127.0.0.1", "-p", str(args.port)], env=environment)
    signal.signal(signal.SIGTERM, lambda *_: dagster.send_signal(signal.SIGTERM))
    try:
        while dagster.poll() is None:
            try:
                dagster.wait()
            except KeyboardInterrupt:
                # Ctrl-C in a terminal reaches dagster dev too (one process group) and it stops on its own;
                # an interrupt sent to this process alone does not, so it is told after a grace period.
                try:
                    dagster.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    dagster.send_signal(signal.SIGTERM)
        return dagster.returncode if dagster.returncode >= 0 else 128 - dagster.returncode
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def _folder_server(folder: str, port: int):
    """An HTTP server of `folder` on 127.0.0.1:`port` (the standard library's), without a request log; like the
    storage itself, it never follows a link out of the folder."""
    import functools
    from http import HTTPStatus
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    root = os.path.realpath(folder)

    class Dashboards(SimpleHTTPRequestHandler):
        def send_head(self):
            if os.path.commonpath([root, os.path.realpath(self.translate_path(self.path))]) != root:
                self.send_error(HTTPStatus.NOT_FOUND)
                return None
            return super().send_head()

        def log_message(self, format, *args) -> None:
            pass

    try:
        return ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Dashboards, directory=folder))
    except OSError as error:
        raise SettingError(f"CTR_DASHBOARD_URL: cannot serve dashboards/ on 127.0.0.1:{port} ({error.strerror}): "
                           "stop what uses the port, or set CTR_DASHBOARD_URL to another address") from None


def retention(args: argparse.Namespace) -> int:
    """Expire flatfiles/ after the retention (the original 24 h lifecycle): an S3 lifecycle rule on a bucket,
    a deletion of the expired ones on a folder (the flatfiles_retention schedule repeats it hourly)."""
    from ctr_assets.defs.resources import storage_for

    settings = CtrSettings.from_env(storage_url=args.storage, flatfiles_retention_hours=args.hours)
    print(storage_for(settings).apply_retention(FLATFILES, settings.flatfiles_retention_hours))
    return 0


def kinesis(args: argparse.Namespace) -> int:
    """Land a Kinesis data stream in raw/ as Firehose would: one object per pass, every interval with --follow."""
    import time

    from ctr_assets.api import open_storage
    from ctr_assets.aws.clients import AwsClients
    from ctr_assets.aws.kinesis import land

    settings = CtrSettings.from_env(storage_url=args.storage, kinesis_stream_name=args.stream)
    if not settings.kinesis_stream_name:
        raise SettingError("CTR_KINESIS_STREAM_NAME: no stream given (set it, or pass --stream)")
    storage, client = open_storage(settings, create=True), AwsClients().client("kinesis")
    while True:
        landing = land(client, storage, settings.kinesis_stream_name)
        print(f"{landing.records} records from {landing.shards} shards" + (f" -> {landing.key}" if landing.key else ""),
              flush=True)
        if not args.follow:
            return 0
        time.sleep(settings.sensor_interval_seconds)


def notifications(args: argparse.Namespace) -> int:
    """Send the bucket's new raw objects to an SQS queue as S3 event notifications (for the raw_events sensor)."""
    from ctr_assets.aws.clients import AwsClients
    from ctr_assets.aws.events import configure_notifications
    from ctr_assets.defs.resources import storage_for

    settings = CtrSettings.from_env(storage_url=args.storage)
    if not settings.is_s3:
        raise SettingError(f"CTR_STORAGE_URL: {settings.storage_url!r}: event notifications need s3:// storage")
    storage = storage_for(settings)
    queue_url = configure_notifications(
        storage.client, AwsClients().client("sqs"), storage.bucket, storage.prefix, args.queue)
    print(f"object-created events under {storage.uri(RAW)} now go to {queue_url}\n"
          f"set CTR_SQS_QUEUE_URL={queue_url} for the raw_events sensor to read them")
    return 0


def _hour(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H").replace(tzinfo=timezone.utc)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DDTHH (UTC), got {text!r}") from None


def _whole(minimum: int, maximum: int | None = None):
    """An argument type: a whole number within bounds."""
    def whole(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = None
        if number is None or number < minimum or (maximum is not None and number > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f"of at least {minimum}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bounds}, got {text!r}")
        return number

    return whole


def _stream_name(text: str) -> str:
    if not STREAM_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a delivery stream name (1-64 letters, digits, '_', '.', '-'), "
                                         f"got {text!r}")
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other error of this command (it prints the usage first)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ctr-assets", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    storage_help = f"local folder or s3://bucket[/prefix] (default: $CTR_STORAGE_URL, else ./{DEFAULT_STORAGE_URL})"
    create_help = "start a new storage where --storage points (else one without raw/ is refused, so a typo is caught)"

    def command(name: str, handler, help: str, group=commands) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help, description=help)
        sub.add_argument("--storage", default=None, help=storage_help)
        sub.set_defaults(command=handler)
        return sub

    sim = command("simulate", simulate, "write sample Firehose objects under raw/ (what has arrived by now; "
                  "creates the storage if needed)")
    sim.add_argument("--start", type=_hour,
                     help="first contact hour, YYYY-MM-DDTHH UTC (default: the last HOURS complete hours)")
    sim.add_argument("--hours", type=_whole(1), default=6, help="hours of contacts (default: %(default)s)")
    sim.add_argument("--contacts-per-hour", type=_whole(1), default=200,
                     help="initial contacts per hour; transfers, callbacks and surveys add more (default: %(default)s)")
    sim.add_argument("--seed", type=int, default=0,
                     help="another seed, another contact centre; each hour's contacts follow from the seed and "
                          "the hour (default: %(default)s)")
    sim.add_argument("--stream", type=_stream_name, default="ctr-stream",
                     help="delivery stream name used in object keys (default: %(default)s)")
    run_cmd = command("run", run, "flatten, merge and refresh everything pending, through Dagster")
    run_cmd.add_argument("-v", "--verbose", action="store_true", help="show Dagster's step logs")
    run_cmd.add_argument("--create", action="store_true", help=create_help)
    command("status", status, "show what is stored, what is pending, and the queue alerts of the latest complete interval")
    query_cmd = command("query", query, "run SQL against the ctr view")
    query_cmd.add_argument("sql")
    query_cmd.add_argument("--limit", type=_whole(1), default=40, help="rows to print (default: %(default)s)")
    query_cmd.add_argument("--as-of", help="read an earlier snapshot: its id, or a UTC time (2026-03-02T08:00:00)")
    quarantine = commands.add_parser("quarantine", help="list quarantined items, or replay them after a fix",
                                     description="list quarantined items, or replay them after a fix")
    quarantine_commands = quarantine.add_subparsers(required=True, metavar="ACTION")
    listing = command("list", quarantine_list, "counts by reason and raw object, then the items",
                      quarantine_commands)
    listing.add_argument("--limit", type=_whole(0), default=50, help="items to print (default: %(default)s)")
    replaying = command("replay", quarantine_replay, "rerun items through the current record logic and "
                        "merge the ones that now pass (safe to repeat)", quarantine_commands)
    for sub in (listing, replaying):
        sub.add_argument("--reason", default=None, help="only items quarantined for this reason")
    replaying.add_argument("-v", "--verbose", action="store_true", help="show Dagster's step logs")
    command("migrate", migrate, "turn a table of the earlier dt= Parquet layout into the Iceberg table")
    ui_cmd = command("ui", ui, "start the Dagster UI (dagster dev) on the instance the CLI uses")
    ui_cmd.add_argument("--port", type=_whole(1, 65535), default=3000, help="(default: %(default)s)")
    keep = command("retention", retention, "expire flatfiles/ after the retention (an S3 lifecycle rule on a bucket)")
    keep.add_argument("--hours", type=int, help="retention in hours (default: $CTR_FLATFILES_RETENTION_HOURS, else 24)")
    stream = command("kinesis", kinesis, "land a Kinesis data stream in raw/ as Firehose would")
    stream.add_argument("--stream", help="stream name (default: $CTR_KINESIS_STREAM_NAME)")
    stream.add_argument("--follow", action="store_true",
                        help="keep landing, every $CTR_SENSOR_INTERVAL_SECONDS (default 60)")
    notify = command("notifications", notifications,
                     "send the bucket's new raw objects to an SQS queue (S3 event notifications)")
    notify.add_argument("--queue", required=True, help="queue URL, or a name (created if missing)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
