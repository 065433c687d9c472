"""The Fabric executor against a local Livy server that runs statements on local Spark."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from livy_server import FakeCredential, LivyServer

from dataeng_magics.config import load_settings
from dataeng_magics.errors import ConfigError, ExecutionError
from dataeng_magics.run.executors import Job, JobStatus, get_executor
from dataeng_magics.run.executors.fabric import (
    TRAILER,
    FabricExecutor,
    parse_metrics,
    retry_after,
)
from dataeng_magics.workflow import TransformRequest, TransformSession

pytestmark = pytest.mark.fabric

WS, LH = "11111111-2222-3333-4444-555555555555", "66666666-7777-8888-9999-000000000000"


@pytest.fixture
def livy(spark: Any) -> Iterator[LivyServer]:
    server = LivyServer(spark).start()
    yield server
    server.stop()


def executor(livy: LivyServer, **options: Any) -> FabricExecutor:
    options.setdefault("credential", FakeCredential(livy))
    options.setdefault("poll_seconds", 0.1)
    options.setdefault("backoff", 0.05)
    return FabricExecutor(WS, LH, api_url=livy.api_url, **options)


def job(code: str) -> Job:
    return Job(name="T/000", client="T", key="0" * 64, code=code)


def test_example_client_runs_on_fabric_and_writes_real_output(
    livy: LivyServer, example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FABRIC_WORKSPACE_ID", WS)
    monkeypatch.setenv("FABRIC_LAKEHOUSE_ID", LH)
    seen: list[JobStatus] = []
    credential = FakeCredential(livy)
    ex = get_executor(
        "fabric",
        settings=load_settings(),
        api_url=livy.api_url,
        credential=credential,
        poll_seconds=0.1,
        progress=seen.append,
    )
    s = TransformSession(TransformRequest(client="NORTHWIND", mapping=example), load_settings())
    s.draft()
    s.approve("alice")
    summary = s.run(output_dir=str(tmp_path / "out"), executor=ex)
    assert summary.outcome == "succeeded" and summary.platform == "fabric"
    assert summary.rows_in > 5000
    assert (
        pq.read_table(tmp_path / "out" / "TRADES").num_rows
        == summary.rows_out - pq.read_table(tmp_path / "out" / "COUNTERPARTIES").num_rows
    )
    assert credential.scopes[0] == ("https://api.fabric.microsoft.com/.default",)
    states = [st.state for st in seen]
    assert "pending" in states and states[-1] == "succeeded"
    # one session created (202), the cell posted as a pyspark statement with the trailer
    posts = [(p, b) for m, p, _, b in livy.requests if m == "POST"]
    assert posts[0][0].endswith(
        f"/workspaces/{WS}/lakehouses/{LH}/livyApi/versions/2023-12-01/sessions"
    )
    statement = posts[1][1]
    assert statement is not None and statement["kind"] == "pyspark"
    assert statement["code"].endswith(TRAILER)
    record = json.loads(
        sqlite3.connect(s.settings.store_path).execute("SELECT details FROM runs").fetchone()[0]
    )
    assert record["workspace_id"] == WS and record["lakehouse_id"] == LH
    # a second run reuses the idle session instead of starting another
    s.run(output_dir=str(tmp_path / "out2"), executor=ex)
    assert len(livy.sessions) == 1


def test_missing_ids_are_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FABRIC_WORKSPACE_ID", raising=False)
    monkeypatch.delenv("FABRIC_LAKEHOUSE_ID", raising=False)
    with pytest.raises(ConfigError, match="workspace_id and lakehouse_id"):
        FabricExecutor(credential=object())  # type: ignore[arg-type]


def test_token_is_refreshed_before_it_expires(livy: LivyServer) -> None:
    credential = FakeCredential(livy, lifetime=2.0)
    ex = executor(livy, credential=credential)
    ex.tokens.margin = 1.0  # refresh when less than a second is left
    result = ex.run(job("import time\ntime.sleep(3)\nrun_metrics = {'T': {'rows_written': 1}}\n"))
    assert result.metrics == {"T": {"rows_written": 1}}
    assert len(credential.scopes) >= 3  # the run outlived two tokens
    assert livy.rejected == 0  # and never sent an expired one


def test_a_revoked_token_is_replaced_once(livy: LivyServer) -> None:
    credential = FakeCredential(livy)
    ex = executor(livy, credential=credential)
    ex.ensure_session()
    livy.tokens.clear()  # revoked server-side
    assert ex.run(job("run_metrics = {}\n")).metrics == {}
    assert livy.rejected == 1 and len(credential.scopes) == 2


def test_429_is_retried_after_the_servers_delay(livy: LivyServer) -> None:
    ex = executor(livy)
    ex.ensure_session()
    livy.fail("POST", r"/statements$", 429, times=2, headers={"Retry-After": "1"})
    livy.fail("GET", r"/statements/\d+$", 503, times=1)
    started = time.monotonic()
    assert ex.run(job("run_metrics = {'T': {'n': 2}}\n")).metrics == {"T": {"n": 2}}
    assert time.monotonic() - started >= 2.0  # waited Retry-After twice
    statement_posts = [r for r in livy.requests if r[0] == "POST" and r[1].endswith("statements")]
    assert len(statement_posts) == 3


def test_permanent_errors_fail_with_the_services_message(livy: LivyServer) -> None:
    ex = executor(livy)
    livy.fail(
        "POST",
        r"^/sessions$",
        403,
        times=1,
        body={"errorCode": "InsufficientPrivileges", "message": "The caller is not a Contributor"},
    )
    with pytest.raises(ExecutionError) as err:
        ex.run(job("run_metrics = {}\n"))
    text = str(err.value)
    assert "HTTP 403: InsufficientPrivileges: The caller is not a Contributor" in text
    assert "Contributor role" in text and "\n" not in text
    assert len([r for r in livy.requests if r[0] == "POST"]) == 1  # not retried


def test_statement_error_carries_the_exception_and_traceback(livy: LivyServer) -> None:
    ex = executor(livy)
    handle = ex.submit(job("def f():\n    raise ValueError('bad amount in row 7')\nf()\n"))
    while not ex.status(handle).done:
        time.sleep(0.1)
    with pytest.raises(ExecutionError) as err:
        ex.result(handle, job(""))
    assert "ValueError: bad amount in row 7" in str(err.value)
    assert err.value.fields["ename"] == "ValueError"
    logs = ex.logs(handle)
    assert "Traceback" in logs and "line 2, in f" in logs


def test_dead_session_fails_the_run_with_the_reason(livy: LivyServer) -> None:
    ex = executor(livy)
    handle = ex.submit(job("import time\ntime.sleep(30)\nrun_metrics = {}\n"))
    session_id = handle.split("/")[0]
    while ex.status(handle).state != "running":
        time.sleep(0.05)
    livy.kill(session_id, "Executor lost: out of memory")
    status = ex.status(handle)
    assert status.state == "failed" and "out of memory" in status.message
    with pytest.raises(ExecutionError, match=r"session ended \(dead\)"):
        ex.result(handle, job(""))
    # the next run notices the dead session and starts a new one
    assert ex.run(job("run_metrics = {}\n")).metrics == {}
    assert len(livy.sessions) == 2


def test_cancel_stops_the_spark_job(livy: LivyServer) -> None:
    ex = executor(livy)
    slow = 'spark.range(0, 10**12, 1, 8).selectExpr("sum(id % 7)").collect()\nrun_metrics = {}\n'
    handle = ex.submit(job(slow))
    while ex.status(handle).state != "running":
        time.sleep(0.05)
    time.sleep(1)
    started = time.monotonic()
    ex.cancel(handle)
    # Livy cancels asynchronously (cancelling -> cancelled); a client polls for the end.
    while ex.status(handle).state != "cancelled" and time.monotonic() - started < 20:
        time.sleep(0.1)
    assert ex.status(handle).state == "cancelled"
    assert time.monotonic() - started < 20
    with pytest.raises(ExecutionError, match="cancelled") as err:
        ex.result(handle, job(slow))
    assert err.value.fields["state"] == "cancelled"


def test_keyboard_interrupt_cancels_the_statement(livy: LivyServer) -> None:
    def interrupt_when_running(status: JobStatus) -> None:
        if status.state == "running":
            raise KeyboardInterrupt

    ex = executor(livy, progress=interrupt_when_running)
    slow = 'spark.range(0, 10**12, 1, 8).selectExpr("sum(id % 7)").collect()\nrun_metrics = {}\n'
    started = time.monotonic()
    with pytest.raises(ExecutionError, match="interrupted"):
        ex.run(job(slow))
    assert time.monotonic() - started < 20
    cancels = [r for r in livy.requests if r[1].endswith("/cancel")]
    assert len(cancels) == 1


def test_idle_sessions_are_closed(livy: LivyServer) -> None:
    ex = executor(livy)
    first = ex.ensure_session()
    assert ex.close_idle_sessions(idle_minutes=60) == []
    assert ex.close_idle_sessions(idle_minutes=0) == [first]
    assert livy.sessions[first].state == "killed" and ex.session_id is None


def test_storage_secrets_go_to_session_conf_not_code(livy: LivyServer) -> None:
    secret = "CANARY-fabric-key-0123456789"
    ex = executor(livy, spark_conf={"fs.azure.account.key.acct.dfs.core.windows.net": secret})
    ex.run(job("run_metrics = {}\n"))
    session_post = next(b for m, p, _, b in livy.requests if m == "POST" and p.endswith("sessions"))
    assert session_post is not None
    assert session_post["conf"]["spark.hadoop.fs.azure.account.key.acct.dfs.core.windows.net"] == (
        secret
    )
    assert secret not in session_post["tags"]["dataeng-magics-conf"]
    for method, path, _, body in livy.requests:
        if path.endswith("statements") and method == "POST":
            assert body is not None and secret not in body["code"]


def test_retry_after_and_metrics_parsing() -> None:
    assert retry_after("3") == 3.0 and retry_after(None) is None and retry_after("soon") is None
    assert 0 <= (retry_after("Wed, 21 Oct 2015 07:28:00 GMT") or 0) < 1
    text = 'hello\n__dataeng_magics_run_metrics__={"T": {"rows_read": 5}}\n'
    assert parse_metrics(text) == {"T": {"rows_read": 5}}
    with pytest.raises(ExecutionError, match="without reporting its metrics"):
        parse_metrics("nothing here")
