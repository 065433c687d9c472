"""Shared fixtures: one local Spark session per test run, a fresh state dir per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_server import pg_database, postgres, state_target  # noqa: F401 (shared fixtures)
from spark_servers import azurite, spark_connect_server  # noqa: F401 (shared fixtures)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DIR = REPO / "example_notebooks" / "data" / "northwind"


@pytest.fixture(autouse=True)
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own store and audit log; nothing leaks into ~/.dataeng_magics."""
    home = tmp_path / "state"
    monkeypatch.setenv("DATAENG_MAGICS_HOME", str(home))
    monkeypatch.delenv("DATAENG_MAGICS_MODE", raising=False)
    yield home
    # pyspark switches a whole process to Spark Connect when a remote session starts
    # (SPARK_CONNECT_MODE_ENABLED): a test that started one must not leave the shared
    # local session's later users on Connect.
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """The one Spark session of the test run (starting one takes ~10 s)."""
    from dataeng_magics.run.executors.local import spark_session

    session = spark_session()
    yield session
    session.stop()


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A private copy of the bundled example client; returns its mapping workbook."""
    target = tmp_path / "northwind"
    shutil.copytree(EXAMPLE_DIR, target)
    return target / "northwind.xlsx"
