"""``replay`` (papermill) on one shared Spark: ``--jobs``, and the server it starts."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dataeng_magics.cli import main

TEMPLATE = Path(__file__).resolve().parents[1] / "example_notebooks" / "02_batch_replay.ipynb"


def approve(client: str, mapping: Path) -> None:
    base = ["--client", client, "--mapping", str(mapping)]
    assert main(["draft", *base]) == 0
    assert main(["approve", *base, "--reviewer", "alice"]) == 0


def template(example: Path, folder: Path) -> Path:
    """The batch template beside the example client, whose mapping it names."""
    folder.mkdir(parents=True, exist_ok=True)
    notebook = folder / TEMPLATE.name
    text = TEMPLATE.read_text().replace("data/northwind/northwind.xlsx", str(example))
    notebook.write_text(text)
    return notebook


def rows(folder: Path) -> pd.DataFrame:
    frame = pd.read_parquet(folder)
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.connect
def test_jobs_2_writes_the_rows_jobs_1_writes(
    example: Path, tmp_path: Path, spark_connect_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a configured Spark Connect endpoint, reused (nothing started): clients side by
    side write what they write one at a time (part-file names differ, contents not)."""
    monkeypatch.setenv("DATAENG_MAGICS_PLATFORM", "connect")
    monkeypatch.setenv("DATAENG_MAGICS_CONNECT", json.dumps({"url": spark_connect_server.url}))
    for client in ("NW1", "NW2"):
        approve(client, example)
    notebook = template(example, tmp_path / "nb")
    argv = ["replay", str(notebook), "--client", "NW1", "--client", "NW2"]
    assert main([*argv, "--jobs", "1", "--output-notebooks", str(tmp_path / "r1")]) == 0
    shutil.move(tmp_path / "nb" / "out", tmp_path / "one")
    assert main([*argv, "--jobs", "2", "--output-notebooks", str(tmp_path / "r2")]) == 0
    for client in ("NW1", "NW2"):
        for table in ("TRADES", "COUNTERPARTIES"):
            one = rows(tmp_path / "one" / "replay" / client / table)
            two = rows(tmp_path / "nb" / "out" / "replay" / client / table)
            assert len(one) > 0
            pd.testing.assert_frame_equal(one, two)


def _alive(group: int) -> list[int]:
    """Processes of a process group that still run (zombies wait only to be reaped)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.slow
def test_ctrl_c_during_a_replay_stops_the_spark_connect_server_it_started(
    example: Path, tmp_path: Path
) -> None:
    approve("NW1", example)
    notebook = template(example, tmp_path / "nb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataeng_magics", "replay", str(notebook), "--client", "NW1",
         "--output-notebooks", str(tmp_path / "r")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SPARK_LOCAL_IP": "127.0.0.1"},
    )  # fmt: skip
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        started = re.search(r"Spark Connect at sc://127\.0\.0\.1:\d+ \(pid (\d+)\)", line)
        if started:
            break
    assert started, "".join(seen)
    server = int(started.group(1))
    assert _alive(server)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.splitlines()[-1] == "interrupted"
    deadline = time.monotonic() + 30
    while _alive(server) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _alive(server)


@pytest.mark.slow
@pytest.mark.fabric
def test_replay_on_fabric_reuses_one_livy_session_for_every_client(
    example: Path, tmp_path: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the local Livy server (which runs statements on this test's Spark): the
    kernels get the session ``replay`` started, so N clients make one session."""
    from livy_server import LivyServer

    from dataeng_magics.run.executors.fabric import TEST_TOKEN_ENV

    livy = LivyServer(spark).start()
    try:
        token, _ = livy.issue_token(3600)
        monkeypatch.setenv(TEST_TOKEN_ENV, token)  # the kernels' credential, test-only
        monkeypatch.setenv("DATAENG_MAGICS_PLATFORM", "fabric")
        monkeypatch.setenv("DATAENG_MAGICS_FABRIC", json.dumps({
            "workspace_id": "11111111-2222-3333-4444-555555555555",
            "lakehouse_id": "66666666-7777-8888-9999-000000000000",
            "api_url": livy.api_url, "poll_seconds": 0.1,
        }))  # fmt: skip
        clients = ["NW1", "NW2", "NW3"]
        for client in clients:
            approve(client, example)
        notebook = template(example, tmp_path / "nb")
        out = tmp_path / "out"  # absolute: the statements run in this process, not the kernel
        notebook.write_text(notebook.read_text().replace("out/replay/", f"{out}/"))
        argv = ["replay", str(notebook), "--jobs", "2", "--output-notebooks", str(tmp_path / "r")]
        assert main([*argv, *(a for c in clients for a in ("--client", c))]) == 0
        sessions = [(m, p) for m, p, _, _ in livy.requests if p.endswith("/sessions")]
        # replay looked for one and started it; no kernel looked for or started another
        assert [m for m, _ in sessions] == ["GET", "POST"] and len(livy.sessions) == 1
        statements = [p for m, p, _, _ in livy.requests if m == "POST" and "/statements" in p]
        assert len(statements) >= len(clients)
        for client in clients:
            assert len(rows(out / client / "TRADES")) > 0
    finally:
        livy.stop()
