"""The ctr_catalog asset: every column and struct field, nested ones included, says when and in which arrival
hours it first appeared."""

import json
from datetime import timedelta

import dagster as dg

from ctr_assets.api import run_pipeline
from ctr_assets.defs.resources import storage_for
from ctr_assets_tests.helpers import SAMPLE_START, ctr_record, firehose_object, raw_key, settings_for


def test_every_column_and_nested_field_has_its_first_appearance_from_the_hours_that_brought_it(tmp_path):
    settings = settings_for(tmp_path)
    storage = storage_for(settings)
    instance = dg.DagsterInstance.ephemeral()
    later = SAMPLE_START + timedelta(hours=3)
    storage.write(raw_key(SAMPLE_START), firehose_object(ctr_record(
        "first", SAMPLE_START, Agent={"Username": "ann", "RoutingProfile": {"Name": "Basic"}},
        Recordings=[{"Location": "s3://r/1"}])))
    run_pipeline(settings=settings, instance=instance)
    storage.write(raw_key(later), firehose_object(ctr_record(
        "second", later, Agent={"Username": "bob", "RoutingProfile": {"Name": "Basic"}, "Skills": {"Tier": "gold"}},
        Campaign={"CampaignId": "c1"})))
    run_pipeline(settings=settings, instance=instance)

    columns = {column["path"]: column["first_seen"]
               for column in json.loads(storage.read("catalog/ctr/schema.json"))["columns"]}
    first, second = "2026-03-02-08:00..2026-03-02-08:00", "2026-03-02-11:00..2026-03-02-11:00"
    assert {path for path, seen in columns.items() if not (seen or "").endswith(f"in arrival hours {first}")} == {
        "agent.skills", "agent.skills.tier", "campaign", "campaign.campaignid"}
    assert all(columns[path].endswith(f"in arrival hours {second}")
               for path in ("agent.skills", "agent.skills.tier", "campaign", "campaign.campaignid"))
    assert {"agent.username", "agent.routingprofile.name", "recordings[].location"} <= set(columns)
