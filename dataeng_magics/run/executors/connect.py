"""Run approved code over Spark Connect (``sc://``) or Databricks Connect.

The cell runs here, in a worker thread; every DataFrame action becomes a gRPC call to
the server, which does the work. Three things the default client gets wrong for a
batch tool are set here:

- **bounded retries**: by default the client retries a lost server for ten minutes or
  more; here the retry budget is ``retry_seconds`` (20 s by default), so a server that
  goes away mid-job fails the run with one clear line well inside a minute;
- **cancellation**: each run is tagged, and cancel (or Ctrl-C) interrupts that tag on
  the server, so an abandoned run does not keep a cluster busy;
- **progress**: the server's stage and task counts feed the progress line.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dataeng_magics.errors import ConfigError, ExecutionError, MissingDependency
from dataeng_magics.redact import public_path, redact
from dataeng_magics.run.executors.base import (
    Job,
    JobResult,
    JobStatus,
    Metrics,
    ProgressCallback,
    RemoteExecutor,
    first_line,
    run_metrics,
    table_fraction,
)

#: pyspark decides per call whether ``F.col`` & co. build Connect or classic columns
#: from this variable; it must be set while a Connect job's code runs (see _connect_mode).
_MODE_VAR = "SPARK_CONNECT_MODE_ENABLED"
_mode_lock = threading.Lock()
_mode_users = 0


@contextlib.contextmanager
def _connect_mode() -> Iterator[None]:
    """Make pyspark's shared API (``functions``, ``Observation``) build Connect objects.

    pyspark sets this variable for good when a process starts a remote session; we set
    it only while our job runs, so the embedded local Spark (previews) keeps working
    in the same process afterwards.
    """
    global _mode_users
    with _mode_lock:
        _mode_users += 1
        was_set = _MODE_VAR in os.environ
        os.environ.setdefault(_MODE_VAR, "1")
    try:
        yield
    finally:
        with _mode_lock:
            _mode_users -= 1
            if not was_set and _mode_users == 0:
                os.environ.pop(_MODE_VAR, None)


def bounded_retry_policy(budget_seconds: float) -> Any:
    """A retry policy whose total wait is at most ``budget_seconds``.

    It retries what the default policy retries (UNAVAILABLE, server retry hints) with
    exponential backoff from 0.2 s capped at 5 s, and honours a server's retry delay only
    up to the same cap, so no single call can hang on a dead server for long.
    """
    from pyspark.sql.connect.client.retries import DefaultPolicy

    max_backoff_ms = int(min(5.0, budget_seconds) * 1000)
    waits, wait, retries = 0.0, 200.0, 0
    while True:
        step = min(wait, max_backoff_ms)
        if waits + step > budget_seconds * 1000:
            break
        waits, wait, retries = waits + step, wait * 2, retries + 1
    return DefaultPolicy(
        max_retries=max(retries, 1),
        initial_backoff=200,
        backoff_multiplier=2.0,
        max_backoff=max_backoff_ms,
        jitter=100,
        min_jitter_threshold=1000,
        recognize_server_retry_delay=True,
        max_server_retry_delay=max_backoff_ms,
    )


@dataclass
class _Run:
    """One submitted job: its worker thread and what it has reported so far."""

    job: Job
    tag: str
    thread: threading.Thread | None = None
    state: str = "pending"
    metrics: Metrics = field(default_factory=dict)
    error: str = ""
    cancelled: bool = False
    stages: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (done, total)
    operations: int = 0  # server operations finished: each table's write is one
    log: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0


def _classify(exc: BaseException) -> str:
    """Why a Connect call failed, in words a user can act on."""
    text = f"{type(exc).__name__}: {exc}"
    if re.search(
        r"UNAVAILABLE|failed to connect|Connection refused|Socket closed|"
        r"RetriesExceeded|keepalive|DEADLINE_EXCEEDED|Stream removed",
        text,
        re.I,
    ):
        return "lost"
    if re.search(r"OPERATION_CANCELED|cancelled|canceled|interrupted", text, re.I):
        return "cancelled"
    return "failed"


class ConnectOptions(BaseModel):
    """The ``connect`` settings table (README, "Spark Connect and Databricks Connect")."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None  # sc://host:port; else SPARK_REMOTE; else Databricks settings
    databricks: bool | None = None  # None: DatabricksSession when installed and no url
    profile: str | None = None  # ~/.databrickscfg profile
    cluster_id: str | None = None
    serverless: bool = False
    retry_seconds: float = Field(default=20, gt=0, le=300)  # total retry budget per call
    timeout_seconds: float | None = Field(default=None, gt=0)  # whole-run deadline


class ConnectExecutor(RemoteExecutor):
    """Spark Connect at an ``sc://`` URL, or Databricks Connect's ``DatabricksSession``."""

    name = "connect"
    Options = ConnectOptions
    takes_spark_conf = True

    def __init__(
        self,
        url: str | None = None,
        *,
        databricks: bool | None = None,
        profile: str | None = None,
        cluster_id: str | None = None,
        serverless: bool = False,
        retry_seconds: float = 20.0,
        timeout_seconds: float | None = None,
        poll_seconds: float = 0.5,
        progress: ProgressCallback | None = None,
        spark_conf: dict[str, str] | None = None,
        session: Any = None,
    ) -> None:
        self.url = url or os.environ.get("SPARK_REMOTE") or None
        self.databricks = databricks
        self.profile = profile
        self.cluster_id = cluster_id
        self.serverless = serverless
        self.retry_seconds = retry_seconds
        self.timeout_seconds = timeout_seconds
        self.poll_seconds = poll_seconds
        self.progress = progress
        self.spark_conf = dict(spark_conf or {})
        self._spark = session
        self._given = session is not None  # someone else's session: never reconfigured
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()

    # -- the session -----------------------------------------------------------------

    @property
    def uses_databricks(self) -> bool:
        if self.databricks is not None:
            return self.databricks
        if self.url or self._given:
            return False
        import importlib.util

        try:
            return importlib.util.find_spec("databricks.connect") is not None
        except ImportError:  # no "databricks" package at all
            return False

    def location(self) -> dict[str, str]:
        where: dict[str, str] = {}
        if self.url:
            where["url"] = public_path(self.url)
        if self.uses_databricks:
            where["client"] = "databricks-connect"
            host = os.environ.get("DATABRICKS_HOST")
            if host and not self.url:
                where["host"] = host
            cluster = self.cluster_id or os.environ.get("DATABRICKS_CLUSTER_ID")
            if cluster:
                where["cluster_id"] = cluster
            if self.serverless:
                where["serverless"] = "true"
            if self.profile:
                where["profile"] = self.profile
        return where

    def _where(self) -> str:
        loc = self.location()
        return loc.get("url") or loc.get("host") or "Databricks"

    def session(self) -> Any:
        """The remote session, created once, with the bounded retry policy installed."""
        if self._spark is not None:
            return self._spark  # ours, configured already, or a notebook's: left as it is
        with _connect_mode():  # creating it would set pyspark's Connect mode for good
            spark = self._databricks_session() if self.uses_databricks else self._sc()
        client = getattr(spark, "client", None)
        if client is not None and hasattr(client, "set_retry_policies"):
            client.set_retry_policies([bounded_retry_policy(self.retry_seconds)])
        for key, value in self.spark_conf.items():  # secrets reach the session, not the code
            spark.conf.set(key, value)
        self._spark = spark
        return spark

    def _sc(self) -> Any:
        if not self.url:
            raise ConfigError(
                "no Spark Connect URL",
                hint="Set connect.url (sc://host:15002) in the settings or SPARK_REMOTE, "
                "or install databricks-connect to use the DATABRICKS_* settings.",
            )
        if not self.url.startswith("sc://"):
            raise ConfigError(
                f"{public_path(self.url)!r} is not an sc:// URL",
                hint="Spark Connect URLs look like sc://host:15002.",
            )
        try:
            from pyspark.sql.connect.session import SparkSession
        except ImportError as exc:
            raise MissingDependency(exc.name or "grpcio", "connect", "Spark Connect") from None
        try:
            return SparkSession.builder.remote(self.url).create()
        except Exception as exc:
            raise ExecutionError(
                f"cannot open a Spark Connect session at {public_path(self.url)}: "
                f"{redact(first_line(exc))}",
                hint="Check that the server is running and reachable.",
            ) from None

    def _databricks_session(self) -> Any:
        try:
            from databricks.connect import DatabricksSession
        except ImportError:
            err = MissingDependency("databricks-connect", "databricks", "Databricks Connect")
            err.hint = (
                "Install it in its own environment (it replaces pyspark): pip install "
                '"databricks-connect==16.1.*" "numpy<2", then dataeng-magics with --no-deps.'
            )
            raise err from None
        builder = DatabricksSession.builder
        if self.url:
            builder = builder.remote(self.url)
        else:
            if self.profile:
                builder = builder.profile(self.profile)
            if self.cluster_id:
                builder = builder.clusterId(self.cluster_id)
            if self.serverless:
                builder = builder.serverless(True)
        try:
            spark = builder.getOrCreate()
        except Exception as exc:
            raise ExecutionError(
                f"cannot open a Databricks Connect session: {redact(first_line(exc))}",
                hint="Check DATABRICKS_HOST, DATABRICKS_TOKEN and DATABRICKS_CLUSTER_ID "
                "(or a profile with cluster_id or serverless).",
            ) from None
        return spark

    # -- the job ---------------------------------------------------------------------

    def submit(self, job: Job) -> str:
        spark = self.session()
        handle = f"dataeng-magics-{job.key[:12]}-{uuid.uuid4().hex[:8]}"
        run = _Run(job, handle)
        with self._lock:
            self._runs[handle] = run
        run.thread = threading.Thread(
            target=self._work, args=(spark, run), name=f"dem-{handle}", daemon=True
        )
        run.state = "running"
        run.thread.start()
        return handle

    def _work(self, spark: Any, run: _Run) -> None:
        namespace: dict[str, Any] = {"spark": spark}
        handler = self._progress_handler(run)
        with contextlib.suppress(Exception):
            spark.registerProgressHandler(handler)
        try:
            spark.addTag(run.tag)
            with _connect_mode():
                code = compile(run.job.code, f"<dataeng-magics {run.job.key[:12]}>", "exec")
                exec(code, namespace)
                run.metrics = run_metrics(namespace.get("run_metrics", {}))
            run.state = "succeeded"
        except BaseException as exc:  # the worker must always report, whatever happened
            kind = "cancelled" if run.cancelled else _classify(exc)
            run.error = redact(first_line(exc))
            run.log.append(f"{type(exc).__name__}: {run.error}")
            run.state = "cancelled" if kind == "cancelled" else "failed"
            if kind == "lost":
                run.error = f"lost the Spark Connect server at {self._where()}: {run.error}"
        finally:
            run.seconds = time.perf_counter() - run.started
            with contextlib.suppress(Exception):
                spark.removeTag(run.tag)
            with contextlib.suppress(Exception):
                spark.removeProgressHandler(handler)

    def _progress_handler(self, run: _Run) -> Any:
        def handler(stages: Any, inflight_tasks: int, operation_id: Any, done: bool) -> None:
            for st in stages or []:
                run.stages[st.stage_id] = (st.num_completed_tasks, st.num_tasks)
            run.operations += done

        return handler

    def status(self, handle: str) -> JobStatus:
        run = self._run(handle)
        if run.state in ("succeeded", "failed", "cancelled"):
            return JobStatus(run.state, 1.0 if run.state == "succeeded" else None, run.error)  # type: ignore[arg-type]
        done = sum(d for d, _ in run.stages.values())
        total = sum(t for _, t in run.stages.values())
        message = f"{len(run.stages)} stages, tasks {done}/{total} on {self._where()}"
        tables = len(run.job.tables)
        if tables:
            message = f"tables {min(run.operations, tables)}/{tables} written, {message}"
        return JobStatus("running", table_fraction(run.operations, tables), message)

    def cancel(self, handle: str) -> None:
        run = self._run(handle)
        run.cancelled = True
        if self._spark is not None:
            with contextlib.suppress(Exception):  # a dead server has nothing left to cancel
                self._spark.interruptTag(run.tag)
        if run.thread is not None:
            run.thread.join(timeout=self.retry_seconds + 10)

    def logs(self, handle: str) -> str:
        return "\n".join(self._run(handle).log)

    def result(self, handle: str, job: Job) -> JobResult:
        run = self._run(handle)
        if run.thread is not None:
            run.thread.join()
        with self._lock:
            self._runs.pop(handle, None)
        if run.state == "cancelled":
            raise ExecutionError(
                f"{job.name} was cancelled on {self._where()}",
                hint="Nothing was recorded as a success; run it again when ready.",
                state="cancelled",
            )
        if run.state != "succeeded":
            hint = (
                "Check that the server is up, then run again; nothing was recorded as a success."
                if run.error.startswith("lost the")
                else "Nothing was recorded as a success; fix the input or revise the plan."
            )
            raise ExecutionError(
                f"the run failed on {job.name}: {run.error}", hint=hint, state="failed"
            )
        details: dict[str, Any] = {**self.location(), "tag": run.tag}
        return JobResult(self.name, run.metrics, run.seconds, details)

    def _run(self, handle: str) -> _Run:
        with self._lock:
            run = self._runs.get(handle)
        if run is None:
            raise ExecutionError(f"no job {handle!r} on this executor")
        return run

    def close(self) -> None:
        """End the remote session (its temporary state on the server goes with it)."""
        if self._spark is not None:
            with contextlib.suppress(Exception):
                self._spark.stop()
            self._spark = None
