"""Real servers the remote-platform tests run against, all on 127.0.0.1, free ports.

- a Spark Connect server from the installed pyspark (``sbin/start-connect-server.sh``),
- Azurite, the Azure Blob Storage emulator (npm ``azurite``, installed by
  ``scripts/test.sh`` into ``.cache/node``).

Each is started in its own process group and stopped by that PID, never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dataeng_magics.run.connect_server import ConnectServer as Server
from dataeng_magics.run.connect_server import free_port as free_port

REPO = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO / ".cache" / "node" / "node_modules" / ".bin" / "azurite-blob"


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError(f"server not listening after {seconds}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a server we started: its whole process group (bash -> java), by our PID."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def start_connect_server(workdir: Path) -> Server:
    """The server ``replay`` starts (dataeng_magics.run.connect_server), on 2 cores."""
    from dataeng_magics.run import connect_server

    return connect_server.start(
        workdir, "local[2]", {"spark.sql.shuffle.partitions": "4"}, seconds=90
    )


@pytest.fixture(scope="session")
def spark_connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One Spark Connect server for the whole run (starting one takes 10-15 s)."""
    server = start_connect_server(tmp_path_factory.mktemp("connect"))
    yield server
    stop(server.proc)


@dataclass
class Azurite:
    proc: subprocess.Popen[bytes]
    port: int
    account: str
    key: str

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account}"

    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.key};BlobEndpoint={self.endpoint};"
        )


#: The account key is the canary: a secret that must be used and never shown anywhere.
CANARY_ACCOUNT = "canaryacct"
CANARY_KEY = "Q0FOQVJZLVNFQ1JFVC0wMDctZG8tbm90LWxlYWstdGhpcy1rZXk="  # base64 of a canary


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's Blob service on 127.0.0.1, with one account whose key is the canary."""
    node = shutil.which("node")
    if not AZURITE_BIN.exists() or node is None:
        pytest.skip(
            "Azurite is not installed: scripts/test.sh installs it with "
            "`npm install --prefix .cache/node azurite` (needs Node and npm)"
        )
    workdir = tmp_path_factory.mktemp("azurite")
    port = free_port()
    log = workdir / "azurite.log"
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{CANARY_ACCOUNT}:{CANARY_KEY}"}
    cmd = [
        str(AZURITE_BIN), "--loose", "--skipApiVersionCheck", "--silent",
        "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(workdir),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    wait_for_port(port, proc, 30, log)
    yield Azurite(proc, port, CANARY_ACCOUNT, CANARY_KEY)
    stop(proc)
