"""Fixtures shared across test modules: a real storage folder, a real DuckDB, the hand-built contacts."""

import duckdb
import pytest

from ctr_assets.storage import LocalStorage
from ctr_assets_tests.hand_built import hand_built  # noqa: F401  (a session fixture: the metric tests' data)


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(root=str(tmp_path / "data"))


@pytest.fixture
def connection():
    with duckdb.connect() as connection:
        yield connection
