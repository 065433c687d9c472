"""A real PostgreSQL for the store's tests: Debian's ``postgresql`` package, ``initdb``
into a temporary directory, ``pg_ctl`` on 127.0.0.1 and a free port, as an unprivileged
user (PostgreSQL refuses to run as root), stopped by its own PID. Skips, saying why,
where the package is missing (scripts/test.sh installs it)."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from spark_servers import free_port

ADMIN_PASSWORD = "admin-Pw-4c1d9e"
RUNTIME_USER = "dem_runtime"
RUNTIME_PASSWORD = "runtime-Pw-7f3a2b"


@dataclass
class Postgres:
    port: int
    data: Path
    pid: int

    def url(self, database: str, *, user: str = "postgres", password: str = ADMIN_PASSWORD) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def admin(self, database: str, sql: str) -> None:
        """Run statements as the superuser (psycopg, autocommit)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]


def _as_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "nobody", "--", *command]


def start(root: Path) -> Postgres:
    """initdb into ``root``/data and start the server on a free port (as ``nobody`` when
    running as root: ``root`` must be reachable by it, e.g. ``tempfile.mkdtemp()``, not
    pytest's 0700 basetemp); ``stop`` ends it. Raises LookupError without the package."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise LookupError(
            "PostgreSQL is not installed: scripts/test.sh installs Debian's postgresql"
        )
    bin_dir = found[-1].parent
    data, pwfile, log = root / "data", root / "pw", root / "postgres.log"
    pwfile.write_text(ADMIN_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "nobody", "nogroup")
        shutil.chown(pwfile, "nobody", "nogroup")
    subprocess.run(
        _as_user(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
             "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C"]
        ),
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    options = f"-p {port} -h 127.0.0.1 -k {root} -c max_connections=200 -c fsync=off"
    started = subprocess.run(
        _as_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
                  "start"]),
        capture_output=True, text=True,
    )  # fmt: skip
    if started.returncode:
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"PostgreSQL did not start: {started.stderr}{started.stdout}\n{tail}")
    pid = int((data / "postmaster.pid").read_text().split()[0])
    server = Postgres(port, data, pid)
    atexit.register(stop, server)  # also if a teardown is skipped: never left running
    server.admin("postgres", f"CREATE ROLE {RUNTIME_USER} LOGIN PASSWORD '{RUNTIME_PASSWORD}'")
    return server


def stop(server: Postgres) -> None:
    """Fast shutdown, by the server's own PID (once)."""
    if not (server.data / "postmaster.pid").exists():
        return
    os.kill(server.pid, signal.SIGINT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (server.data / "postmaster.pid").exists():
        time.sleep(0.1)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip('psycopg is not installed: pip install -e ".[dev]"')
    root = Path(tempfile.mkdtemp(prefix="dem-postgres-"))  # in /tmp: nobody reaches it
    try:
        server = start(root)
    except LookupError as exc:
        shutil.rmtree(root)
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        stop(server)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_database(postgres: Postgres) -> Iterator[str]:
    """A fresh, empty database (its name); the runtime user may connect to it. Its
    pooled connections are closed afterwards, so tests do not use up the server's."""
    from dataeng_magics.state import db

    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.admin("postgres", f"CREATE DATABASE {name}")
    postgres.admin("postgres", f"GRANT CONNECT ON DATABASE {name} TO {RUNTIME_USER}")
    yield name
    for engine in list(db._engines.values()):
        if engine.url.database == name:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a fresh store lives, on each backend: a SQLite path, or the URL of a new
    PostgreSQL database upgraded by the admin, as the runtime user holding only the
    documented grants."""
    if request.param == "sqlite":
        return tmp_path / "state" / "store.sqlite"
    server: Postgres = request.getfixturevalue("postgres")
    database: str = request.getfixturevalue("pg_database")
    return runtime_url(server, database)


def runtime_url(server: Postgres, database: str) -> str:
    """Upgrade ``database`` as the admin, grant the runtime user, return its URL."""
    from dataeng_magics.state.db import grant_statements, upgrade_target

    upgrade_target(server.url(database))
    server.admin(database, ";".join(grant_statements(RUNTIME_USER)))
    return server.url(database, user=RUNTIME_USER, password=RUNTIME_PASSWORD)
