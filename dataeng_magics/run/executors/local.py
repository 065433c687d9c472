"""Run approved code on the embedded local Spark (or the active session, if any)."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    table_fraction,
)

if TYPE_CHECKING:
    from dataeng_magics.config import Settings

#: Errors only, and none of Spark's start-up lines (see the file).
QUIET_LOG4J2 = Path(__file__).with_name("log4j2.properties")
#: What the JVM itself prints when Spark 4 loads the vector API; log4j cannot stop it.
_JVM_NOTICE = re.compile(rb"WARNING: Using incubator modules")


#: Held while the session starts: a review panel starts Spark in a background thread,
#: and a run or preview asked for meanwhile must wait for it, not start a second one.
_STARTING = threading.Lock()


def spark_session(verbose: bool = False) -> Any:
    """The active session, or a ``local[*]`` one started once per process (by one
    thread at a time)."""
    with _STARTING:
        return _spark_session(verbose)


def _spark_session(verbose: bool) -> Any:
    """The active session, or a ``local[*]`` one started once per process.

    Spark's start-up lines (log4j profile, log level hint, native-Hadoop warning, the
    JVM's incubator notice) are kept off the user's terminal unless ``verbose``.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    try:
        from pyspark import SparkConf
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
    conf = (
        SparkConf()
        .setMaster(os.environ.get("DATAENG_MAGICS_SPARK_MASTER", "local[*]"))
        .setAppName("dataeng-magics")
        .set("spark.ui.enabled", "false")
        .set("spark.ui.showConsoleProgress", "false")
        .set("spark.sql.session.timeZone", "UTC")
        .set("spark.scheduler.mode", "FAIR")  # a batch's clients share it (a pool each)
    )
    try:
        if not verbose:
            _start_quietly(conf)
        spark = SparkSession.builder.config(conf=conf).getOrCreate()
    except Exception as exc:  # no Java, a bad JAVA_HOME, a port that cannot bind, ...
        raise ExecutionError(
            f"cannot start local Spark: {first_line(exc)}",
            hint="Local runs need Java 17 (JAVA_HOME); or set another platform.",
        ) from exc
    if not verbose:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _start_quietly(conf: Any) -> None:
    """Start Spark's JVM with our log4j2 settings and its stderr read through a filter.

    pyspark starts the JVM with the stderr it is given (``popen_kwargs``, meant for this);
    a pipe read from before the JVM starts can never fill up and stall it. Everything
    but the JVM's incubator notice reaches our stderr as before.
    """
    from pyspark import SparkContext
    from pyspark.java_gateway import launch_gateway

    # A JVM runs already (a stopped session's, or a platform's): pyspark reuses it.
    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    conf.set("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={QUIET_LOG4J2.as_uri()}")
    read, write = os.pipe()
    threading.Thread(target=_forward, args=(read,), name="dem-jvm-stderr", daemon=True).start()
    try:
        gateway = launch_gateway(conf, popen_kwargs={"stderr": write})
    finally:
        os.close(write)  # the JVM holds its own copy; the pipe ends when the JVM does
    SparkContext(conf=conf, gateway=gateway)


def _forward(read: int) -> None:
    """Copy the JVM's stderr to ours, line by line, without its incubator notice."""
    with open(read, "rb") as pipe:
        for line in pipe:
            if not _JVM_NOTICE.match(line):
                with contextlib.suppress(OSError):
                    os.write(2, line)


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
    """Polls Spark's status tracker for one job group: how many output tables are
    written, how many Spark jobs are done, and the running stage's tasks.

    The fraction is over the tables, which the plan knows up front: Spark submits jobs
    as the code runs, so a fraction over the tasks seen so far would fall each time a job
    starts. Each table is written by one Spark job (its stage named after ``save``, the
    call our compiler writes) worth ``1/tables``, filled by the mean of its stages' task
    fractions (a stage not yet started counts 0); so the fraction never goes back. Spark's
    own console bar is off (it floods notebook output); ``TextProgress`` shows this line.
    """

    def __init__(
        self,
        spark: Any,
        group: str,
        report: ProgressCallback,
        tables: Sequence[str] = (),
        every: float = 0.5,
    ) -> None:
        self.tracker = spark.sparkContext.statusTracker()
        self.group = group
        self.report = report
        self.tables = tuple(tables)
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
        found = (self.tracker.getJobInfo(j) for j in self.tracker.getJobIdsForGroup(self.group))
        jobs = sorted((j for j in found if j is not None), key=lambda j: j.jobId)
        stages = {s: self.tracker.getStageInfo(s) for j in jobs for s in j.stageIds}
        written = sum(_written(job, stages) for job in jobs)
        done = sum(job.status == "SUCCEEDED" for job in jobs)
        parts = [f"Spark jobs {done}/{len(jobs)} done"]
        if self.tables:
            at = min(int(written), len(self.tables) - 1)
            parts.insert(0, f"table {at + 1}/{len(self.tables)} {self.tables[at]}")
        unfinished = [st for st in stages.values() if st and st.numCompletedTasks < st.numTasks]
        if unfinished:
            st = unfinished[-1]
            parts.append(f"stage {st.stageId}: tasks {st.numCompletedTasks}/{st.numTasks}")
        return JobStatus("running", table_fraction(written, len(self.tables)), ", ".join(parts))

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            with contextlib.suppress(Exception):  # the tracker is best effort, never fatal
                self.report(self.snapshot())


def _written(job: Any, stages: dict[int, Any]) -> float:
    """How much of one output table a Spark job has written: 0 for a job that writes
    none, 1 once it succeeded, else the mean of its stages' task fractions."""
    infos = [stages[s] for s in job.stageIds]
    if not any(st and st.name.startswith("save at") for st in infos):
        return 0.0
    if job.status == "SUCCEEDED":
        return 1.0
    parts = [st.numCompletedTasks / st.numTasks if st and st.numTasks else 0.0 for st in infos]
    return sum(parts) / len(parts)


class LocalExecutor(Executor):
    """The embedded local Spark; also the base of the notebook executor (same calls)."""

    name = "local"
    takes_spark_conf = True
    local_files = True

    def __init__(
        self,
        progress: ProgressCallback | None = None,
        spark_conf: dict[str, str] | None = None,
        verbose: bool = False,
    ) -> None:
        self.progress = progress
        self.spark_conf = dict(spark_conf or {})
        self.verbose = verbose

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Executor:
        options.setdefault("verbose", settings.verbose)
        return super().from_settings(settings, **options)

    def session(self) -> Any:
        return spark_session(self.verbose)

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
            with SparkProgress(spark, group, self.report, job.tables):
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
