"""Secrets and networks (issue 12): a SAS signature in a source URL appears nowhere, and
storage that does not answer (a closed local port) fails in bounded time with one line
naming the account, container, path and the deadline setting."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from openpyxl import Workbook

from dataeng_magics.cli import main
from dataeng_magics.config import load_settings
from dataeng_magics.errors import SourceError
from dataeng_magics.redact import public_path, redact
from dataeng_magics.sources.network import where
from dataeng_magics.workflow import TransformRequest, TransformSession

CANARY = "CanarySig0123456789abcdefXYZ%3D"


def closed_port() -> int:
    """A local port nothing listens on: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts connections and never answers (a black-holed account)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def remote_mapping(folder: Path, url: str) -> Path:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Mapping"
    sheet.append(["Target Table", "Target Column", "Data Type", "Source", "Source Column"])
    sheet.append(["TRADES", "TRADE_ID", "string", "trades", "Trade ID"])
    sources = book.create_sheet("Sources")
    sources.append(["Source Name", "File", "Format"])
    sources.append(["trades", url, "csv"])
    path = folder / "map.xlsx"
    book.save(path)
    return path


def test_secret_query_parameters_are_redacted() -> None:
    url = f"https://acct.blob.core.windows.net/raw/t.csv?sv=2024-05-04&se=2030&sig={CANARY}"
    assert CANARY not in redact(url) and "sv=2024-05-04" in redact(url)
    for name in ("token", "code", "key", "api_key", "client_secret", "skoid"):
        assert "s3cr3t-value" not in redact(f"https://h/p?a=1&{name}=s3cr3t-value&b=2")
    assert public_path(url) == "https://acct.blob.core.windows.net/raw/t.csv"
    assert where(url) == "account 'acct', container 'raw', path '/t.csv'"
    assert where("abfss://raw@acct.dfs.core.windows.net/n/t.csv") == (
        "account 'acct', container 'raw', path '/n/t.csv'"
    )


def test_a_canary_sas_in_an_unreachable_url_appears_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The draft fails in one line naming the account, container and path (a refused
    connection, not "file does not exist"); the signature is in no output, log or record."""
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "home"
    monkeypatch.setenv("DATAENG_MAGICS_HOME", str(home))
    url = f"https://acct.blob.core.windows.net/raw/trades.csv?sv=2024-05-04&sr=b&sig={CANARY}"
    # the account's name resolves to a closed local port: no real network is involved
    port = closed_port()
    real = socket.getaddrinfo

    def resolve(host: str, *args: object, **kwargs: object) -> object:
        if host == "acct.blob.core.windows.net":
            return real("127.0.0.1", port, *args[1:])  # type: ignore[arg-type]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    mapping = remote_mapping(tmp_path, url)
    code = main(["draft", "--client", "ACME", "--mapping", str(mapping)])
    out, err = capsys.readouterr()
    assert code != 0
    [line] = [text for text in err.splitlines() if "cannot reach" in text]
    assert "account 'acct', container 'raw', path '/trades.csv'" in line
    assert "network_timeout_seconds" in line
    records = "\n".join(r.getMessage() for r in caplog.records)
    stored = [p.read_bytes().decode("utf-8", "replace") for p in home.rglob("*") if p.is_file()]
    for text in (out, err, records, *stored):
        assert CANARY not in text


def test_a_silent_storage_account_fails_at_the_deadline(
    tmp_path: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An abfss:// account that accepts connections and never answers: the draft stops at
    the total deadline (set small here) with one line, however long the SDK would retry."""
    monkeypatch.setenv("LAKE_KEY", "a2V5LWZvci10aGUtc2lsZW50LWFjY291bnQ=")
    storage = {"lake": {"account": "lake", "auth": "direct_key", "env": "LAKE_KEY",
                        "blob_endpoint": f"http://127.0.0.1:{silent_port}/lake"}}  # fmt: skip
    monkeypatch.setenv("DATAENG_MAGICS_STORAGE", json.dumps(storage))
    monkeypatch.setenv("DATAENG_MAGICS_HOME", str(tmp_path / "home"))
    url = "abfss://raw@lake.dfs.core.windows.net/northwind/trades.csv"
    settings = load_settings(network_timeout_seconds=2)
    session = TransformSession(
        TransformRequest(client="ACME", mapping=remote_mapping(tmp_path, url)), settings
    )
    with pytest.raises(SourceError) as info:
        session.draft()
    text = str(info.value)
    assert "\n" not in text
    assert "cannot reach account 'lake', container 'raw', path '/northwind/trades.csv'" in text
    assert "no answer within 2 s" in text and "network_timeout_seconds setting (now 2 s)" in text


def test_the_deadline_setting_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATAENG_MAGICS_NETWORK_TIMEOUT_SECONDS", "7.5")
    monkeypatch.setenv("DATAENG_MAGICS_READ_HIDDEN_SHEETS", "true")
    settings = load_settings()
    assert (settings.network_timeout_seconds, settings.read_hidden_sheets) == (7.5, True)
    assert load_settings(network_timeout_seconds=None).network_timeout_seconds == 7.5
    monkeypatch.delenv("DATAENG_MAGICS_NETWORK_TIMEOUT_SECONDS")
    assert load_settings().network_timeout_seconds == 60


def test_an_unreachable_output_account_fails_before_the_run(
    tmp_path: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local run writing to an abfss:// account that never answers: exit 5 in one line
    at the deadline, before Spark starts or the run is recorded."""
    from dataeng_magics.errors import ExecutionError

    monkeypatch.setenv("LAKE_KEY", "a2V5LWZvci10aGUtc2lsZW50LWFjY291bnQ=")
    storage = {"lake": {"account": "lake", "auth": "direct_key", "env": "LAKE_KEY",
                        "blob_endpoint": f"http://127.0.0.1:{silent_port}/lake"}}  # fmt: skip
    monkeypatch.setenv("DATAENG_MAGICS_STORAGE", json.dumps(storage))
    monkeypatch.setenv("DATAENG_MAGICS_HOME", str(tmp_path / "home"))
    (tmp_path / "trades.csv").write_text("Trade ID\n1\n")
    mapping = remote_mapping(tmp_path, "trades.csv")
    session = TransformSession(
        TransformRequest(client="ACME", mapping=mapping), load_settings(network_timeout_seconds=2)
    )
    session.draft()
    session.approve("alice")
    with pytest.raises(ExecutionError) as info:
        session.run(output_dir="abfss://out@lake.dfs.core.windows.net/acme")
    assert info.value.exit_code == 5
    assert "cannot reach account 'lake', container 'out', path '/acme'" in str(info.value)
    assert "network_timeout_seconds" in str(info.value)
    assert session.store.runs(session.key) == []
