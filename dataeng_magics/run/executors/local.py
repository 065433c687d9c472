"""Run approved code on the embedded local Spark (or the active session, if any)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from typing import Any

from dataeng_magics.errors import ExecutionError, MissingDependency
from dataeng_magics.run.executors.base import (
    Executor,
    Job,
    JobResult,
    JobStatus,
    Metrics,
    ProgressCallback,
    first_line,
    interrupted,
    run_metrics,
)


def spark_session() -> Any:
    """The active session, or a quiet ``local[*]`` one started once per process."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise MissingDependency(
            exc.name or "pyspark",
            None,
            "local Spark",
            install='pip install "dataeng-magics" (pyspark is one of its dependencies)',
        ) from None

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    try:
        spark = (
            SparkSession.builder.master(os.environ.get("DATAENG_MAGICS_SPARK_MASTER", "local[*]"))
            .appName("dataeng-magics")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate()
        )
    except Exception as exc:  # no Java, a bad JAVA_HOME, a port that cannot bind, ...
        raise ExecutionError(
            f"cannot start local Spark: {first_line(exc)}",
            hint="Local runs need Java 17 (JAVA_HOME); or set another platform.",
        ) from exc
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def execute(code: str, spark: Any, job: Job) -> Metrics:
    """Run the cell in a fresh namespace holding only ``spark``; return its metrics."""
    namespace: dict[str, Any] = {"spark": spark}
    try:
        exec(compile(code, f"<dataeng-magics {job.key[:12]}>", "exec"), namespace)
    except Exception as exc:
        from dataeng_magics.redact import redact

        line = first_line(exc)
        error = ExecutionError(
            f"the run failed on {job.name}: {redact(line)}",
            hint="Nothing was recorded as a success; fix the input or revise the plan.",
        )
        # A cause holding a secret would print it in the traceback: drop it then.
        raise error from (exc if redact(str(exc)) == str(exc) else None)
    return run_metrics(namespace.get("run_metrics", {}))


class SparkProgress:
    """Polls Spark's status tracker for one job group and reports stage and task counts.

    Spark's own console bar is off (it floods notebook output); this gives one line that
    a ``TextProgress`` rewrites in place.
    """

    def __init__(self, spark: Any, group: str, report: ProgressCallback, every: float = 0.5):
        self.tracker = spark.sparkContext.statusTracker()
        self.group = group
        self.report = report
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dem-progress", daemon=True)

    def __enter__(self) -> SparkProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def snapshot(self) -> JobStatus:
        jobs = [self.tracker.getJobInfo(j) for j in self.tracker.getJobIdsForGroup(self.group)]
        stage_ids = [s for j in jobs if j is not None for s in j.stageIds]
        stages = [st for st in (self.tracker.getStageInfo(s) for s in stage_ids) if st]
        total = sum(st.numTasks for st in stages)
        done = sum(st.numCompletedTasks for st in stages)
        running = [j for j in jobs if j is not None and j.status == "RUNNING"]
        message = f"{len(jobs)} Spark jobs, {len(running)} running, tasks {done}/{total}"
        return JobStatus("running", done / total if total else None, message)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # the tracker is best effort, never fatal
                self.report(self.snapshot())


class LocalExecutor(Executor):
    """The embedded local Spark; also the base of the notebook executor (same calls)."""

    name = "local"
    takes_spark_conf = True

    def __init__(
        self,
        progress: ProgressCallback | None = None,
        spark_conf: dict[str, str] | None = None,
    ) -> None:
        self.progress = progress
        self.spark_conf = dict(spark_conf or {})

    def session(self) -> Any:
        return spark_session()

    def details(self, spark: Any) -> dict[str, Any]:
        return {"master": spark.sparkContext.master}

    def run(self, job: Job) -> JobResult:
        started = time.perf_counter()
        spark = self.session()
        for key, value in self.spark_conf.items():  # secrets go to the session, never the code
            spark.conf.set(key, value)
        context = spark.sparkContext
        group = f"dataeng-magics-{job.key[:12]}-{uuid.uuid4().hex[:8]}"
        context.setJobGroup(group, job.name, interruptOnCancel=True)
        self.report(JobStatus("running", message=f"{job.name} started"))
        try:
            with SparkProgress(spark, group, self.report):
                metrics = execute(job.code, spark, job)
        except KeyboardInterrupt:
            context.cancelJobGroup(group)
            self.report(JobStatus("cancelled", message="interrupted by the user"))
            raise interrupted(job, "its Spark jobs were") from None
        except ExecutionError:
            self.report(JobStatus("failed"))
            raise
        finally:
            context.setLocalProperty("spark.jobGroup.id", None)
            context.setLocalProperty("spark.job.description", None)
        self.report(JobStatus("succeeded", 1.0, f"{job.name} done"))
        return JobResult(self.name, metrics, time.perf_counter() - started, self.details(spark))
