"""Benchmark: the original Lambda's flattening against this pipeline, stage by stage, on the same files.

    python -m benchmarks.run                    # 100,000 contacts (~109,000 CTRs, ~270 MB), 3 runs
    python -m benchmarks.run --shape gapped     # the same objects spread over a week, with gaps
    python -m benchmarks.run --contacts 1000000 --shape one-date --runs 1 --no-sensor --stages pipeline,dagster

Sample Firehose objects are generated once per size under --data and reused. Every stage runs in a fresh
subprocess on a fresh copy of raw/ (hard links), so each starts cold and its peak memory is its own:
the peak RSS is the sum over the stage's process tree (workers included), sampled every 20 ms, and the
CPU seconds are the whole subprocess's (workers included). Stages:

- original: the original Lambda's algorithm (benchmarks/original_lambda.py), one core;
- split_normalize_1core: the original's job done our way in one process: split, normalize keys, NDJSON out;
- flatten_1core: our whole flatten step (split, normalize, type checks, NDJSON and quarantine out) in one process;
- pipeline: the same steps as the Dagster graph, called directly: flatten on all cores, conservation
  recount, merge into the Parquet table (read+type, dedup, write), catalog, aggregates and dashboard;
- dagster: `run_pipeline` (everything through Dagster, in process); its time minus the pipeline's is the
  Dagster overhead;
- duckdb_raw: the fastest thing a user could do instead, as a second baseline: DuckDB's `read_json` over the
  raw objects with a pinned schema (detected once from a sample), straight to one Parquet file; no record
  rules (no key normalization, types, dedup or quarantine);
- sensor: `raw_arrivals` ticks on a storage (--sensor-storage, default a local folder under --data) holding
  --sensor-objects objects in old hour folders and 10 new ones: time, Storage.list calls and, on a local
  folder, the directories read. On S3 each list call is one ListObjectsV2 request per 1,000 keys listed.

Shapes of the data (--shape): `contiguous` (--contacts-per-hour contacts in each of consecutive arrival
hours), `gapped` (the same objects, their hour folders spread over a week with empty hours between), and
`one-date` (every contact initiated on one UTC date, arriving over its 24 hours: a busy day).

Medians over --runs runs are printed as a table and appended as one JSON line to --results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = ROOT / "benchmarks" / "results" / "results.jsonl"
START = datetime(2026, 3, 2, tzinfo=timezone.utc)
STAGES = ("original", "split_normalize_1core", "flatten_1core", "pipeline", "dagster")
RSS_SAMPLE_SECONDS = 0.02


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.stage:
        print(json.dumps(STAGE_FUNCTIONS[args.stage](Path(args.workdir), args)))
        return 0
    data = prepare_data(Path(args.data), args.contacts, args.contacts_per_hour, args.shape)
    runs = []
    for number in range(1, args.runs + 1):
        stages = [stage for stage in (args.stages.split(",") if args.stages else STAGES)
                  if args.original or stage != "original"]
        run = {stage: run_stage(stage, data, args) for stage in stages}
        if args.sensor:
            run["sensor"] = run_stage("sensor", Path(args.data), args)
        runs.append(run)
        print(f"run {number}/{args.runs} done", file=sys.stderr)
    summary = summarize(runs, data)
    print(render(summary))
    record = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "commit": _git_commit(),
              "machine": machine(), "data": _data_info(data), "runs": len(runs), "median": summary}
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(f"appended to {results}")
    return 0


def prepare_data(folder: Path, contacts: int, per_hour: int, shape: str = "contiguous") -> Path:
    """Sample Firehose objects for `contacts` contacts under folder/<shape and size>/raw/, generated once."""
    from ctr_assets.lake.storage import LocalStorage
    from ctr_assets.sample import write_firehose_objects

    if shape == "one-date":
        per_hour = -(-contacts // 24)
    hours = -(-contacts // per_hour)
    base = folder / f"{shape}-contacts-{contacts}-per-hour-{per_hour}"
    info = base / "sample.json"
    if info.exists():
        return base
    shutil.rmtree(base, ignore_errors=True)
    if shape == "gapped":
        contiguous = prepare_data(folder, contacts, per_hour)
        _spread_over_a_week(contiguous / "raw", base / "raw")
        info.write_text((contiguous / "sample.json").read_text())
        return base
    storage = LocalStorage(root=str(base))
    print(f"generating {hours} hours x {per_hour} contacts under {base} ...", file=sys.stderr)
    stats = write_firehose_objects(storage.write, START, hours, per_hour)
    raw = [path for path in (base / "raw").rglob("*") if path.is_file()]
    info.write_text(json.dumps({"contacts": stats.contacts, "records": stats.records, "objects": stats.objects,
                                "bytes": sum(path.stat().st_size for path in raw)}))
    return base


def _spread_over_a_week(source: Path, target: Path) -> None:
    """Hard links of the objects of consecutive arrival hours, their hour folders moved apart so that a week
    holds them with empty hours between (what a quiet night or a backfill leaves)."""
    folders = sorted({path.parent for path in source.rglob("*") if path.is_file()})
    stride = max(2, 7 * 24 // max(len(folders), 1))
    for number, folder in enumerate(folders):
        hour = datetime.strptime("/".join(folder.parts[-4:]), "%Y/%m/%d/%H").replace(tzinfo=timezone.utc)
        moved = target / (hour + timedelta(hours=number * (stride - 1))).strftime("%Y/%m/%d/%H")
        moved.mkdir(parents=True, exist_ok=True)
        for path in folder.iterdir():
            os.link(path, moved / path.name)


def run_stage(stage: str, data: Path, args: argparse.Namespace) -> dict:
    """One stage in a fresh subprocess (on a fresh hard-linked copy of raw/), with its peak tree RSS."""
    workdir = Path(args.data) / "work"
    shutil.rmtree(workdir, ignore_errors=True)
    if stage != "sensor":
        shutil.copytree(data / "raw", workdir / "raw", copy_function=os.link)
    command = [sys.executable, "-m", "benchmarks.run", "--stage", stage, "--workdir", str(workdir),
               "--data", str(args.data), "--sensor-objects", str(args.sensor_objects)]
    if args.sensor_storage:
        command += ["--sensor-storage", args.sensor_storage]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak = [0]
    sampler = threading.Thread(target=_sample_rss, args=(process, peak), daemon=True)
    sampler.start()
    output, _ = process.communicate()
    sampler.join()
    if process.returncode:
        raise SystemExit(f"stage {stage} failed with exit code {process.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(peak[0] / 2**20, 1)
    result["cpu_seconds"] = round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2)
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def _sample_rss(process: subprocess.Popen, peak: list[int]) -> None:
    while process.poll() is None:
        peak[0] = max(peak[0], sum(_rss(pid) for pid in _tree(process.pid)))
        time.sleep(RSS_SAMPLE_SECONDS)


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# Stages, run inside the subprocess. Each returns seconds per step (wall) and what it processed.


def stage_original(workdir: Path, args: argparse.Namespace) -> dict:
    from benchmarks.original_lambda import flatten_file

    keys = sorted(path.relative_to(workdir).as_posix() for path in (workdir / "raw").rglob("*") if path.is_file())
    began = time.perf_counter()
    records = sum(flatten_file(workdir, key) for key in keys)
    return {"seconds": {"flatten": time.perf_counter() - began}, "records": records}


def stage_split_normalize_1core(workdir: Path, args: argparse.Namespace) -> dict:
    """The original Lambda's job and nothing more, done our way: read each raw object, split it, normalize
    the keys, write one NDJSON line per record. No type checks, quarantine or stats (flatten_1core has them)."""
    import orjson

    from ctr_assets.lake.pipeline import WRITE_BUFFER_BYTES, keep_freed_memory
    from ctr_assets.records.bulk import split_normalized
    from ctr_assets.records.flatten import decompress
    from ctr_assets.records.split import Rejected

    keep_freed_memory()  # as the flatten step's processes do
    paths = sorted(path for path in (workdir / "raw").rglob("*") if path.is_file())
    (workdir / "flatfiles").mkdir()
    records = 0
    began = time.perf_counter()
    for path in paths:
        payload, _ = decompress(path.read_bytes())
        flatfile = workdir / "flatfiles" / path.relative_to(workdir).as_posix().replace("/", "")
        with open(flatfile, "wb", buffering=WRITE_BUFFER_BYTES) as out:
            for piece in split_normalized(payload):
                if not isinstance(piece, Rejected):
                    out.write(piece.text or orjson.dumps(piece.value, option=orjson.OPT_APPEND_NEWLINE))
                    records += 1
    return {"seconds": {"split_normalize": time.perf_counter() - began}, "records": records}


def stage_flatten_1core(workdir: Path, args: argparse.Namespace) -> dict:
    from ctr_assets.defs.resources import table_for
    from ctr_assets.lake.pipeline import flatten_hours, pending_raw_keys
    from ctr_assets.lake.storage import LocalStorage
    from ctr_assets.settings import CtrSettings

    storage = LocalStorage(root=str(workdir))
    hours = list(pending_raw_keys(storage, table_for(CtrSettings.from_env({}, storage_url=str(workdir)), storage)))
    began = time.perf_counter()
    report = flatten_hours(storage, hours, workers=1)
    return {"seconds": {"flatten": time.perf_counter() - began}, "records": report.totals.records_in}


def stage_pipeline(workdir: Path, args: argparse.Namespace) -> dict:
    from contextlib import closing

    import duckdb

    from ctr_assets.defs.resources import table_for
    from ctr_assets.lake.pipeline import (
        conservation_problems,
        flatten_hours,
        merge_hours,
        pending_raw_keys,
    )
    from ctr_assets.lake.storage import LocalStorage
    from ctr_assets.metrics.dashboard import render_dashboard
    from ctr_assets.metrics.warehouse import (
        AGGREGATES,
        build_aggregate,
        prepare_metrics,
        refresh_ctr_view,
        scratch_connection,
    )
    from ctr_assets.settings import CtrSettings

    storage = LocalStorage(root=str(workdir))
    settings = CtrSettings.from_env({}, storage_url=str(workdir))
    table = table_for(settings, storage)
    seconds: dict[str, float] = {}
    began = time.perf_counter()
    hours = list(pending_raw_keys(storage, table))
    report = flatten_hours(storage, hours)
    seconds["flatten"] = time.perf_counter() - began
    mark = time.perf_counter()
    problems = conservation_problems(storage, report.objects)
    seconds["conservation"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with closing(scratch_connection(settings.duckdb_memory_mb)) as connection:
        result = merge_hours(storage, table, hours, connection)
    seconds["merge"] = time.perf_counter() - mark
    mark = time.perf_counter()
    with closing(duckdb.connect(str(workdir / "ctr.duckdb"))) as connection:
        refresh_ctr_view(connection, storage, table)
        prepare_metrics(connection, settings)
        for name in AGGREGATES:
            build_aggregate(connection, storage, name)
        storage.write("dashboards/index.html", render_dashboard(connection).encode())
    seconds["aggregates"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - began
    assert not problems and result.rows_inserted, (problems, result)
    return {"seconds": seconds, "records": report.totals.records_in, "rows": result.rows_inserted}


def stage_duckdb_raw(workdir: Path, args: argparse.Namespace) -> dict:
    import duckdb

    paths = sorted(str(path) for path in (workdir / "raw").rglob("*") if path.is_file())
    began = time.perf_counter()
    with duckdb.connect() as connection:
        connection.execute("SET preserve_insertion_order = false")
        listed = "[" + ", ".join(f"'{path}'" for path in paths) + "]"
        reader = f"read_json({listed}, format='auto', union_by_name=true, maximum_object_size=67108864"
        sample = "[" + ", ".join(f"'{path}'" for path in paths[:: max(1, len(paths) // 50)]) + "]"
        # Detection skips the records DuckDB cannot detect (keys differing only in case: "Duplicate name in
        # struct"); the read itself, with the detected columns pinned, takes every record.
        detected = connection.sql(f"SELECT * FROM read_json({sample}, format='auto', union_by_name=true, "
                                  "maximum_object_size=67108864, ignore_errors=true) LIMIT 0")
        columns = "{" + ", ".join(f"'{name}': '{kind}'" for name, kind in zip(detected.columns, detected.types)) + "}"
        detection = time.perf_counter()
        records = connection.execute(f"COPY (SELECT * FROM {reader}, columns={columns})) TO "
                                     f"'{workdir / 'raw.parquet'}' (FORMAT parquet, COMPRESSION zstd)").fetchone()[0]
    done = time.perf_counter()
    return {"seconds": {"detect": detection - began, "raw_to_parquet": done - began}, "records": records}


def stage_dagster(workdir: Path, args: argparse.Namespace) -> dict:
    began = time.perf_counter()
    import dagster as dg

    from ctr_assets.api import run_pipeline

    imported = time.perf_counter()
    os.environ["CTR_FIRST_HOUR"] = START.strftime("%Y-%m-%d-%H:%M")
    summary = run_pipeline(str(workdir), instance=dg.DagsterInstance.ephemeral())
    done = time.perf_counter()
    assert summary.ok, (summary.failed_checks, summary.failed_runs)
    return {"seconds": {"imports": imported - began, "run_pipeline": done - imported},
            "records": summary.flattened.get("records_in", 0), "rows": summary.table_rows}


def stage_sensor(workdir: Path, args: argparse.Namespace) -> dict:
    """Tick `raw_arrivals` on a storage holding many old objects and a few new ones; count listings."""
    import dagster as dg

    import ctr_assets.lake.storage as storage_module
    from ctr_assets.definitions import build_definitions
    from ctr_assets.defs.resources import storage_for
    from ctr_assets.lake.layout import floor_hour
    from ctr_assets.settings import CtrSettings

    url = args.sensor_storage or str(Path(args.data) / f"sensor-{args.sensor_objects}")
    settings = CtrSettings.from_env(storage_url=url, first_hour="2020-01-01-00:00")
    storage = storage_for(settings)
    now = floor_hour(datetime.now(timezone.utc))

    def key(hour: datetime, name: str) -> str:
        return f"raw/{hour:%Y/%m/%d/%H}/ctr-stream-1-{hour:%Y-%m-%d-%H}-{name}"

    marker = "benchmark/sensor-objects.json"
    if not storage.exists(marker) or json.loads(storage.read(marker)) != args.sensor_objects:
        for number in range(args.sensor_objects):  # spread over 1000 old hours, outside the sensor's window
            storage.write(key(now - timedelta(hours=24 + number % 1000), f"00-00-{number:08d}"), b"")
        storage.write(marker, json.dumps(args.sensor_objects).encode())
    for item in storage.list(f"raw/{now:%Y/%m/%d/%H}/"):
        storage.delete(item.key)
    for number in range(10):
        storage.write(key(now, f"00-{number:02d}-new{number}"), b"")

    sensor = build_definitions(settings).resolve_sensor_def("raw_arrivals")
    instance = dg.DagsterInstance.ephemeral()
    listed, walked = [], []
    original_list, original_walk = type(storage).list, storage_module.os.walk

    def counting_list(self, prefix, start_after=""):
        listed.append(prefix)
        return original_list(self, prefix, start_after)

    def counting_walk(top, *rest, **options):  # local storage: the directories actually read
        for entry in original_walk(top, *rest, **options):
            walked.append(entry[0])
            yield entry

    ticks, cursor = [], None
    type(storage).list, storage_module.os.walk = counting_list, counting_walk
    try:
        for tick in ("first", "nothing new", "one new"):
            if tick == "one new":
                storage.write(key(now, "00-59-late"), b"")
            listed.clear(), walked.clear()
            began = time.perf_counter()
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"storage": storage}) as context:
                result = sensor(context)
            ticks.append({"tick": tick, "seconds": time.perf_counter() - began, "list_calls": len(listed),
                          "directories_listed": len(walked), "runs_requested": len(result.run_requests)})
            cursor = result.cursor
    finally:
        type(storage).list, storage_module.os.walk = original_list, original_walk
    return {"storage": storage.url, "objects": args.sensor_objects + 11, "ticks": ticks}


STAGE_FUNCTIONS = {"original": stage_original, "split_normalize_1core": stage_split_normalize_1core,
                   "flatten_1core": stage_flatten_1core, "pipeline": stage_pipeline,
                   "dagster": stage_dagster, "duckdb_raw": stage_duckdb_raw, "sensor": stage_sensor}


def summarize(runs: list[dict], data: Path) -> dict:
    """Medians over runs of every timed step, its records/s and MB/s, and ratios to the original."""
    info = _data_info(data)
    summary: dict = {}
    for stage in runs[0]:
        if stage == "sensor":
            summary["sensor"] = [
                {key: statistics.median(run["sensor"]["ticks"][n][key] for run in runs) if key != "tick"
                 else tick["tick"] for key in tick}
                for n, tick in enumerate(runs[0]["sensor"]["ticks"])]
            continue
        steps = runs[0][stage]["seconds"]
        summary[stage] = {
            "seconds": {step: statistics.median(run[stage]["seconds"][step] for run in runs) for step in steps},
            "peak_rss_mb": statistics.median(run[stage]["peak_rss_mb"] for run in runs),
            "cpu_seconds": statistics.median(run[stage]["cpu_seconds"] for run in runs),
        }
    if "pipeline" in summary and "dagster" in summary:
        summary["dagster"]["seconds"]["overhead"] = statistics.median(
            run["dagster"]["seconds"]["run_pipeline"] - run["pipeline"]["seconds"]["total"] for run in runs)
    original = summary.get("original", {}).get("seconds", {}).get("flatten")
    rows = [
        ("original Lambda: flatten, 1 core", "original", "flatten"),
        ("ours: split + normalize, 1 core", "split_normalize_1core", "split_normalize"),
        ("ours: flatten (+ type checks, quarantine), 1 core", "flatten_1core", "flatten"),
        ("ours: flatten, all cores", "pipeline", "flatten"),
        ("ours: conservation recount", "pipeline", "conservation"),
        ("ours: merge (read, type, dedup, write Parquet)", "pipeline", "merge"),
        ("ours: catalog + aggregates + dashboard", "pipeline", "aggregates"),
        ("ours: whole pipeline, no Dagster", "pipeline", "total"),
        ("ours: whole pipeline, run_pipeline (Dagster)", "dagster", "run_pipeline"),
        ("Dagster overhead (run_pipeline - no Dagster)", "dagster", "overhead"),
        ("imports (Python + Dagster)", "dagster", "imports"),
        ("DuckDB raw path: read_json -> Parquet, no record rules", "duckdb_raw", "raw_to_parquet"),
    ]
    table = []
    for label, stage, step in rows:
        if stage not in summary or step not in summary[stage]["seconds"]:
            continue
        seconds = summary[stage]["seconds"][step]
        table.append({
            "stage": label, "seconds": round(seconds, 2),
            "records_per_s": round(info["records"] / seconds), "mb_per_s": round(info["bytes"] / 2**20 / seconds, 1),
            "vs_original": round(original / seconds, 1) if original else None,
            "peak_rss_mb": summary[stage]["peak_rss_mb"],
        })
    summary["table"] = table
    return summary


def render(summary: dict) -> str:
    lines = [f"{'stage':52s} {'seconds':>8s} {'records/s':>10s} {'MB/s':>7s} {'x original':>10s} {'peak RSS MB':>11s}"]
    for row in summary["table"]:
        ratio = f"{row['vs_original']:.1f}x" if row["vs_original"] else "-"
        lines.append(f"{row['stage']:52s} {row['seconds']:8.2f} {row['records_per_s']:10,d} {row['mb_per_s']:7.1f} "
                     f"{ratio:>10s} {row['peak_rss_mb']:11.0f}")
    cpu = ", ".join(f"{stage} {summary[stage]['cpu_seconds']:.1f}" for stage in STAGES if stage in summary)
    lines.append(f"CPU seconds per stage subprocess (workers included): {cpu}")
    for tick in summary.get("sensor", []):
        lines.append(f"sensor tick ({tick['tick']}): {tick['seconds'] * 1000:.1f} ms, {tick['list_calls']:.0f} list calls, "
                     f"{tick['directories_listed']:.0f} directories listed, {tick['runs_requested']:.0f} runs requested")
    return "\n".join(lines)


def machine() -> dict:
    from importlib.metadata import version

    packages = ("dagster", "duckdb", "pyarrow", "orjson", "pandas")
    return {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_average": os.getloadavg(), "packages": {name: version(name) for name in packages}}


def _data_info(data: Path) -> dict:
    return json.loads((data / "sample.json").read_text())


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000, help="initial contacts to generate (default 100000)")
    parser.add_argument("--contacts-per-hour", type=int, default=10_000)
    parser.add_argument("--shape", choices=("contiguous", "gapped", "one-date"), default="contiguous",
                        help="how the objects spread over arrival hours and contact dates (default contiguous)")
    parser.add_argument("--stages", help=f"comma-separated stages to run (default: {','.join(STAGES)})")
    parser.add_argument("--runs", type=int, default=3, help="runs per stage; the table shows medians")
    parser.add_argument("--data", default="/tmp/ctr_assets_benchmark", help="where sample data is kept between runs")
    parser.add_argument("--results", default=str(DEFAULT_RESULTS), help="JSON lines file the summary is appended to")
    parser.add_argument("--sensor-objects", type=int, default=100_000, help="old objects in the sensor tick stage")
    parser.add_argument("--sensor-storage", help="storage URL for the sensor stage (default: a folder under --data)")
    parser.add_argument("--no-original", dest="original", action="store_false", help="skip the original Lambda")
    parser.add_argument("--no-sensor", dest="sensor", action="store_false", help="skip the sensor tick stage")
    parser.add_argument("--stage", choices=sorted(STAGE_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
