"""The ctr table in a Glue Data Catalog (moto's Glue API): types, registration, partitions, schema evolution."""

from datetime import timedelta

import dagster as dg
import pytest

from ctr_assets.api import run_pipeline
from ctr_assets.aws.glue import hive_type, register_table
from ctr_assets.defs.resources import storage_for
from ctr_assets.lake.table import table_files
from ctr_assets.settings import SettingError
from ctr_assets_tests.helpers import (
    SAMPLE_START,
    ctr_record,
    firehose_object,
    raw_key,
    settings_for,
    write_sample,
)


def test_duckdb_types_become_hive_ddl():
    assert hive_type({"username": "VARCHAR", "hierarchygroups": {"level1": {"arn": "VARCHAR"}}}) == (
        "struct<username:string,hierarchygroups:struct<level1:struct<arn:string>>>")
    assert hive_type([{"duration": "BIGINT", "at": "TIMESTAMP"}]) == "array<struct<duration:bigint,at:timestamp>>"
    assert [hive_type(kind) for kind in ("DOUBLE", "BOOLEAN", "UBIGINT", "DECIMAL(18, 3)")] == [
        "double", "boolean", "decimal(20,0)", "decimal(18,3)"]
    with pytest.raises(ValueError, match="INTERVAL"):
        hive_type("INTERVAL")


def test_glue_needs_a_bucket_and_athena_names(tmp_path):
    with pytest.raises(SettingError, match="^CTR_GLUE_DATABASE: Athena reads the table from S3"):
        settings_for(tmp_path, glue_database="contact_centre")
    with pytest.raises(SettingError, match="^CTR_GLUE_TABLE: 'CTR-table'"):
        settings_for(tmp_path, storage_url="s3://bucket", glue_database="contact_centre", glue_table="CTR-table")


def test_the_table_is_registered_and_follows_schema_evolution(s3_settings, moto, monkeypatch):
    monkeypatch.setenv("CTR_GLUE_DATABASE", "contact_centre")
    storage = storage_for(s3_settings)
    write_sample(storage, hours=1, contacts_per_hour=20, batch_seconds=3600)
    glue = moto.client("glue")

    assert run_pipeline(s3_settings.storage_url, instance=dg.DagsterInstance.ephemeral()).ok
    table = glue.get_table(DatabaseName="contact_centre", Name="ctr")["Table"]
    columns = {column["Name"]: column["Type"] for column in table["StorageDescriptor"]["Columns"]}
    dates = sorted(key.split("dt=")[1][:10] for key in table_files(storage))

    assert table["StorageDescriptor"]["Location"] == f"{s3_settings.storage_url}/parquet/ctr/"
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert table["PartitionKeys"] == [{"Name": "dt", "Type": "string"}]
    assert table["Parameters"]["projection.dt.range"] == f"{dates[0]},NOW"
    assert columns["contactid"] == "string" and columns["initiationtimestamp"] == "timestamp"
    assert columns["agent"].startswith("struct<") and "username:string" in columns["agent"]
    assert "newfield" not in columns
    assert sorted(p["Values"][0] for p in glue.get_partitions(DatabaseName="contact_centre", TableName="ctr")["Partitions"]) == dates

    later = SAMPLE_START + timedelta(hours=2)
    storage.write(raw_key(later, 1, "evolved"), firehose_object(ctr_record(
        "evolved-contact", later, NewField=5, Attributes={"brandnewattribute": "yes"})))
    assert run_pipeline(s3_settings.storage_url, instance=dg.DagsterInstance.ephemeral()).ok

    evolved = glue.get_table(DatabaseName="contact_centre", Name="ctr")["Table"]
    columns = {column["Name"]: column["Type"] for column in evolved["StorageDescriptor"]["Columns"]}
    partitions = glue.get_partitions(DatabaseName="contact_centre", TableName="ctr")["Partitions"]
    assert columns["newfield"] == "bigint" and "brandnewattribute:string" in columns["attributes"]
    assert all(p["StorageDescriptor"]["Columns"] == evolved["StorageDescriptor"]["Columns"] for p in partitions)
    assert {later.strftime("%Y-%m-%d")} <= {p["Values"][0] for p in partitions}


def test_registering_an_unchanged_table_changes_nothing(moto):
    glue = moto.client("glue")
    schema = {"contactid": "VARCHAR", "agent": {"username": "VARCHAR"}}
    location = "s3://bucket/ctr/parquet/ctr/"

    first = register_table(glue, "unchanged_db", "ctr", location, schema, ["2026-03-01", "2026-03-02"])
    again = register_table(glue, "unchanged_db", "ctr", location, schema, ["2026-03-01", "2026-03-02"])
    more = register_table(glue, "unchanged_db", "ctr", location, schema, ["2026-03-01", "2026-03-02", "2026-03-03"])

    assert first.table_created and first.partitions_added == ["2026-03-01", "2026-03-02"]
    assert not again.table_updated and again.partitions_added == [] and again.partitions_updated == 0
    assert not more.table_updated and more.partitions_added == ["2026-03-03"]
