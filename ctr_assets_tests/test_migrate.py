"""`ctr-assets migrate`: a table the earlier version wrote (dt= Parquet files and a ledger) becomes the
Iceberg table with every row kept, and nothing merged before looks pending afterwards."""

import shutil
from contextlib import closing
from pathlib import Path

import duckdb

from ctr_assets.lake.migrate import migrate_partition_files
from ctr_assets.lake.pipeline import pending_raw_keys
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.metrics.warehouse import scratch_connection
from ctr_assets_tests.helpers import local_table, table_rows
from ctr_assets_tests.test_cli import ctr_assets

EARLIER = Path(__file__).parent / "fixtures" / "earlier_table"


def earlier_rows() -> dict[str, dict]:
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{EARLIER}/parquet/ctr/*/*.parquet', hive_partitioning = true)")
    return {row[relation.columns.index("contactid")]: dict(zip(relation.columns, row)) for row in relation.fetchall()}


def copy_of_earlier(folder: Path) -> LocalStorage:
    shutil.copytree(EARLIER, folder, ignore=shutil.ignore_patterns("README.md"))
    return LocalStorage(root=str(folder))


def test_every_row_and_value_of_the_earlier_table_is_kept(tmp_path):
    storage = copy_of_earlier(tmp_path / "data")
    before = earlier_rows()

    with closing(scratch_connection()) as connection:
        report = migrate_partition_files(connection, storage, local_table(storage))
        rows = {row["contactid"]: row for row in table_rows(connection, storage, local_table(storage))}

    assert report.files == 2 and report.rows == len(before) == 34 and report.merge.rows_inserted == 34
    assert rows.keys() == before.keys()
    for contact, old in before.items():
        new = rows[contact]
        assert new["day"] == str(old["dt"]) and new["initiationtimestamp"] == old["initiationtimestamp"]
        assert (new["_source_key"], new["_arrived_at"]) == (old["_source_key"], old["_arrived_at"])
        assert new["agent"] == (old["agent"] and {**{k: None for k in new["agent"]}, **old["agent"]})
        assert new["attributes"] == old["attributes"] or new["attributes"] == {**{k: None for k in new["attributes"]},
                                                                               **old["attributes"]}
    # Undocumented scalars the earlier version typed as numbers and booleans follow today's policy: text.
    extras = {contact: (rows[contact]["extra"], rows[contact]["score"], rows[contact]["flag"], rows[contact]["nested"])
              for contact in rows if contact.startswith("old-extra-")}
    assert extras == {"old-extra-0": ("0", "0.0", "true", {"count": "0"}), "old-extra-1": ("5", "1.5", "false", {"count": "1"}),
                      "old-extra-2": ("10", "3.0", "true", {"count": "2"})}
    assert not list(storage.list("parquet/ctr/dt=")) and not list(storage.list("parquet/ctr/_merged/"))
    assert pending_raw_keys(storage, local_table(storage)) == {}  # the ledger came along


def test_the_command_migrates_once_and_then_has_nothing_to_do(tmp_path):
    copy_of_earlier(tmp_path / "ctr_data")  # the default storage of the command
    first = ctr_assets("migrate", cwd=tmp_path)
    again = ctr_assets("migrate", cwd=tmp_path)
    run = ctr_assets("run", cwd=tmp_path)

    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("migrated 34 rows from 2 dt= files into the Iceberg table (34 inserted, 0 updated)")
    assert again.stdout.startswith("nothing to migrate")
    assert "0 raw objects pending" in run.stdout and "table:     34 rows" in run.stdout
