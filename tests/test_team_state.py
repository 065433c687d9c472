"""Team state on a real PostgreSQL: two state directories ("machines") sharing one
database, schema versions, migration, Entra ID sign-in, and runs that were interrupted."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pg_server import ADMIN_PASSWORD, RUNTIME_PASSWORD, RUNTIME_USER, Postgres, runtime_url

from dataeng_magics.cli import main
from dataeng_magics.config import Settings, load_settings
from dataeng_magics.errors import AuditError, StoreError
from dataeng_magics.redact import redact
from dataeng_magics.state import audit_db, db
from dataeng_magics.state.audit import AuditLog
from dataeng_magics.state.backend import audit_of, migrate, open_audit, open_store
from dataeng_magics.state.schema import HEAD
from dataeng_magics.state.store import Store
from dataeng_magics.workflow import RunLease, TransformRequest, TransformSession


@pytest.fixture
def shared(postgres: Postgres, pg_database: str) -> str:
    """The team's database, upgraded by its admin; the URL the tool runs with."""
    return runtime_url(postgres, pg_database)


def machine(tmp_path: Path, name: str, url: str) -> Settings:
    """One engineer's (or cluster's) settings: its own state directory, the shared store."""
    return load_settings(home=tmp_path / name, store_url=url)


def session(mapping: Path, settings: Settings, mode: Any = "interactive") -> TransformSession:
    return TransformSession(
        TransformRequest(client="NORTHWIND", mapping=mapping), settings, mode=mode
    )


@pytest.mark.spark
def test_two_machines_share_approvals_runs_and_one_chain(
    example: Path, tmp_path: Path, shared: str, spark: Any
) -> None:
    laptop, cluster = machine(tmp_path, "laptop", shared), machine(tmp_path, "cluster", shared)
    drafted = session(example, laptop)
    drafted.draft()
    drafted.approve("alice")
    replay = session(example, cluster, mode="replay")  # nothing of it on the cluster's disk
    assert replay.run(output_dir=str(tmp_path / "out-0")).outcome == "succeeded"
    assert not (tmp_path / "cluster" / "store.sqlite").exists()

    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            settings = (laptop, cluster)[index % 2]
            session(example, settings, mode="replay").run(output_dir=str(tmp_path / f"o{index}"))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert failures == []

    store = open_store(cluster)
    entry = store.get(drafted.key)
    assert entry is not None and entry.runs == 9 and entry.last_outcome == "succeeded"
    runs = store.runs(drafted.key)
    assert len(runs) == 9 and len({r.run_id for r in runs}) == 9
    assert store.leases() == [] and store.run_states() == {}
    audit = audit_of(open_store(laptop))
    result = audit.verify()
    assert result.ok and result.count == 2 + 2 * 9, result
    starts = {e.details["run_id"] for e in audit.events() if e.event == "run_start"}
    assert starts == {r.run_id for r in runs}


def _append_forever(url: str, ready: Any) -> None:
    log = audit_of(Store(url))
    while True:
        log.append("run_end", actor=f"pid-{os.getpid()}", details={"pad": "x" * 2000})
        ready.set()


def test_a_process_killed_mid_append_leaves_a_chain_that_verifies(shared: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = [ctx.Event() for _ in range(3)]
    writers = [ctx.Process(target=_append_forever, args=(shared, r)) for r in ready]
    for writer in writers:
        writer.start()
    for event in ready:
        assert event.wait(timeout=60)
    for writer in writers:
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        writer.join(timeout=30)
    log = audit_of(Store(shared))
    before = log.verify()
    assert before.ok and before.count >= 3, before
    assert log.append("approval", actor="bob").seq == before.count + 1  # the chain goes on
    assert log.verify().count == before.count + 1


def test_an_older_or_absent_schema_is_refused_naming_the_upgrade(
    postgres: Postgres, pg_database: str
) -> None:
    admin = postgres.url(pg_database)
    with pytest.raises(StoreError, match="no tables yet") as absent:
        Store(admin)
    assert "dataeng-magics store upgrade" in str(absent.value)
    assert ADMIN_PASSWORD not in str(absent.value)
    from alembic import command

    url = db.parse_url(admin)
    with db.engine_for(url).begin() as conn:
        command.upgrade(db._alembic_config(conn), "0001")
    with pytest.raises(StoreError, match=f"schema version 0001; this release needs {HEAD}"):
        Store(admin)
    assert "upgraded" in db.upgrade_target(admin) and Store(admin).count()["entries"] == 0


def test_store_commands_upgrade_info_grants_and_never_show_a_password(
    postgres: Postgres, pg_database: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    runtime = postgres.url(pg_database, user=RUNTIME_USER, password=RUNTIME_PASSWORD)
    monkeypatch.setenv("DATAENG_MAGICS_STORE_URL", runtime)
    assert main(["store", "info"]) == 0
    assert "run `dataeng-magics store upgrade`" in capsys.readouterr().out
    assert main(["cache", "list"]) == 2  # refused before anything is read or written
    assert "dataeng-magics store upgrade" in capsys.readouterr().err
    assert main(["store", "upgrade", "--url", postgres.url(pg_database)]) == 0
    assert f"from schema version none to {HEAD}" in capsys.readouterr().out
    assert main(["store", "grants", "--role", RUNTIME_USER]) == 0
    postgres.admin(pg_database, capsys.readouterr().out)
    assert main(["store", "info"]) == 0
    assert main(["stats"]) == 0
    out = capsys.readouterr().out
    assert f"schema version: {HEAD} (current)" in out and f"{RUNTIME_USER}:***@" in out
    assert RUNTIME_PASSWORD not in out and ADMIN_PASSWORD not in out


def test_migrate_copies_entries_runs_and_the_chain_then_refuses_a_full_target(
    example: Path, tmp_path: Path, shared: str, capsys: Any
) -> None:
    local = load_settings()  # the default: SQLite in the state directory
    drafted = session(example, local)
    drafted.draft()
    drafted.approve("alice")
    now = datetime.now(UTC)
    drafted.store.start_batch("b" * 32, "manifest.csv", clients=1)
    drafted.store.record_run(
        drafted.key, outcome="succeeded", started_at=now, finished_at=now, platform="local",
        run_id="r" * 32, batch_id="b" * 32,
    )  # fmt: skip
    assert main(["store", "migrate", "--to", shared]) == 0
    assert "copied 1 entries, 1 runs, 1 batches and 2 audit records" in capsys.readouterr().out
    team = machine(tmp_path, "cluster", shared)
    assert session(example, team, mode="replay").require_approved().reviewer == "alice"
    assert [r.run_id for r in open_store(team).runs()] == ["r" * 32]
    assert open_store(team).batch("b" * 32).manifest == "manifest.csv"  # so --resume works there
    assert open_store(team).count()["batches"] == 1
    assert [e.hash for e in audit_of(open_store(team)).events()] == [
        e.hash for e in drafted.audit.events()
    ]
    assert main(["store", "migrate", "--to", shared]) == 2
    assert "not empty" in capsys.readouterr().err
    back = tmp_path / "back" / "store.sqlite"  # and back to a SQLite file and JSONL log
    assert "copied 1 entries, 1 runs, 1 batches and 2 audit records" in migrate(team, str(back))
    returned = load_settings(home=back.parent)
    assert [e.hash for e in open_audit(returned).events()] == [
        e.hash for e in drafted.audit.events()
    ]
    assert open_store(returned).get(drafted.key) == open_store(team).get(drafted.key)


@pytest.mark.parametrize("failure", ["midway", "unverified"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_failed_migrate_leaves_the_target_empty_so_a_retry_works(
    backend: str, failure: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """The audit copy fails midway (PostgreSQL refuses a repeated seq; canonical JSON a
    NaN), or the copied chain does not verify: no entry, run or audit record stays in
    the target, and migrating again copies everything."""
    from test_store import make_entry

    local = load_settings()  # SQLite and the JSONL log in the state directory
    store = open_store(local)
    key = store.put(make_entry()).key
    now = datetime.now(UTC)
    store.record_run(key, outcome="succeeded", started_at=now, finished_at=now, platform="local")
    for turn in range(4):
        open_audit(local).append("revision", actor="alice", key=key, details={"turn": turn})
    if backend == "sqlite":
        to = str(tmp_path / "target" / "store.sqlite")
    else:
        to = runtime_url(
            request.getfixturevalue("postgres"), request.getfixturevalue("pg_database")
        )

    copy_of = AuditLog.records

    def records(log: AuditLog) -> Iterator[dict[str, Any]]:
        chain = list(copy_of(log))
        if failure == "unverified":
            chain[1] = {**chain[1], "actor": "mallory"}  # its hash no longer matches
            yield from chain
            return
        yield from chain[:3]
        if backend == "postgresql":
            yield chain[0]  # seq 1 again: the primary key refuses it
        else:
            yield {**chain[0], "details": {"turn": float("nan")}}

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AuditLog, "records", records)
        patch.setattr(audit_db, "_BATCH", 1)  # one INSERT per record: the failure is midway
        with pytest.raises((AuditError, StoreError)) as failed:
            migrate(local, to)
    expected = "does not verify" if failure == "unverified" else "cannot write the audit log"
    assert expected in str(failed.value)
    target = Store(to)
    assert target.count() == {"entries": 0, "runs": 0, "batches": 0, "leases": 0}
    assert audit_of(target).last() is None
    if backend == "sqlite":
        assert sorted(p.name for p in (tmp_path / "target").iterdir() if "store" not in p.name) == [
            "audit.jsonl.lock"
        ]  # no log, and no temporary copy left behind

    assert "copied 1 entries, 1 runs, 0 batches and 4 audit records" in migrate(local, to)
    assert Store(to).get(key) == store.get(key)
    assert [e.hash for e in audit_of(Store(to)).events()] == [
        e.hash for e in open_audit(local).events()
    ]


class FakeCredential:
    """azure-identity's shape at the boundary: a token (here the user's password)."""

    def __init__(self, token: str) -> None:
        self.token, self.calls = token, 0

    def get_token(self, *scopes: str) -> Any:
        assert scopes == (db.ENTRA_SCOPE,)
        self.calls += 1
        return type("AccessToken", (), {"token": self.token})()


def test_entra_id_token_is_the_password_and_is_fetched_for_each_connection(
    postgres: Postgres, pg_database: str
) -> None:
    runtime_url(postgres, pg_database)
    credential = FakeCredential(RUNTIME_PASSWORD)
    url = f"postgresql://{RUNTIME_USER}@127.0.0.1:{postgres.port}/{pg_database}"
    store = Store(url, credential=credential)
    assert store.count()["entries"] == 0 and credential.calls >= 1
    calls = credential.calls
    store.engine.dispose()  # new connections (after a token expiry) ask again
    store.count()
    assert credential.calls > calls
    assert redact(f"token {RUNTIME_PASSWORD}") == "token ***"


def test_runs_still_going_elsewhere_and_interrupted_runs(
    shared: str, tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_store import make_entry

    store = Store(shared)
    for key in ("1" * 64, "2" * 64, "3" * 64):
        store.put(make_entry(key))
    now = datetime.now(UTC)
    gone = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
    gone.start()
    gone.join()
    assert gone.pid is not None
    with store._tx() as conn:
        from dataeng_magics.state.schema import leases

        def lease(run_id: str, key: str, host: str, pid: int, expires: datetime) -> None:
            conn.execute(
                leases.insert().values(
                    run_id=run_id, key=key, host=host, pid=pid, actor="alice",
                    started_at=now.isoformat(), expires_at=expires.isoformat(),
                )
            )  # fmt: skip

        lease("a" * 32, "1" * 64, "databricks-driver-7", 1, now + timedelta(minutes=2))
        lease("b" * 32, "2" * 64, "databricks-driver-7", 1, now - timedelta(seconds=1))
        lease("c" * 32, "3" * 64, socket.gethostname(), gone.pid, now + timedelta(minutes=2))
    assert store.run_states() == {"1" * 64: "running", "2" * 64: "interrupted",
                                  "3" * 64: "interrupted"}  # fmt: skip
    monkeypatch.setenv("DATAENG_MAGICS_STORE_URL", shared)
    assert main(["cache", "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("interrupted") == 2 and listed.count("running") == 1
    assert main(["stats"]) == 0
    assert "1 running, 2 interrupted" in capsys.readouterr().out
    from dataeng_magics.server import entry_detail, list_entries

    settings = load_settings()
    states = {e["key"]: e["run_state"] for e in list_entries(settings)["entries"]}
    assert sorted(states.values()) == ["interrupted", "interrupted", "running"]
    assert entry_detail(settings, "1" * 64)["entry"]["run_state"] == "running"


def test_a_run_lease_is_renewed_while_it_runs_and_expires_when_it_is_left(
    tmp_path: Path,
) -> None:
    from test_store import make_entry

    store = Store(tmp_path / "store.sqlite")
    key = store.put(make_entry()).key
    with pytest.raises(KeyboardInterrupt), RunLease(store, "d" * 32, key, "alice"):
        (lease,) = store.leases()
        assert lease.state() == "running" and lease.pid == os.getpid()
        raise KeyboardInterrupt
    assert store.run_states() == {key: "interrupted"}
    store.renew_lease("d" * 32, 60)  # what the lease's thread does every 30 s
    assert store.run_states() == {key: "running"}
