"""Run approved code on the notebook's own ``spark`` inside Databricks or Fabric.

There the cluster is already attached to the notebook: starting another session would
be slow at best and refused at worst. Detection uses only what each platform documents:
Databricks sets ``DATABRICKS_RUNTIME_VERSION`` and puts ``spark`` in the notebook's
namespace; Fabric makes ``notebookutils`` (formerly ``mssparkutils``) importable and
puts ``spark`` in the namespace. ``--platform auto`` picks this executor there and the
embedded local Spark elsewhere.

Databricks serverless and shared clusters give the notebook a Spark Connect session;
the job then runs through the Connect path (tags for cancel, server-side progress).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Literal

from dataeng_magics.errors import ConfigError
from dataeng_magics.run.executors.base import Job, JobResult
from dataeng_magics.run.executors.local import LocalExecutor

Notebook = Literal["databricks", "fabric"]


def user_namespace() -> dict[str, Any] | None:
    """The running IPython shell's user namespace, without importing IPython."""
    ipython_module = sys.modules.get("IPython")
    if ipython_module is None:
        return None
    shell = ipython_module.get_ipython()
    return None if shell is None else dict(shell.user_ns)


def _has_notebookutils() -> bool:
    for name in ("notebookutils", "mssparkutils"):
        if name in sys.modules:
            return True
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


def detect() -> Notebook | None:
    """Which notebook platform this process runs in, if any (and it has a ``spark``)."""
    namespace = user_namespace()
    if namespace is None or namespace.get("spark") is None:
        return None
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return "databricks"
    if _has_notebookutils():
        return "fabric"
    return None


_CONTEXT_KEYS = {
    "workspace_id": "currentWorkspaceId",
    "notebook_id": "currentNotebookId",
    "lakehouse_id": "defaultLakehouseId",
}


def fabric_context() -> dict[str, str]:
    """Workspace, notebook and lakehouse ids from ``notebookutils.runtime.context``."""
    for name in ("notebookutils", "mssparkutils"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        context = getattr(getattr(module, "runtime", None), "context", None) or {}
        values = {
            ours: context.get(theirs)
            if isinstance(context, dict)
            else getattr(context, theirs, None)
            for ours, theirs in _CONTEXT_KEYS.items()
        }
        return {ours: str(value) for ours, value in values.items() if value}
    return {}


def _is_connect(spark: Any) -> bool:
    return type(spark).__module__.startswith(("pyspark.sql.connect", "databricks.connect"))


class NotebookExecutor(LocalExecutor):
    """The notebook's own Spark session, on Databricks or Fabric."""

    name = "notebook"
    local_files = False  # the cluster's workers cannot read the driver's disk

    def __init__(self, *args: Any, spark: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._spark = spark

    @property
    def platform(self) -> Notebook | None:
        return detect()

    def session(self) -> Any:
        if self._spark is not None:
            return self._spark
        namespace = user_namespace() or {}
        spark = namespace.get("spark")
        if spark is None or self.platform is None:
            raise ConfigError(
                "platform 'notebook' needs a Databricks or Fabric notebook with `spark`",
                hint="Use --platform local (or auto) elsewhere, or connect / fabric to "
                "reach those platforms from outside.",
            )
        return spark

    def location(self) -> dict[str, str]:
        where: dict[str, str] = {}
        platform = self.platform
        if platform is not None:
            where["notebook"] = platform
        if platform == "databricks":
            where["runtime"] = os.environ.get("DATABRICKS_RUNTIME_VERSION", "")
        elif platform == "fabric":
            where.update(fabric_context())
        return where

    def details(self, spark: Any) -> dict[str, Any]:
        return self.location()

    def run(self, job: Job) -> JobResult:
        spark = self.session()
        if not _is_connect(spark):
            return super().run(job)
        from dataeng_magics.run.executors.connect import ConnectExecutor

        for key, value in self.spark_conf.items():  # secrets reach the session, not the code
            spark.conf.set(key, value)
        remote = ConnectExecutor(session=spark, progress=self.progress, poll_seconds=0.5)
        result = remote.run(job)
        return JobResult(self.name, result.metrics, result.seconds, self.location())
