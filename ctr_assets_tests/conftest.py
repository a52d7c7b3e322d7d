"""Small generic fixtures shared by the record-logic tests: a real storage folder and a real DuckDB."""

import duckdb
import pytest

from ctr_assets.storage import LocalStorage


@pytest.fixture
def storage(tmp_path) -> LocalStorage:
    return LocalStorage(root=str(tmp_path / "data"))


@pytest.fixture
def connection():
    with duckdb.connect() as connection:
        yield connection
