"""The evidence record: tied to the audit chain, shown and exported; and ``export-test``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dataeng_magics.cli import main
from dataeng_magics.config import load_settings
from dataeng_magics.display import SummaryView
from dataeng_magics.run import evidence as ev
from dataeng_magics.state.audit import AuditLog
from dataeng_magics.workflow import TransformRequest, TransformSession, find_evidence


def approved(mapping: Path) -> TransformSession:
    request = TransformRequest(client="NORTHWIND", mapping=mapping)
    s = TransformSession(request, load_settings())
    s.draft()
    s.approve("alice")
    return s


@pytest.mark.spark
def test_evidence_is_tied_to_the_audit_chain_and_exported(
    example: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s = approved(example)
    out = tmp_path / "out"
    summary = s.run(output_dir=str(out))
    record = summary.evidence
    assert record["run_id"] == summary.run_id and record["published"] is True
    # beside the output and in the store, the same document
    beside = json.loads((out / "_evidence" / f"{summary.run_id}.json").read_text())
    assert beside == record == find_evidence(s.settings, summary.run_id)[0]
    log = AuditLog(s.settings.audit_path)
    assert log.verify().ok
    events = list(log.events())
    by_hash = {e.hash: e for e in events}
    start = by_hash[record["audit"]["run_start_hash"]]  # the run_start record is in the chain
    assert start.event == "run_start" and start.details["run_id"] == summary.run_id
    end = events[-1]
    assert end.event == "run_end" and end.details["evidence_sha256"] == ev.digest(record)
    assert end.details["run_id"] == summary.run_id
    approval = by_hash[record["approval"]["audit_hash"]]
    assert approval.event == "approval" and record["approval"]["reviewer"] == "alice"
    inputs = {Path(f["path"]).name: f for f in record["inputs"]}
    trades = (example.parent / "trades.csv").read_bytes()
    assert inputs["trades.csv"]["sha256"] == hashlib.sha256(trades).hexdigest()
    assert inputs["trades.csv"]["size"] == len(trades) and inputs["trades.csv"]["modified"]
    assert len(inputs["counterparties.parquet"]["parquet_footer_sha256"]) == 64
    tables = {t["table"]: t for t in record["validation"]["tables"]}
    assert tables["TRADES"]["rows_read"] == 5000 and tables["TRADES"]["checks"]
    # the page beside the output names the record that closes the run
    page = (out / "_evidence" / f"{summary.run_id}.html").read_text()
    assert end.hash in page and "<script" not in page.lower()
    # the CLI by run id prefix and by key; the same page
    html_file = tmp_path / "evidence.html"
    assert main(["evidence", summary.run_id[:10], "--html", str(html_file)]) == 0
    assert html_file.read_text() == page
    text = capsys.readouterr().out
    assert f"closed by audit record {end.seq} (run_end) {end.hash}" in text
    assert main(["evidence", summary.key[:12], "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == record
    assert main(["evidence", summary.run_id, "--html", str(tmp_path / "no" / "x.html")]) == 2
    assert "cannot write the page" in capsys.readouterr().err
    bundle = SummaryView(summary)._repr_mimebundle_()  # the notebook's run summary
    assert "<details><summary>Evidence</summary>" in bundle["text/html"]
    assert bundle["text/html"].startswith("<div class='dem-run-summary'>")  # a table per table
    assert end.hash in bundle["text/html"]
    assert main(["evidence", "ffffffffffff"]) == 2
    assert "no run or key 'ffffffffffff'" in capsys.readouterr().err


@pytest.mark.spark
def test_failed_checks_go_back_to_the_review(
    example: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A replay's failed checks show beside the plan in `draft` and in the Chat tab."""
    from dataeng_magics.widgets import ReviewPanel

    approved(example)
    path = example.parent / "trades.csv"
    rows = path.read_text().splitlines()
    head = rows[0].split(",")
    column = head.index("Trade Date")
    for i in range(1, 15):
        cells = rows[i].split(",")
        cells[column] = "31/31/2024"  # 12 of these 14 rows are not cancelled
        rows[i] = ",".join(cells)
    path.write_text("\n".join(rows) + "\n")
    inputs = ["--client", "NORTHWIND", "--mapping", str(example)]
    assert main(["run", *inputs, "--output-dir", str(tmp_path / "out")]) == 4
    capsys.readouterr()
    assert main(["draft", *inputs]) == 0
    shown = capsys.readouterr().out
    assert "the last run's checks:\n  TRADES.TRADE_DATE [required]: 12 row(s) (error)" in shown
    request = TransformRequest(client="NORTHWIND", mapping=example)
    panel = ReviewPanel(TransformSession(request, load_settings()), reviewer="alice")
    last = panel.chat.messages[-1]
    assert last["role"] == "system" and "TRADES.TRADE_DATE [conversion]: 12 row(s)" in last["text"]


def test_the_page_escapes_every_value_and_shows_fields_it_does_not_know() -> None:
    hostile = "<script>alert(1)</script>"
    record = ev.build(
        run_id="r" * 32, client=hostile, key="k" * 64, outcome="validation_failed",
        inputs=[{"source": "s", "path": f"/data/{hostile}.csv", "size": 1}],
        validation={
            "passed": False,
            "control_totals": [{"source": "trades", "rows": 10, "expected": 11}],
            "tables": [{"table": "T", "rows_read": 3, "rows_quarantined": 1, "checks": [
                {"column": "AMOUNT", "kind": "range", "failed": 14, "severity": "error",
                 "examples": [{"value": -12.5, "source": "-12,500"}] * 12,
                 "new_field": hostile},
            ]}],
        },
        audit={"run_start_hash": "0" * 64},
    )  # fmt: skip
    assert len(record["validation"]["tables"][0]["checks"][0]["examples"]) == ev.MAX_EXAMPLES
    page = ev.to_html(record)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for shown in ("new_field", "rows_quarantined", "control_totals", "-12,500", "FAIL"):
        assert shown in page
    assert ev.failures_in_words(record) == [
        "T.AMOUNT [range]: 14 row(s) (error), e.g. -12.5 (source '-12,500'), "
        "-12.5 (source '-12,500'), -12.5 (source '-12,500')"
    ]


@pytest.mark.slow
@pytest.mark.spark
def test_exported_test_passes_alone_and_fails_when_a_line_of_code_changes(
    example: Path, tmp_path: Path, spark: Any
) -> None:
    s = approved(example)
    folder = tmp_path / "ci"
    assert main(["export-test", s.key[:12], "--output", str(folder / "test_northwind.py")]) == 0
    module = (folder / "test_northwind.py").read_text()
    lines = module.splitlines(keepends=True)
    # One line of the code: the filter that drops cancelled trades.
    changed = next(i for i, line in enumerate(lines) if ".when(" in line and "CANCELLED" in line)
    lines[changed] = lines[changed].replace("CANCELLED", "CANCELED")
    (folder / "test_altered.py").write_text("".join(lines))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", "test_northwind.py",
         "test_altered.py"],
        cwd=folder, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    outcomes = {
        line.split(" ")[0]: line.split(" ")[1]
        for line in result.stdout.splitlines()
        if "::test_" in line and line.split(" ")[1:2] in (["PASSED"], ["FAILED"])
    }
    assert outcomes == {
        "test_northwind.py::test_the_code_is_the_approved_code": "PASSED",
        "test_northwind.py::test_the_approved_code_gives_the_approved_output": "PASSED",
        "test_altered.py::test_the_code_is_the_approved_code": "FAILED",
        "test_altered.py::test_the_approved_code_gives_the_approved_output": "FAILED",
    }, result.stdout[-3000:]


def test_output_links_open_in_jupyterlab_where_they_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under the working folder a link is relative (JupyterLab opens it in its file
    browser); elsewhere a file URI; a remote store's path stays text."""
    from dataeng_magics.display import output_link

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "runs")  # a published link is not followed
    assert output_link(str(tmp_path / "out" / "TRADES") + "/").startswith("<a href='out/TRADES/'")
    assert output_link("/elsewhere/x.html").startswith("<a href='file:///elsewhere/x.html'")
    assert output_link("abfss://c@acct.dfs.core.windows.net/o/T/") == (
        "<code>abfss://c@acct.dfs.core.windows.net/o/T/</code>"
    )
