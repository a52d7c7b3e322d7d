"""The Athena engine (CTR_MERGE_ENGINE=athena) against moto's Athena, Glue and S3 APIs: its settings, how it
launches and polls queries, its failures as one line, and the metadata it reports. Moto runs no SQL: what
the statements do is held to the local merge in test_merge_into.py."""

import pytest

from ctr_assets.settings import CtrSettings, SettingError
from ctr_assets_tests.helpers import settings_for


@pytest.mark.parametrize("overrides, message", [
    ({"merge_engine": "spark"}, "CTR_MERGE_ENGINE: 'spark' is not one of local, athena"),
    ({"merge_engine": "athena"}, "CTR_MERGE_ENGINE: athena works on the table in the Glue Data Catalog: it needs "
                                 "s3:// storage (CTR_STORAGE_URL) and CTR_GLUE_DATABASE"),
    ({"merge_engine": "athena", "storage_url": "s3://bucket-x", "catalog_uri": "sqlite:////tmp/c.db"},
     "CTR_MERGE_ENGINE: athena works on the table in the Glue Data Catalog"),
    ({"athena_workgroup": "no spaces"}, "CTR_ATHENA_WORKGROUP: 'no spaces' is not a workgroup name"),
    ({"athena_output_location": "/tmp/results"}, "CTR_ATHENA_OUTPUT_LOCATION: '/tmp/results' is not an s3://bucket/folder"),
    ({"athena_merge_window_days": -1}, "CTR_ATHENA_MERGE_WINDOW_DAYS: must not be negative"),
    ({"athena_price_per_tb": -5}, "CTR_ATHENA_PRICE_PER_TB: must not be negative"),
])
def test_an_unusable_athena_setting_is_one_line_naming_it(tmp_path, overrides, message):
    with pytest.raises(SettingError) as raised:
        settings_for(tmp_path, **overrides)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_athena_settings_are_read_from_the_environment(tmp_path):
    settings = CtrSettings.from_env({"CTR_STORAGE_URL": "s3://bucket-x/ctr", "CTR_GLUE_DATABASE": "contact_centre",
                                     "CTR_MERGE_ENGINE": "athena", "CTR_ATHENA_WORKGROUP": "ctr-etl",
                                     "CTR_ATHENA_OUTPUT_LOCATION": "s3://results-bucket/athena/",
                                     "CTR_ATHENA_MERGE_WINDOW_DAYS": "0", "CTR_ATHENA_PRICE_PER_TB": "6.75"})
    assert (settings.merge_engine, settings.athena_workgroup, settings.athena_output_location,
            settings.athena_merge_window_days, settings.athena_price_per_tb) == (
        "athena", "ctr-etl", "s3://results-bucket/athena/", 0, 6.75)
    assert CtrSettings.from_env({}).merge_engine == "local"
