"""State written before an upgrade keeps working: its key, its approved code, its audit log.

tests/data/state-v0.1 holds a store and an audit log written by dataeng_magics 0.1 (see
its README). Nothing in it is re-approved or re-compiled: ``cache list --outdated``
only reports an approval whose code the current compiler would write differently.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from dataeng_magics.cli import main
from dataeng_magics.compile import codegen
from dataeng_magics.state.store import Store
from dataeng_magics.workflow import TransformRequest, TransformSession

FIXTURE = Path(__file__).parent / "data" / "state-v0.1"


@pytest.fixture
def old_state(tmp_path: Path, state_home: Path) -> Path:
    """The 0.1 store and audit log as this test's state; returns the client's workbook."""
    state_home.mkdir()
    for name in ("store.sqlite", "audit.jsonl"):
        shutil.copy(FIXTURE / name, state_home / name)
    shutil.copytree(FIXTURE / "northwind", tmp_path / "northwind")
    return tmp_path / "northwind" / "northwind.xlsx"


def approval(state_home: Path) -> dict[str, Any]:
    """The approval record 0.1 wrote: the key and code hash the reviewer approved."""
    records = [json.loads(line) for line in (state_home / "audit.jsonl").read_text().splitlines()]
    return next(r for r in records if r["event"] == "approval")


def keyed(mapping: Path, *extra: str) -> list[str]:
    return ["--client", "NORTHWIND", "--mapping", str(mapping), *extra]


def test_the_key_computed_today_is_the_key_approved_before(
    old_state: Path, state_home: Path
) -> None:
    approved = approval(state_home)
    session = TransformSession(TransformRequest(client="NORTHWIND", mapping=old_state))
    assert session.key == approved["key"]
    entry = session.approved_entry()
    assert entry is not None and entry.reviewer == "alice"
    assert entry.code_sha256 == approved["code_sha256"]


def test_the_audit_log_written_before_verifies(
    old_state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify"]) == 0
    assert "intact: 4 records" in capsys.readouterr().out


@pytest.mark.spark
def test_the_old_approval_replays_the_approved_code(
    old_state: Path, state_home: Path, tmp_path: Path, spark: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    approved = approval(state_home)
    out = tmp_path / "out"
    assert main(["run", *keyed(old_state, "--output-dir", str(out), "--json")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["key"] == approved["key"] and summary["outcome"] == "succeeded"
    assert summary["code_sha256"] == approved["code_sha256"]  # the bytes approved in 0.1
    assert (out / "TRADES").is_dir()
    entry = Store(state_home / "store.sqlite").get(approved["key"])
    assert entry is not None and entry.runs == 2 and entry.status == "approved"
    assert main(["audit", "verify"]) == 0  # today's records chain onto 0.1's
    assert "intact: 6 records" in capsys.readouterr().out


def test_outdated_lists_the_old_approval_with_what_this_compiler_writes_differently(
    old_state: Path, state_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """This release reads CSV whole-record (multiLine) and counts malformed records, so
    the 0.1 approval is listed, with the change, and left exactly as it was."""
    audit_before = (state_home / "audit.jsonl").read_text()
    assert main(["cache", "list", "--outdated"]) == 0
    report = capsys.readouterr().out
    key = approval(state_home)["key"]
    assert "1 approved entry is outdated" in report
    assert f"NORTHWIND  key {key[:16]}  approved by alice:" in report
    assert 'multiLine=multiline.get("trades", "true")' in report
    # Nothing was re-approved or re-compiled: the approved 0.1 code still replays.
    entry = Store(state_home / "store.sqlite").get(key)
    assert entry is not None and entry.status == "approved" and "multiLine" not in entry.code
    assert entry.code_sha256 == approval(state_home)["code_sha256"]
    assert (state_home / "audit.jsonl").read_text() == audit_before


def test_outdated_is_silent_until_the_compiler_writes_other_code(
    example: Path, state_home: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert main(["draft", *keyed(example)]) == 0
    assert main(["approve", *keyed(example, "--reviewer", "alice")]) == 0
    capsys.readouterr()
    assert main(["cache", "list", "--outdated"]) == 0
    assert "No approved entry is outdated" in capsys.readouterr().out

    def safer_csv(plan: Any) -> str:  # an upgraded compiler: safer CSV parsing
        return compile_plan(plan).replace(
            'multiLine=multiline.get("trades", "true"),\n',
            'multiLine=multiline.get("trades", "true"),\n        mode="FAILFAST",\n',
        )

    compile_plan = codegen.compile_plan
    monkeypatch.setattr("dataeng_magics.workflow.compile_plan", safer_csv)
    audit_before = (state_home / "audit.jsonl").read_text()
    assert main(["cache", "list", "--outdated"]) == 0
    report = capsys.readouterr().out
    assert "approved by alice: 2 line(s) added, 0 removed" in report
    assert '  +        mode="FAILFAST",' in report
    entry = Store(state_home / "store.sqlite").list("NORTHWIND")[0]
    assert entry.status == "approved" and "FAILFAST" not in entry.code
    assert (state_home / "audit.jsonl").read_text() == audit_before


def test_outdated_names_a_stored_plan_the_current_code_cannot_read(
    old_state: Path, state_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(state_home / "store.sqlite") as conn:
        conn.execute("UPDATE entries SET plan_json = replace(plan_json, '\"trim\"', '\"tidy\"')")
    assert main(["cache", "list", "--outdated", "--client", "NORTHWIND"]) == 0
    report = capsys.readouterr().out
    assert "1 approved entry is outdated" in report
    assert "the plan no longer reads: tables.0.columns.0.steps.0: Input tag 'tidy'" in report
    assert "(and 1 more)" in report
