"""The connect executor against a real Spark Connect server started from pyspark."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from spark_servers import Server, start_connect_server, stop

from dataeng_magics.config import load_settings
from dataeng_magics.errors import ExecutionError
from dataeng_magics.redact import public_path
from dataeng_magics.run.executors import Job, JobStatus, get_executor
from dataeng_magics.run.executors.connect import ConnectExecutor, bounded_retry_policy
from dataeng_magics.workflow import TransformRequest, TransformSession

pytestmark = pytest.mark.connect

#: Enough work to keep local[2] busy for minutes: cancel and kill tests stop it early.
SLOW = 'spark.range(0, 10**12, 1, 8).selectExpr("sum(id % 7) AS s").collect()\nrun_metrics = {}\n'


def approved(mapping: Path, platform: str = "connect") -> TransformSession:
    s = TransformSession(
        TransformRequest(client="NORTHWIND", mapping=mapping, platform=platform), load_settings()
    )
    s.draft()
    s.approve("alice")
    return s


def job(code: str, name: str = "test") -> Job:
    return Job(name=name, client="T", key="0" * 64, code=code)


def test_example_client_runs_over_spark_connect(
    spark_connect_server: Server, example: Path, tmp_path: Path
) -> None:
    seen: list[JobStatus] = []
    executor = ConnectExecutor(spark_connect_server.url, progress=seen.append, poll_seconds=0.2)
    s = approved(example)
    summary = s.run(output_dir=str(tmp_path / "out"), executor=executor)
    assert summary.outcome == "succeeded" and summary.platform == "connect"
    assert summary.rows_in > 5000 and summary.rows_out > 0
    trades = pq.read_table(tmp_path / "out" / "TRADES")
    assert trades.num_rows == summary.report.tables[0].rows_written
    assert "TRADE_DATE" in trades.column_names
    assert [f.name for f in trades.schema if not f.nullable] == []  # as on local Spark
    assert [st.state for st in seen][-1] == "succeeded"
    assert any(st.state == "running" for st in seen)
    # the fraction is over the plan's two tables: it never goes back as stages appear
    fractions = [st.progress for st in seen if st.state == "running"]
    assert fractions == sorted(fractions) and set(fractions) <= {0.0, 0.5, 1.0}
    # the run record says where it ran, without URL parameters
    runs = sqlite3.connect(s.settings.store_path).execute("SELECT platform, details FROM runs")
    platform, details = runs.fetchone()
    assert platform == "connect" and json.loads(details)["url"] == spark_connect_server.url
    end = [e for e in s.audit.events() if e.event == "run_end"][-1]
    assert end.details["url"] == spark_connect_server.url
    # the local Spark API still builds classic columns after a Connect run in this process
    import os

    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ


def test_platform_setting_builds_the_executor_from_settings(
    spark_connect_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENG_MAGICS_CONNECT", f'{{"url": "{spark_connect_server.url}"}}')
    executor = get_executor("connect", settings=load_settings())
    assert isinstance(executor, ConnectExecutor)
    assert executor.location() == {"url": spark_connect_server.url}
    result = executor.run(job('run_metrics = {"T": {"rows_written": spark.range(7).count()}}\n'))
    assert result.metrics == {"T": {"rows_written": 7}}


def test_cancel_stops_the_remote_job_and_the_server_stays_usable(
    spark_connect_server: Server,
) -> None:
    executor = ConnectExecutor(spark_connect_server.url)
    handle = executor.submit(job(SLOW, "slow"))
    deadline = time.monotonic() + 60
    while executor.status(handle).message.startswith("0 stages") and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until the server reports stages: the job is really running
    status = executor.status(handle)
    assert status.state == "running" and "tasks" in status.message
    started = time.monotonic()
    executor.cancel(handle)
    assert time.monotonic() - started < 30
    assert executor.status(handle).state == "cancelled"
    with pytest.raises(ExecutionError, match="was cancelled") as err:
        executor.result(handle, job(SLOW, "slow"))
    assert err.value.fields["state"] == "cancelled"
    quick = executor.run(job('run_metrics = {"T": {"rows_written": spark.range(3).count()}}\n'))
    assert quick.metrics["T"]["rows_written"] == 3


def test_keyboard_interrupt_cancels_the_remote_job(spark_connect_server: Server) -> None:
    polls = 0

    def interrupt_on_third_poll(status: JobStatus) -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            raise KeyboardInterrupt  # what Ctrl-C raises in the polling thread

    executor = ConnectExecutor(
        spark_connect_server.url, progress=interrupt_on_third_poll, poll_seconds=0.5
    )
    started = time.monotonic()
    with pytest.raises(ExecutionError, match="interrupted") as err:
        executor.run(job(SLOW, "slow"))
    assert time.monotonic() - started < 40
    assert err.value.fields["state"] == "cancelled"
    assert not [t for t in threading.enumerate() if t.name.startswith("dem-dataeng")]


def test_server_killed_mid_job_fails_within_a_minute_and_records_no_success(
    tmp_path: Path, example: Path
) -> None:
    server = start_connect_server(tmp_path / "doomed")  # its own server: this one dies
    try:
        killed: list[float] = []

        def kill_when_running(status: JobStatus) -> None:
            if status.state == "running" and not killed:
                stop(server.proc, 9)  # SIGKILL: no goodbye to the client
                killed.append(time.monotonic())

        executor = ConnectExecutor(server.url, progress=kill_when_running, poll_seconds=0.2)
        s = approved(example)
        executor.session()  # connect first, so the kill lands mid-job, not mid-handshake
        with pytest.raises(ExecutionError) as err:
            s.run(output_dir=str(tmp_path / "out"), executor=executor)
        took = time.monotonic() - killed[0]
        assert took < 60, f"took {took:.0f}s to notice the server was gone"
        message = str(err.value)
        assert "\n" not in message and "lost the Spark Connect server" in message
        assert server.url in message
        runs = sqlite3.connect(s.settings.store_path).execute("SELECT outcome FROM runs")
        assert [r[0] for r in runs] == ["failed"]
        assert [e.details["outcome"] for e in s.audit.events() if e.event == "run_end"] == [
            "failed"
        ]
        assert not (tmp_path / "out" / "TRADES" / "_SUCCESS").exists()
    finally:
        stop(server.proc)


def test_unreachable_server_fails_fast_with_the_url() -> None:
    from spark_servers import free_port

    url = f"sc://127.0.0.1:{free_port()}/;token=SECRET-TOKEN-123;user_id=x"
    executor = ConnectExecutor(url, retry_seconds=2)
    started = time.monotonic()
    with pytest.raises(ExecutionError) as err:
        executor.run(job("run_metrics = {'T': {'n': spark.range(1).count()}}\n"))
    assert time.monotonic() - started < 30
    assert "SECRET-TOKEN" not in str(err.value) and "127.0.0.1" in str(err.value)
    assert executor.location() == {"url": public_path(url)} and "token" not in public_path(url)


def test_retry_budget_is_bounded() -> None:
    policy: Any = bounded_retry_policy(20)
    waits, wait = 0.0, policy.initial_backoff
    for _ in range(policy.max_retries):
        waits += min(wait, policy.max_backoff)
        wait *= policy.backoff_multiplier
    assert waits <= 20_000 and policy.max_server_retry_delay <= 5_000
    assert policy.max_retries >= 3
