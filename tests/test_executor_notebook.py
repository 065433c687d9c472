"""The notebook executor: detection in simulated Databricks and Fabric notebooks, and a
real run on the `spark` found in the notebook's namespace."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from dataeng_magics.config import load_settings
from dataeng_magics.errors import ConfigError
from dataeng_magics.run.executors import get_executor
from dataeng_magics.run.executors.local import LocalExecutor
from dataeng_magics.run.executors.notebook import NotebookExecutor, detect
from dataeng_magics.run.executors.registry import resolve_platform
from dataeng_magics.workflow import TransformRequest, TransformSession

pytestmark = pytest.mark.notebook


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """A real IPython shell (what a notebook kernel runs), with an empty namespace."""
    created = not InteractiveShell.initialized()
    ip = InteractiveShell.instance()
    yield ip
    for name in ("spark", "sc"):
        ip.user_ns.pop(name, None)
    if created:  # leave no singleton behind: other tests make their own shell class
        InteractiveShell.clear_instance()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("DATABRICKS_RUNTIME_VERSION", raising=False)
    for name in ("notebookutils", "mssparkutils"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return monkeypatch


def fake_notebookutils(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fabric's notebookutils, as far as we use it: runtime.context."""
    module = types.ModuleType("notebookutils")
    module.runtime = types.SimpleNamespace(  # type: ignore[attr-defined]
        context={
            "currentWorkspaceId": "ws-1111",
            "currentNotebookId": "nb-2222",
            "defaultLakehouseId": "lh-3333",
            "isForPipeline": False,
        }
    )
    monkeypatch.setitem(sys.modules, "notebookutils", module)


def test_nothing_detected_outside_notebooks(clean_env: pytest.MonkeyPatch, shell: Any) -> None:
    assert detect() is None
    assert resolve_platform("auto") == "local"
    clean_env.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert detect() is None, "no `spark` in the namespace: not a usable notebook"
    with pytest.raises(ConfigError, match="needs a Databricks or Fabric notebook"):
        NotebookExecutor().session()


def test_databricks_detected_and_auto_runs_there(
    clean_env: pytest.MonkeyPatch, shell: Any, spark: Any, example: Path, tmp_path: Path
) -> None:
    clean_env.setenv("DATABRICKS_RUNTIME_VERSION", "15.4.x-scala2.12")
    shell.user_ns["spark"] = spark
    assert detect() == "databricks"
    assert resolve_platform("auto") == "notebook"
    s = TransformSession(
        TransformRequest(client="NORTHWIND", mapping=example, platform="auto"), load_settings()
    )
    s.draft()
    s.approve("alice")
    summary = s.run(output_dir=str(tmp_path / "out"))
    assert summary.outcome == "succeeded" and summary.platform == "notebook"
    assert summary.details == {"notebook": "databricks", "runtime": "15.4.x-scala2.12"}
    start = next(e for e in s.audit.events() if e.event == "run_start")
    assert start.details["platform"] == "notebook" and start.details["notebook"] == "databricks"
    assert (tmp_path / "out" / "TRADES" / "_SUCCESS").exists()


def test_fabric_detected_with_its_context(
    clean_env: pytest.MonkeyPatch, shell: Any, spark: Any
) -> None:
    shell.user_ns["spark"] = spark
    assert detect() is None
    fake_notebookutils(clean_env)
    assert detect() == "fabric"
    executor = get_executor("auto", settings=load_settings())
    assert isinstance(executor, NotebookExecutor)
    assert executor.location() == {
        "notebook": "fabric",
        "workspace_id": "ws-1111",
        "notebook_id": "nb-2222",
        "lakehouse_id": "lh-3333",
    }
    assert executor.session() is spark


def test_auto_is_local_without_a_notebook(clean_env: pytest.MonkeyPatch) -> None:
    assert isinstance(get_executor("auto", settings=load_settings()), LocalExecutor)
    assert not isinstance(get_executor("auto"), NotebookExecutor)


@pytest.mark.connect
def test_a_spark_connect_notebook_session_runs_through_connect(
    clean_env: pytest.MonkeyPatch, shell: Any, spark_connect_server: Any
) -> None:
    """Databricks serverless hands the notebook a Spark Connect session."""
    from pyspark.sql.connect.session import SparkSession

    remote = SparkSession.builder.remote(spark_connect_server.url).create()
    try:
        clean_env.setenv("DATABRICKS_RUNTIME_VERSION", "client.1.13")
        shell.user_ns["spark"] = remote
        from dataeng_magics.run.executors import Job

        code = "run_metrics = {'T': {'rows_written': spark.range(11).count()}}\n"
        result = NotebookExecutor().run(Job(name="t", client="T", key="0" * 64, code=code))
        assert result.platform == "notebook" and result.metrics == {"T": {"rows_written": 11}}
        assert result.details["notebook"] == "databricks"
    finally:
        remote.stop()
