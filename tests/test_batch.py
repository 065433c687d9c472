"""``batch --manifest``: many clients on the one local Spark session, each failing alone."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from openpyxl import load_workbook

from dataeng_magics.batches import batch, read_manifest
from dataeng_magics.cli import main
from dataeng_magics.config import load_settings
from dataeng_magics.errors import MappingError
from dataeng_magics.state.audit import AuditLog
from dataeng_magics.state.store import Store
from dataeng_magics.workflow import TransformRequest, TransformSession


def approve(client: str, mapping: Path) -> None:
    s = TransformSession(TransformRequest(client=client, mapping=mapping), load_settings())
    s.draft()
    s.approve("alice")


def write_manifest(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(c for r in rows for c in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def store_run_id(client: str) -> str:
    """The run id of the client's last run, as the store has it."""
    store = Store(load_settings().store_path)
    keys = {e.key for e in store.list() if e.client == client}
    return str([r for r in store.runs() if r.key in keys][-1].run_id)


@pytest.fixture
def five(example: Path, tmp_path: Path) -> Path:
    """Five clients: A, B, C approved; D not approved; E approved with a date rule the
    data breaks (its check fails)."""
    broken = tmp_path / "broken"
    shutil.copytree(example.parent, broken)
    book = load_workbook(broken / "northwind.xlsx")
    for row in book["Mapping"].iter_rows():
        if row[1].value == "TRADE_DATE":
            row[5].value = "parse date DD/MM/YYYY"  # the data is MM/DD/YYYY
    book.save(broken / "northwind.xlsx")
    for client in "ABC":
        approve(client, example)
    approve("E", broken / "northwind.xlsx")
    rows = [{"client": c, "mapping": str(example), "output_dir": f"out/{c}"} for c in "ABCD"] + [
        {"client": "E", "mapping": "broken/northwind.xlsx", "output_dir": "out/E"}
    ]
    return write_manifest(tmp_path / "clients.csv", rows)


@pytest.mark.spark
def test_batch_isolates_failures_records_the_batch_and_resumes(
    five: Path, example: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.json"
    code = main(["batch", "--manifest", str(five), "--jobs", "3", "--report", str(report)])
    assert code == 4  # the worst: E's failed check (D's missing approval is 3)
    shown = json.loads(report.read_text())
    results = {c["client"]: c for c in shown["clients"]}
    assert {c: r["result"] for c, r in results.items()} == {
        "A": "succeeded", "B": "succeeded", "C": "succeeded",
        "D": "approval_required", "E": "validation_failed",
    }  # fmt: skip
    out = tmp_path / "out"
    expected = pd.read_parquet(out / "A" / "TRADES").sort_values(
        list(pd.read_parquet(out / "A" / "TRADES").columns)
    )
    for client in "BC":  # the others were published, whole, beside the failures
        got = pd.read_parquet(out / client / "TRADES")
        pd.testing.assert_frame_equal(
            got.sort_values(list(got.columns)).reset_index(drop=True),
            expected.reset_index(drop=True),
        )
        assert results[client]["rows_out"] == results["A"]["rows_out"] > 0
    assert not (out / "D").exists()  # nothing ran for D
    assert results["E"]["checks_failed"] > 0 and "TRADE_DATE" not in results["A"]["message"]
    for client in "ABCE":  # each client that ran links its own evidence record's page
        page = out / client / "_evidence" / f"{store_run_id(client)}.html"
        assert results[client]["evidence"] == page.as_uri() and page.is_file()
    assert results["D"]["evidence"] == ""  # D never ran: no evidence
    batch_id = shown["batch_id"]
    printed = capsys.readouterr().out
    assert printed.startswith(f"batch {batch_id}: 5 of 5 client(s); one local Spark session")
    assert "approval required" in printed.lower()
    assert "[5/5] " in printed  # not a terminal: a plain line per finished client

    store = Store(load_settings().store_path)
    assert store.batch(batch_id).exit_code == 4
    assert {r.batch_id for r in store.runs()} == {batch_id}
    assert store.batch_succeeded(batch_id).keys() == {"A", "B", "C"}
    events = [e for e in AuditLog(load_settings().audit_path).events() if "batch" in e.event]
    assert [e.event for e in events] == ["batch_start", "batch_end"]
    assert all(e.details["batch_id"] == batch_id for e in events)

    # Resume: D is approved now; only D and E run again (E still fails its check).
    approve("D", example)
    again = batch(resume=batch_id, jobs=2)
    assert again.batch_id == batch_id and again.exit_code == 4
    by_client = {c.client: c for c in again.clients}
    assert by_client["D"].result == "succeeded" and by_client["E"].result == "validation_failed"
    assert by_client["A"].message == "succeeded earlier in this batch"
    assert by_client["A"].evidence == results["A"]["evidence"]  # still linked after resume
    assert by_client["D"].evidence.endswith(f"/out/D/_evidence/{store_run_id('D')}.html")
    ran = [r for r in store.runs() if r.batch_id == batch_id]
    assert len(ran) == 4 + 2  # A, B, C, E, then D and E: A, B and C were not run again
    assert store.batch_succeeded(batch_id).keys() == {"A", "B", "C", "D"}


@pytest.mark.spark
def test_a_control_total_mismatch_fails_its_client_only(
    example: Path, tmp_path: Path, spark: Any
) -> None:
    for client in "AB":
        approve(client, example)
    manifest = write_manifest(
        tmp_path / "m.csv",
        [{"client": "A", "mapping": str(example), "output_dir": "out/A",
          "control.trades.rows": ""},
         {"client": "B", "mapping": str(example), "output_dir": "out/B",
          "control.trades.rows": "7"}],
    )  # fmt: skip
    report = tmp_path / "r.json"
    assert main(["batch", "--manifest", str(manifest), "--jobs", "2", "--report", str(report)]) == 4
    a, b = json.loads(report.read_text())["clients"]
    assert a["result"] == "succeeded" and a["exit_code"] == 0
    assert b["result"] == "validation_failed" and b["exit_code"] == 4 and b["checks_failed"] == 1
    assert (tmp_path / "out" / "A" / "TRADES").is_dir()
    assert not (tmp_path / "out" / "B" / "TRADES").exists()  # nothing published for B


@pytest.mark.spark
def test_a_bad_source_file_fails_its_client_only(example: Path, tmp_path: Path, spark: Any) -> None:
    approve("A", example)
    approve("B", example)
    bad = tmp_path / "bad.csv"
    bad.write_text("not,the,columns\n1,2,3\n")
    manifest = write_manifest(
        tmp_path / "m.csv",
        [
            {"client": "A", "mapping": str(example), "output_dir": "out/A", "source.trades": ""},
            {"client": "B", "mapping": str(example), "output_dir": "out/B",
             "source.trades": str(bad)},
        ],
    )  # fmt: skip
    outcome = batch(manifest, jobs=2)
    a, b = outcome.clients
    assert a.result == "succeeded" and b.exit_code in (2, 3, 5) and b.message
    assert "\n" not in b.message
    assert (tmp_path / "out" / "A" / "TRADES").is_dir()


def test_manifest_errors_name_file_row_and_column(tmp_path: Path) -> None:
    def error(rows: list[dict[str, str]], name: str = "m.csv") -> str:
        with pytest.raises(MappingError) as err:
            read_manifest(write_manifest(tmp_path / name, rows))
        return str(err.value)

    row = {"client": "A", "mapping": "a.xlsx", "output_dir": "out/A"}
    assert error([{**row, "colour": "red"}]) == (
        f"{tmp_path / 'm.csv'}, row 2, column 'colour': unknown manifest column 'colour'. "
        "Columns: client, mapping, output_dir, source.NAME, control.SOURCE.rows, "
        "control.SOURCE.COLUMN."
    )
    assert "row 3, column 'client': client 'a' is also on row 2" in error(
        [row, {**row, "client": "a", "output_dir": "out/B"}]
    )
    assert "row 3, column 'output_dir'" in error([row, {**row, "client": "B"}])
    assert "row 2, column 'output_dir': output_dir is empty" in error([{**row, "output_dir": ""}])
    assert "column 'control.trades.rows': control total 'many' is not a number" in error(
        [{**row, "control.trades.rows": "many"}]
    )
    parsed = read_manifest(
        write_manifest(tmp_path / "ok.csv", [{**row, "control.trades.rows": "1,000",
                                              "source.trades": "new/trades.csv"}])
    )  # fmt: skip
    assert parsed[0].controls == {"trades.rows": "1000"}
    assert parsed[0].sources == {"trades": str(tmp_path / "new" / "trades.csv")}
    assert parsed[0].mapping == tmp_path / "a.xlsx"  # relative to the manifest


def test_yaml_manifest_may_nest_sources(tmp_path: Path) -> None:
    path = tmp_path / "clients.yaml"
    path.write_text(
        "clients:\n"
        "  - client: A\n    mapping: a.xlsx\n    output_dir: out/A\n"
        "    source: {trades: q3/trades.csv}\n    control: {trades: {rows: 91}}\n"
    )
    (row,) = read_manifest(path)
    assert row.sources == {"trades": str(tmp_path / "q3" / "trades.csv")}
    assert row.controls == {"trades.rows": "91"}


def test_batch_cli_usage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as err:
        main(["batch"])
    assert err.value.code == 2
    assert "batch needs --manifest (or --resume ID)" in capsys.readouterr().err
    assert main(["batch", "--resume", "nope"]) == 2
    assert "no batch 'nope' in the store" in capsys.readouterr().err


@pytest.mark.connect
def test_batch_on_spark_connect_shares_one_session(
    example: Path, tmp_path: Path, spark_connect_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENG_MAGICS_PLATFORM", "connect")
    monkeypatch.setenv("DATAENG_MAGICS_CONNECT", json.dumps({"url": spark_connect_server.url}))
    for client in "AB":
        approve(client, example)
    manifest = write_manifest(
        tmp_path / "m.csv",
        [{"client": c, "mapping": str(example), "output_dir": f"out/{c}"} for c in "AB"],
    )
    outcome = batch(manifest, jobs=2)
    assert [c.result for c in outcome.clients] == ["succeeded", "succeeded"], repr(outcome)
    assert outcome.scheduling.startswith("one Spark Connect session")
    one, two = (pd.read_parquet(tmp_path / "out" / c / "TRADES") for c in "AB")
    assert len(one) == len(two) > 0


def test_report_as_csv_and_html_with_evidence_links(tmp_path: Path) -> None:
    from dataeng_magics.batches import BatchResult, ClientResult, evidence_link, write_report

    ok = ClientResult("A", "succeeded", 0, str(tmp_path / "out" / "A"), 91, 90, 0, 1.234)
    bad = ClientResult("B", "approval_required", 3, str(tmp_path / "out" / "B"),
                       message="approval required: no approved plan for client 'B'")  # fmt: skip
    ok.evidence = evidence_link(ok.output, "r1")
    page = (tmp_path / "out" / "A" / "_evidence" / "r1.html").as_uri()
    assert evidence_link(bad.output, None) == "" and evidence_link("s3://b/o/", "r1") == (
        "s3://b/o/_evidence/r1.html"
    )
    outcome = BatchResult("b1", [ok, bad], 2.0)
    write_report(outcome, tmp_path / "r.csv")
    with (tmp_path / "r.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["client"], r["result"], r["exit_code"]) for r in rows] == [
        ("A", "succeeded", "0"), ("B", "approval_required", "3"),
    ]  # fmt: skip
    assert rows[0]["evidence"] == page and rows[0]["seconds"] == "1.23"
    write_report(outcome, tmp_path / "r.html")
    shown = (tmp_path / "r.html").read_text()
    assert "batch b1: 1/2 succeeded in 2.0s (exit 3)" in shown
    assert f'<a href="{page}"' in shown
    assert outcome.exit_code == 3
    assert repr(outcome).splitlines()[-1] == "B: approval required: no approved plan for client 'B'"


def test_a_store_of_the_previous_release_gains_batches(tmp_path: Path) -> None:
    import shutil
    import sqlite3

    path = tmp_path / "store.sqlite"  # the store as release 0.1 left it
    shutil.copy(Path(__file__).parent / "data" / "state-v0.1" / "store.sqlite", path)
    store = Store(path)
    store.start_batch("b1", "clients.csv", 2)
    store.end_batch("b1", 3)
    assert store.batch("b1").exit_code == 3 and store.batch_succeeded("b1") == {}
    with sqlite3.connect(path) as conn:
        assert "batch_id" in {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
