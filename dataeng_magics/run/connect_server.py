"""A local Spark Connect server from the installed pyspark, for ``replay``.

Every notebook of a replay is its own kernel; without a shared server each would start
its own Spark (most of a replay's time). ``replay`` starts one server on 127.0.0.1 and
points the kernels at it (``platform=connect``, ``SPARK_REMOTE``). The server runs in
its own process group and is stopped by that group's id (never by name), also on
Ctrl-C and on failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dataeng_magics.errors import ExecutionError


@dataclass
class ConnectServer:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    def stop(self, seconds: float = 20) -> None:
        """Stop the server's process group (bash -> java), by the PID we started."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: How ``replay``'s server runs: clients share it fairly, times in UTC as local Spark.
REPLAY_CONF = {"spark.scheduler.mode": "FAIR", "spark.sql.session.timeZone": "UTC"}


def start(
    workdir: Path, master: str = "local[*]", conf: dict[str, str] | None = None,
    seconds: float = 120,
) -> ConnectServer:  # fmt: skip
    """Start a server on 127.0.0.1 (a free port) and wait until it listens."""
    import pyspark

    spark_home = Path(pyspark.__file__).parent
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "connect-server.log"
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(workdir),
        "SPARK_PID_DIR": str(workdir),
        "SPARK_IDENT_STRING": f"dem{port}",
    }
    for name in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED"):
        env.pop(name, None)
    cmd = [
        "bash", str(spark_home / "sbin" / "start-connect-server.sh"), "--wait",
        "--master", master,
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf", f"spark.connect.grpc.binding.port={port}",
        "--conf", "spark.ui.enabled=false",
        "--conf", f"spark.sql.warehouse.dir={workdir / 'warehouse'}",
        "--driver-java-options", f"-Dderby.system.home={workdir}",
    ]  # fmt: skip
    for name, value in (conf or {}).items():
        cmd += ["--conf", f"{name}={value}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir,
            start_new_session=True,
        )  # fmt: skip
    server = ConnectServer(proc, port, log)
    try:
        _wait(server, seconds)
    except BaseException:
        server.stop()
        raise
    return server


def _wait(server: ConnectServer, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise ExecutionError(
                f"the local Spark Connect server exited: {_tail(server.log)}",
                hint="Local runs need Java 17 (JAVA_HOME).",
                file=str(server.log),
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
            return
        time.sleep(0.3)
    raise ExecutionError(
        f"the local Spark Connect server was not listening after {seconds:.0f}s",
        file=str(server.log),
    )


def _tail(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    return lines[-1][:300] if lines else "(no output)"


@contextlib.contextmanager
def running() -> Iterator[ConnectServer]:
    """``replay``'s server for the length of the ``with`` block; stopped however the
    block ends."""
    with tempfile.TemporaryDirectory(prefix="dem-connect-") as tmp:
        server = start(Path(tmp), conf=REPLAY_CONF)
        try:
            yield server
        finally:
            server.stop()
