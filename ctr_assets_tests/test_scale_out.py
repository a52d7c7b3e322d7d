"""Beyond one machine: hours flattened by runs of their own at once (as on a cluster), then merged, end as
one run ends; the README's cluster settings are ones Dagster accepts."""

from pathlib import Path

import pytest
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_aws.ecs import EcsRunLauncher

from ctr_assets.definitions import build_definitions
from ctr_assets.defs.assets import CTR, FLATTENED
from ctr_assets.defs.resources import storage_for, table_for
from ctr_assets.lake.pipeline import pending_raw_keys
from ctr_assets.lake.storage import LocalStorage
from ctr_assets.settings import SettingError
from ctr_assets_tests.drivers import (
    copy_raw,
    derived_state,
    flatten_concurrently,
    run_all_pending,
    run_steps,
    settings_of,
)
from ctr_assets_tests.helpers import settings_for

README = Path(__file__).parents[1] / "README.md"


@pytest.fixture(scope="module")
def serial(crash_sample, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("serial")
    copy_raw(crash_sample, folder)
    run_all_pending(str(folder))
    return derived_state(LocalStorage(root=str(folder)))


def test_hours_flattened_by_concurrent_runs_then_merged_end_as_one_run(crash_sample, serial, settings, tmp_path):
    storage = storage_for(settings)
    for path in (crash_sample / "raw").rglob("*"):
        if path.is_file():
            storage.write(path.relative_to(crash_sample).as_posix(), path.read_bytes())
    settings = settings.model_copy(update={"flatten_workers": 1})
    table = table_for(settings, storage)
    hours = list(pending_raw_keys(storage, table))
    assert len(hours) == 4

    assert flatten_concurrently(settings, hours) == [0] * len(hours)
    run_steps(settings_of(settings), hours, assets=[CTR])

    assert derived_state(storage, table) == serial
    assert pending_raw_keys(storage, table) == {}


def test_a_backfill_runs_as_runs_of_the_set_number_of_hours(tmp_path):
    for hours, expected in ((0, None), (24, 24)):
        definitions = build_definitions(settings_for(tmp_path, backfill_hours_per_run=hours))
        policies = {definitions.resolve_assets_def(key).backfill_policy for key in (FLATTENED, CTR)}
        assert {policy.max_partitions_per_run for policy in policies} == {expected}
    with pytest.raises(SettingError, match="^CTR_BACKFILL_HOURS_PER_RUN: must not be negative"):
        settings_for(tmp_path, backfill_hours_per_run=-1)


def readme_block(heading: str, language: str) -> str:
    """The first `language` code block after `heading` in the README."""
    text = README.read_text()
    return text[text.index(heading):].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_readmes_cluster_instance_settings_are_valid_dagster_and_ecs_run_launcher_config(tmp_path):
    (tmp_path / "dagster.yaml").write_text(readme_block("## Scale out", "yaml"))
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["run_launcher"]["class"] == "EcsRunLauncher" and config["concurrency"]["pools"]["default_limit"] == 1
    checked = process_config(EcsRunLauncher.config_type(), config["run_launcher"]["config"])
    assert checked.success, checked.errors
