"""The server extension behind the lab extension's side panel, over real HTTP.

One ``jupyter server`` per module (started by ``jupyter_servers``), enabled only by what
``pip install`` put in ``etc/jupyter``; its store is filled through ``TransformSession``
as a notebook would fill it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_servers import JupyterServer, jupyter_server

from dataeng_magics.config import load_settings
from dataeng_magics.errors import ApprovalRequired
from dataeng_magics.server import _revisions, entry_detail, list_entries
from dataeng_magics.state.audit import AuditLog
from dataeng_magics.workflow import TransformRequest, TransformSession

EXAMPLE_DIR = Path(__file__).resolve().parent.parent / "example_notebooks" / "data" / "northwind"


def session_for(client: str, mapping: Path, home: Path) -> TransformSession:
    request = TransformRequest(client=client, mapping=mapping)
    return TransformSession(request, load_settings(home=home))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    with jupyter_server(tmp_path_factory.mktemp("jupyter"), app="jupyter_server") as running:
        yield running


@pytest.fixture(scope="module")
def keys(server: JupyterServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """NORTHWIND approved, ACME a draft revised once: each client's key."""
    data = tmp_path_factory.mktemp("client") / "northwind"
    shutil.copytree(EXAMPLE_DIR, data)
    northwind = session_for("NORTHWIND", data / "northwind.xlsx", server.home)
    northwind.draft(actor="carol")
    northwind.approve("alice")
    acme = session_for("ACME", data / "northwind.xlsx", server.home)
    acme.draft(actor="carol")
    acme.revise("DESK: upper", actor="carol")
    return {"NORTHWIND": northwind.key, "ACME": acme.key}


def test_both_extensions_are_enabled_by_pip_install() -> None:
    jupyter = [sys.executable, "-m", "jupyter"]
    labs = subprocess.run(
        [*jupyter, "labextension", "list"], capture_output=True, text=True, check=True
    )
    line = next(x for x in (labs.stdout + labs.stderr).splitlines() if "dataeng-magics" in x)
    assert "enabled" in line and "OK" in line and "python, dataeng-magics" in line
    servers = subprocess.run(
        [*jupyter, "server", "extension", "list"], capture_output=True, text=True, check=True
    )
    out = servers.stdout + servers.stderr
    assert "dataeng_magics.server \x1b[32menabled" in out or "dataeng_magics.server enabled" in out
    assert "dataeng_magics.server  \x1b[32mOK" in out or "dataeng_magics.server  OK" in out


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "dataeng-magics/entries"),
        ("GET", "dataeng-magics/entries/0123456789abcdef"),
        ("POST", "dataeng-magics/entries/0123456789abcdef/revoke"),
        ("POST", "dataeng-magics/entries/0123456789abcdef/invalidate"),
    ],
)
def test_unauthenticated_requests_are_refused(
    server: JupyterServer, keys: dict[str, str], method: str, path: str
) -> None:
    path = path.replace("0123456789abcdef", keys["NORTHWIND"])
    body = {"reason": "x"} if method == "POST" else None
    for token in (None, "not-the-token"):
        status, _ = server.request(method, path, body, token=token)
        assert status == 403, (method, path, token)
    # and nothing changed
    assert (
        server.request("GET", f"dataeng-magics/entries/{keys['NORTHWIND']}")[1]["entry"]["status"]
        == "approved"
    )


def test_list_and_filter_by_client(server: JupyterServer, keys: dict[str, str]) -> None:
    status, reply = server.request("GET", "dataeng-magics/entries")
    assert status == 200
    assert reply["clients"] == ["ACME", "NORTHWIND"]
    assert reply["home"] == str(server.home)
    rows = {row["client"]: row for row in reply["entries"]}
    assert set(rows) == {"ACME", "NORTHWIND"}
    northwind = rows["NORTHWIND"]
    assert northwind["key"] == keys["NORTHWIND"]
    assert northwind["status"] == "approved" and northwind["reviewer"] == "alice"
    assert northwind["approved_at"].endswith("Z") and northwind["runs"] == 0  # UTC
    assert set(northwind) >= {"last_outcome", "last_run_at", "updated_at", "mapping_file"}
    assert "code" not in northwind and "plan_json" not in northwind  # the list stays small
    assert rows["ACME"]["status"] == "draft" and rows["ACME"]["approved_at"] is None
    assert northwind["revoked_by"] is None  # the list names who revoked, once someone has

    status, reply = server.request("GET", "dataeng-magics/entries?client=ACME")
    assert status == 200
    assert [row["client"] for row in reply["entries"]] == ["ACME"]
    assert reply["clients"] == ["ACME", "NORTHWIND"]  # the filter still offers every client
    assert server.request("GET", "dataeng-magics/entries?client=NOBODY")[1]["entries"] == []
    # any case, as the CLI's --client and the store match it
    status, reply = server.request("GET", "dataeng-magics/entries?client=acme")
    assert [row["client"] for row in reply["entries"]] == ["ACME"]


def test_detail_has_plan_code_runs_and_audit_history(
    server: JupyterServer, keys: dict[str, str]
) -> None:
    key = keys["NORTHWIND"]
    status, reply = server.request("GET", f"dataeng-magics/entries/{key}")
    assert status == 200
    entry = reply["entry"]
    assert entry["key"] == key and entry["client"] == "NORTHWIND"
    assert "TABLE TRADES" in entry["pseudocode"] and "spark.read" in entry["code"]
    assert len(entry["code_sha256"]) == 64 and len(entry["plan_sha256"]) == 64
    assert reply["runs"] == []
    events = reply["events"]
    assert [e["event"] for e in events] == ["draft", "approval"]
    assert events[1]["actor"] == "alice" and events[1]["code_sha256"] == entry["code_sha256"]
    assert all(e["key"] == key for e in events)
    # a unique prefix works as at the CLI; unknown keys are 404
    assert server.request("GET", f"dataeng-magics/entries/{key[:12]}")[1]["entry"]["key"] == key
    status, reply = server.request("GET", "dataeng-magics/entries/ffffffffffffffff")
    assert status == 404 and "ffffffffffffffff" in reply["message"]


def test_detail_says_what_each_revision_asked_and_changed(
    server: JupyterServer, keys: dict[str, str]
) -> None:
    events = server.request("GET", f"dataeng-magics/entries/{keys['ACME']}")[1]["events"]
    assert [e["event"] for e in events] == ["draft", "revision"]
    assert "revision" not in events[0]
    revision = events[1]["revision"]
    assert revision["request"] == "DESK: upper" and revision["reply"]
    assert [line[:8] for line in revision["changes"]] == ["-  DESK ", "+  DESK "]
    assert events[1]["actor"] == "carol"


def test_revisions_older_than_the_conversation_are_none(example: Path, tmp_path: Path) -> None:
    session = session_for("NORTHWIND", example, tmp_path / "state")
    session.draft()
    entry, _ = session.revise("DESK: upper")
    kept = entry.model_copy(update={"conversation": entry.conversation[-2:]})
    asked = [None if r is None else r["request"] for r in _revisions(kept, 2)]
    assert asked == [None, "DESK: upper"]
    assert _revisions(kept, 0) == []


def test_revoke_audits_and_blocks_replay(server: JupyterServer, keys: dict[str, str]) -> None:
    key = keys["NORTHWIND"]
    path = f"dataeng-magics/entries/{key}/revoke"
    assert server.request("POST", path, b"not json")[0] == 400
    for body in ({}, {"reason": "   "}):  # a revocation needs a reason
        status, reply = server.request("POST", path, body)
        assert status == 400 and "needs a reason" in reply["message"]
    assert (
        server.request("GET", f"dataeng-magics/entries/{key}")[1]["entry"]["status"] == "approved"
    )
    status, reply = server.request("POST", path, {"reason": "  mapping v2 arrived "})
    assert status == 200
    assert reply["entry"]["status"] == "revoked"
    assert reply["entry"]["reason"] == "mapping v2 arrived"
    revoked_by = reply["entry"]["revoked_by"]
    assert revoked_by  # the OS user behind a shared-token login, as the CLI records

    event = list(AuditLog(server.home / "audit.jsonl").events(key=key))[-1]
    assert event.event == "revocation" and event.actor == revoked_by
    assert event.details == {"reason": "mapping v2 arrived", "approved_by": "alice"}
    assert event.code_sha256 == reply["entry"]["code_sha256"]
    assert AuditLog(server.home / "audit.jsonl").verify().ok

    # replay (what papermill and the CLI do) now needs a new approval
    mapping = Path(reply["entry"]["mapping_file"])
    with pytest.raises(ApprovalRequired, match="approval required"):
        session_for("NORTHWIND", mapping, server.home).require_approved()

    status, reply = server.request("POST", path, {"reason": "again"})
    assert status == 409 and "already revoked" in reply["message"]
    unknown = "dataeng-magics/entries/ffffffffffffffff/revoke"
    assert server.request("POST", unknown, {"reason": "x"})[0] == 404
    # ACME was untouched; the old path still revokes (a panel built before the rename)
    acme = f"dataeng-magics/entries/{keys['ACME']}"
    assert server.request("GET", acme)[1]["entry"]["status"] == "draft"
    status, reply = server.request("POST", f"{acme}/invalidate", {"reason": "old panel"})
    assert status == 200 and reply["entry"]["status"] == "revoked"
    event = list(AuditLog(server.home / "audit.jsonl").events(key=keys["ACME"]))[-1]
    assert event.event == "revocation"
    assert event.details == {"reason": "old panel", "approved_by": None}


def test_reading_an_empty_state_directory_creates_nothing(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "never-used")
    assert list_entries(settings) == {"entries": [], "clients": [], "home": str(settings.home)}
    with pytest.raises(LookupError):
        entry_detail(settings, "0123456789abcdef")
    assert not settings.home.exists()
