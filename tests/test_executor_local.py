"""The local executor's progress reporting and Ctrl-C cancellation, on real local Spark."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dataeng_magics.errors import ExecutionError
from dataeng_magics.run.executors import Job, JobStatus, TextProgress
from dataeng_magics.run.executors.local import LocalExecutor

pytestmark = pytest.mark.spark


def job(code: str) -> Job:
    return Job(name="T/000", client="T", key="0" * 64, code=code)


def test_progress_reports_spark_tasks_then_success(spark: Any) -> None:
    seen: list[JobStatus] = []
    # Tasks that each sleep 1.5 s, so the job outlasts several polls on any machine
    # (executor test code, not a plan: plans may never call reflect).
    code = (
        "spark.range(0, 4, 1, 4).selectExpr(\n"
        "    \"reflect('java.lang.Thread', 'sleep', CAST(1500 AS BIGINT))\").collect()\n"
        "run_metrics = {'T': {'rows_written': 1}}\n"
    )
    result = LocalExecutor(progress=seen.append).run(job(code))
    assert result.metrics == {"T": {"rows_written": 1}}
    running = [st for st in seen if st.state == "running" and "tasks" in st.message]
    assert running, f"no task progress among {seen}"
    assert seen[-1].state == "succeeded"


def test_progress_over_the_output_tables_never_goes_back(spark: Any, tmp_path: Path) -> None:
    """Spark submits jobs as the code runs; the fraction is over the plan's tables, so
    it does not fall when a new job appears (it used to go 100% -> 50% -> 60%)."""
    seen: list[JobStatus] = []
    # task i sleeps 0.3 + 0.7 i seconds: tasks end one by one, whatever the core count
    sleep = "reflect('java.lang.Thread', 'sleep', CAST(300 + id * 700 AS BIGINT)) AS s"
    write = 'write.mode("overwrite").format("parquet").save'
    code = (  # a job before each write, so the number of Spark jobs keeps growing
        f'spark.range(0, 2, 1, 2).selectExpr("{sleep}").collect()\n'
        f'spark.range(0, 4, 1, 4).selectExpr("id", "{sleep}").{write}("{tmp_path}/A")\n'
        f'spark.range(0, 2, 1, 2).selectExpr("{sleep}").collect()\n'
        f'spark.range(0, 4, 1, 4).selectExpr("id", "{sleep}").{write}("{tmp_path}/B")\n'
        "run_metrics = {'A': {'rows_written': 4}, 'B': {'rows_written': 4}}\n"
    )
    executor = LocalExecutor(progress=seen.append)
    executor.run(Job(name="T/000", client="T", key="0" * 64, code=code, tables=("A", "B")))
    running = [st for st in seen if st.state == "running" and st.progress is not None]
    fractions = [st.progress for st in running]
    assert fractions == sorted(fractions), [st.to_text() for st in running]
    assert any(0 < f < 0.5 for f in fractions) and any(f > 0.5 for f in fractions), [
        st.to_text() for st in running
    ]
    messages = " | ".join(st.message for st in running)
    assert "table 1/2 A" in messages and "table 2/2 B" in messages
    assert "Spark jobs 3/" in messages and "tasks" in messages
    assert seen[-1].state == "succeeded" and seen[-1].progress == 1.0


def test_ctrl_c_cancels_the_spark_jobs(spark: Any) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT reaches only the main thread")
    slow = 'spark.range(0, 10**12, 1, 8).selectExpr("sum(id % 7)").collect()\nrun_metrics = {}\n'
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(ExecutionError, match="interrupted") as err:
            LocalExecutor().run(job(slow))
    finally:
        timer.cancel()
    assert time.monotonic() - started < 30
    assert err.value.fields["state"] == "cancelled"
    tracker = spark.sparkContext.statusTracker()
    deadline = time.monotonic() + 10
    while tracker.getActiveJobsIds() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not tracker.getActiveJobsIds()


def test_text_progress_rewrites_one_line() -> None:
    out = io.StringIO()
    show = TextProgress("local", stream=out, every=0)
    show(JobStatus("running", 0.25, "tasks 1/4"))
    show(JobStatus("running", 0.25, "tasks 1/4"))  # unchanged: not written again
    show(JobStatus("succeeded", 1.0))
    first, last = "[local] running  25%: tasks 1/4", "[local] succeeded 100%"
    assert out.getvalue() == f"\r{first}\r{last}{' ' * (len(first) - len(last))}\n"


#: What a new local Spark prints on stderr before it runs anything (Spark 4, Java 17).
START_UP_LINES = (
    "Using incubator modules",
    "Using Spark's default log4j profile",
    "setLogLevel",
    "NativeCodeLoader",
)


@pytest.mark.slow
def test_spark_start_up_lines_reach_the_terminal_only_with_verbose(tmp_path: Path) -> None:
    """The README's demo in a fresh process, as a user runs it, then with --verbose."""
    exe = Path(sys.executable).parent / "dataeng-magics"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dataeng_magics.cli"]
    runs = {}
    for flags in ([], ["--verbose"]):
        home = tmp_path / f"home{len(flags)}"
        env = {**os.environ, "DATAENG_MAGICS_HOME": str(home)}
        env.pop("DATAENG_MAGICS_VERBOSE", None)
        out = str(tmp_path / f"out{len(flags)}")
        done = subprocess.run(
            [*cmd, *flags, "demo", "--output-dir", out, "--reviewer", "ci"],
            capture_output=True, text=True, env=env, timeout=900,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCEEDED on local" in done.stdout
        runs[bool(flags)] = done.stderr
    assert not [line for line in START_UP_LINES if line in runs[False]], runs[False]
    # NativeCodeLoader warns only where Hadoop's native libraries are missing
    assert all(line in runs[True] for line in START_UP_LINES[:3]), runs[True]
