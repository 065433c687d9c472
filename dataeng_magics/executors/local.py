"""Run approved code on the embedded local Spark (or the active session, if any)."""

from __future__ import annotations

import os
import time
from typing import Any

from dataeng_magics.errors import ExecutionError
from dataeng_magics.executors.base import Executor, Job, JobResult


def spark_session() -> Any:
    """The active session, or a quiet ``local[*]`` one started once per process."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    spark = (
        SparkSession.builder.master(os.environ.get("DATAENG_MAGICS_SPARK_MASTER", "local[*]"))
        .appName("dataeng-magics")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def first_line(exc: BaseException) -> str:
    """Spark errors carry pages of JVM stack; users need the first meaningful line."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def execute(code: str, spark: Any, job: Job) -> dict[str, dict[str, int]]:
    """Run the cell in a fresh namespace holding only ``spark``; return its metrics."""
    namespace: dict[str, Any] = {"spark": spark}
    try:
        exec(compile(code, f"<dataeng-magics {job.key[:12]}>", "exec"), namespace)
    except Exception as exc:
        raise ExecutionError(
            f"the run failed on {job.name}: {first_line(exc)}",
            hint="Nothing was recorded as a success; fix the input or revise the plan.",
        ) from exc
    metrics = namespace.get("run_metrics", {})
    return {t: {k: int(v or 0) for k, v in m.items()} for t, m in metrics.items()}


class LocalExecutor(Executor):
    name = "local"

    def run(self, job: Job) -> JobResult:
        started = time.perf_counter()
        spark = spark_session()
        metrics = execute(job.code, spark, job)
        return JobResult(
            "local", metrics, time.perf_counter() - started, {"master": spark.sparkContext.master}
        )
