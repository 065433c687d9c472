"""Safe publishing: a failed, cancelled or killed run leaves the previous output exactly as
it was, and a reader never sees a half-written table."""

from __future__ import annotations

import ast
import contextlib
import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from dataeng_magics.compile.lint import published_tables, refused_nulls
from dataeng_magics.compile.safety import check_generated
from dataeng_magics.config import load_settings
from dataeng_magics.errors import ExecutionError, UnsafePlanError, ValidationFailed
from dataeng_magics.run.executors.base import Job
from dataeng_magics.run.executors.local import LocalExecutor
from dataeng_magics.run.publish import (
    CURRENT,
    PAUSE_ENV,
    RUNS,
    DeltaPublisher,
    FsspecPublisher,
    LocalPublisher,
    delta_publish_code,
    publisher_for,
    staging_dir,
)
from dataeng_magics.state.audit import AuditLog
from dataeng_magics.workflow import TransformRequest, TransformSession


def session(mapping: Path, mode: Any = "interactive") -> TransformSession:
    request = TransformRequest(client="NORTHWIND", mapping=mapping)
    return TransformSession(request, load_settings(), mode=mode)


def approved(mapping: Path) -> TransformSession:
    s = session(mapping)
    s.draft()
    s.approve("alice")
    return s


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file a reader of the output tables sees (through the links)."""
    return {
        f"{table}/{p.name}": p.read_bytes()
        for table in ("TRADES", "COUNTERPARTIES")
        for p in sorted((out / table).iterdir())
    }


def stage(out: Path, run_id: str, tables: dict[str, str]) -> None:
    for table, text in tables.items():
        folder = Path(staging_dir(str(out), run_id)) / table
        folder.mkdir(parents=True)
        (folder / f"part-{run_id}.csv").write_text(text)


def read(out: Path, table: str) -> str:
    return "".join(p.read_text() for p in sorted((out / table).glob("part-*")))


# -- the publishers, on real folders ----------------------------------------------------


def test_local_publish_switches_every_table_at_once_and_keeps_the_previous(tmp_path: Path) -> None:
    out = tmp_path / "out"
    publisher = LocalPublisher(str(out))
    stage(out, "r1", {"A": "a1", "B": "b1"})
    publisher.publish("r1", ["A", "B"])
    assert (read(out, "A"), read(out, "B")) == ("a1", "b1")
    assert (out / "A").is_symlink() and str((out / "A").readlink()) == f"{CURRENT}/A"
    resolved_before = (out / "A").resolve()  # a reader that resolved the path once
    stage(out, "r2", {"A": "a2", "B": "b2"})
    stage(out, "dead", {"A": "half"})  # a killed run's leftovers
    stage(out, "busy", {"A": "staging"})  # a run staging at the same time
    with publisher.running("busy"):
        publisher.publish("r2", ["A", "B"])
        assert (out / RUNS / "busy" / "A").is_dir()  # left alone while it runs
    assert not (out / RUNS / "dead").exists()
    assert (read(out, "A"), read(out, "B")) == ("a2", "b2")
    assert (resolved_before / "part-r1.csv").read_text() == "a1"  # still readable
    stage(out, "r3", {"A": "a3"})  # B is gone from the plan
    publisher.publish("r3", ["A"])
    assert sorted(p.name for p in (out / RUNS).iterdir()) == ["r2", "r3"]
    assert not (out / "B").exists() and not (out / "B").is_symlink()


def test_local_publish_takes_over_a_plain_folder_and_refuses_a_missing_table(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    (out / "A").mkdir(parents=True)
    (out / "A" / "part-old.csv").write_text("old")  # written before safe publishing
    publisher = LocalPublisher(str(out))
    stage(out, "r1", {"A": "new"})
    with pytest.raises(ExecutionError, match="table\\(s\\) B were not written"):
        publisher.publish("r1", ["A", "B"])
    assert read(out, "A") == "old"
    publisher.publish("r1", ["A"])
    assert read(out, "A") == "new"
    assert (out / RUNS / "before-r1" / "A" / "part-old.csv").read_text() == "old"
    publisher.discard("r1")  # discard never touches a published run's readers' files
    assert not Path(staging_dir(str(out), "r1")).exists()


def test_fsspec_publish_renames_within_the_store(tmp_path: Path) -> None:
    """The ADLS path, on fsspec's local filesystem (Azurite has no dfs endpoint)."""
    import fsspec

    out = tmp_path / "out"
    publisher = FsspecPublisher(str(out), fsspec.filesystem("file"))
    stage(out, "r1", {"A": "a1"})
    publisher.publish("r1", ["A"])
    stage(out, "r2", {"A": "a2"})
    stage(out, "dead", {"A": "half"})
    publisher.publish("r2", ["A"])
    assert read(out, "A") == "a2" and not (out / "A").is_symlink()
    assert (out / "_published").read_text() == "r2"
    assert (out / RUNS / "r1" / "A" / "part-r1.csv").read_text() == "a1"  # the previous
    assert sorted(p.name for p in (out / RUNS).iterdir()) == ["r1"]


@pytest.mark.spark
def test_delta_publish_runs_one_overwrite_per_table_on_the_platform(
    tmp_path: Path, spark: Any
) -> None:
    """Delta's path, run by a real executor; parquet stands in (Delta is not installed)."""
    out = tmp_path / "out"
    staged = staging_dir(str(out), "r1")
    spark.createDataFrame([(1, "x")], "id int, v string").write.parquet(f"{staged}/A")
    job = Job(name="publish-test", client="C", key="k" * 64, code="")
    publisher = DeltaPublisher(str(out), LocalExecutor(), job, fmt="parquet")
    publisher.publish("r1", ["A"])
    assert [tuple(r) for r in spark.read.parquet(str(out / "A")).collect()] == [(1, "x")]


# -- Delta: NOT NULL on exactly the columns the run refuses nulls in ----------------------

ADLS = "abfss://out@acct.dfs.core.windows.net/northwind"


def statements(code: str) -> list[str]:
    """The SQL statements a publishing cell runs, in order (read from its syntax tree)."""
    return [
        node.args[0].value
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "sql"
    ]


def alter(table: str, column: str) -> str:
    return f"ALTER TABLE delta.`{ADLS}/{table}` ALTER COLUMN `{column}` SET NOT NULL"


def test_delta_publish_declares_not_null_on_the_example_clients_required_columns(
    example: Path,
) -> None:
    s = session(example)
    plan = s.plan_of(s.draft())
    refused = {t.name: refused_nulls(t) for t in plan.tables}
    assert refused == {
        "TRADES": ["TRADE_ID", "TRADE_DATE", "BOOK_DATE", "ACCOUNT", "DESK", "SIDE",
                   "QUANTITY", "AMOUNT", "CURRENCY", "SOURCE_SYSTEM"],
        "COUNTERPARTIES": ["CPTY_ID", "CPTY_NAME", "IS_ACTIVE"],
    }  # fmt: skip
    tables = [t.name for t in plan.tables]
    code = delta_publish_code(staging_dir(ADLS, "r1"), ADLS + "/", tables, not_null=refused)
    check_generated(code, publish=True)  # the project's allow-list, publishing shape
    assert code == delta_publish_code(staging_dir(ADLS, "r1"), ADLS, tables, not_null=refused)
    assert statements(code) == [alter(t, c) for t in tables for c in refused[t]]
    for optional in ("SETTLE_DATE", "COUNTERPARTY", "TRADER", "COUNTRY", "LEI"):
        assert f"`{optional}`" not in code  # nullable: the run lets nulls through
    # Each table's overwrite (which resets the schema to nullable) comes before its NOT
    # NULLs, so a re-run, or a column no longer refused, needs no DROP NOT NULL.
    assert code.index(f'.save("{ADLS}/TRADES"))') < code.index(alter("TRADES", "TRADE_ID"))
    assert code.index(alter("TRADES", "SOURCE_SYSTEM")) < code.index("_runs/r1/COUNTERPARTIES")
    assert code.count('.option("overwriteSchema", "true")') == 2
    assert "DROP" not in code and code.endswith("run_metrics = {}\n")


def test_a_checks_sheet_not_null_quarantine_is_refused_and_a_warn_is_not(tmp_path: Path) -> None:
    client = tmp_path / "checks_client"
    shutil.copytree(Path(__file__).parent / "data" / "checks_client", client)
    mapping = client / "checks_client.xlsx"
    book = load_workbook(mapping)
    book["Checks"]["D8"] = "quarantine"  # CURRENCY not null: fail -> quarantine
    book["Checks"].append(["TRADES", "COUNTERPARTY", "not null", "warn"])
    book.save(mapping)
    request = TransformRequest(client="ACME", mapping=mapping)
    s = TransformSession(request, load_settings(), mode="interactive")
    table = s.plan_of(s.draft()).table("TRADES")
    assert not next(c for c in table.columns if c.name == "CURRENCY").required
    # CURRENCY: quarantined rows go to TRADES__rejected, so the table holds no null there;
    # COUNTERPARTY's warn writes its nulls, so it stays nullable.
    assert refused_nulls(table) == ["TRADE_ID", "AMOUNT", "CURRENCY", "QUANTITY"]
    code = delta_publish_code(staging_dir(ADLS, "r2"), ADLS, ["TRADES"],
                              not_null={"TRADES": refused_nulls(table)})  # fmt: skip
    assert alter("TRADES", "CURRENCY") in statements(code)
    assert alter("TRADES", "COUNTERPARTY") not in statements(code)
    # the run publishes the quarantined rows too: Delta moves tables by name, and
    # TRADES__rejected left out would be deleted with the staging folder
    plan = s.plan_of(s.draft())
    assert published_tables(plan) == ("TRADES", "TRADES__rejected")
    code = delta_publish_code(staging_dir(ADLS, "r2"), ADLS, published_tables(plan))
    assert f"{ADLS}/TRADES__rejected" in code


def test_delta_publish_quotes_every_name_and_refuses_variable_substitution() -> None:
    hostile = "x`) ; DROP TABLE t; --\n\"'y"
    code = delta_publish_code(f"{ADLS}/_runs/r3", ADLS, [hostile], not_null={hostile: [hostile]})
    quoted = hostile.replace("`", "``")
    assert statements(code) == [
        f"ALTER TABLE delta.`{ADLS}/{quoted}` ALTER COLUMN `{quoted}` SET NOT NULL"
    ]
    with pytest.raises(UnsafePlanError, match="substitutes variables"):
        delta_publish_code(ADLS, ADLS, ["T"], not_null={"T": ["${spark.hadoop.key}"]})
    # Parquet and CSV have no NOT NULL to declare: the overwrite alone.
    assert statements(delta_publish_code(ADLS, ADLS, ["T"], "parquet", {"T": ["A"]})) == []


@pytest.mark.parametrize(
    "code",
    [
        'spark.sql("DROP TABLE t")',
        'spark.sql("ALTER TABLE delta.`p` ALTER COLUMN `a` SET NOT NULL; DROP TABLE t")',
        'spark.sql("ALTER TABLE delta.`p`` ALTER COLUMN `a` SET NOT NULL")',
        'spark.sql("ALTER TABLE delta.`${x}` ALTER COLUMN `a` SET NOT NULL")',
        'q = "DROP TABLE t"\nspark.sql(q)',
        'spark.sql("ALTER TABLE delta.`p` ALTER COLUMN `a` SET NOT NULL", args={})',
    ],
)
def test_only_the_not_null_statement_passes_the_publishing_allow_list(code: str) -> None:
    with pytest.raises(UnsafePlanError):
        check_generated(code, publish=True)


def test_the_approved_cell_may_not_run_sql_even_the_publishing_statement() -> None:
    with pytest.raises(UnsafePlanError, match=r"\.sql"):
        check_generated('spark.sql("ALTER TABLE delta.`p` ALTER COLUMN `a` SET NOT NULL")')


def test_the_delta_publisher_gets_the_refused_columns() -> None:
    job = Job(name="publish-test", client="C", key="k" * 64, code="")
    publisher = publisher_for("memory://out", "delta", executor=LocalExecutor(), job=job,
                              not_null={"T": ["A"]})  # fmt: skip
    assert isinstance(publisher, DeltaPublisher) and publisher.not_null == {"T": ["A"]}


# -- through the workflow ---------------------------------------------------------------


def garble_dates(mapping: Path) -> None:
    path = mapping.parent / "trades.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    column = rows[0].index("Trade Date")
    for row in rows[1:50]:
        row[column] = "not a date"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


@pytest.mark.spark
def test_a_failed_check_publishes_nothing(example: Path, tmp_path: Path, spark: Any) -> None:
    s = approved(example)
    out = tmp_path / "out"
    first = s.run(output_dir=str(out))
    assert first.outcome == "succeeded" and first.run_id
    before = snapshot(out)
    assert pq.read_table(out / "TRADES").num_rows == first.report.tables[0].rows_written
    garble_dates(example)
    with pytest.raises(ValidationFailed, match="the previous output is untouched") as err:
        session(example, mode="replay").run(output_dir=str(out))
    assert err.value.exit_code == 4 and err.value.summary.evidence["published"] is False
    assert snapshot(out) == before
    assert sorted(p.name for p in (out / RUNS).iterdir()) == [first.run_id]


@pytest.mark.spark
def test_a_publish_that_fails_is_a_failed_run(example: Path, tmp_path: Path, spark: Any) -> None:
    s = approved(example)
    out = tmp_path / "out"
    (out / CURRENT).mkdir(parents=True)  # a folder where the pointer must go
    (out / CURRENT / "keep.txt").write_text("someone's file")
    with pytest.raises(ExecutionError, match="cannot publish run") as err:
        s.run(output_dir=str(out))
    assert err.value.exit_code == 5 and "\n" not in str(err.value)
    assert (out / CURRENT / "keep.txt").read_text() == "someone's file"
    entry = s.entry()
    assert entry is not None and entry.last_outcome == "failed"
    assert not [p for p in (out / RUNS).iterdir() if p.is_dir()]  # the staging is gone


@pytest.mark.slow
@pytest.mark.spark
def test_a_run_killed_while_publishing_leaves_the_previous_output(
    example: Path, tmp_path: Path, spark: Any, state_home: Path
) -> None:
    s = approved(example)
    out = tmp_path / "out"
    first = s.run(output_dir=str(out))
    before = snapshot(out)
    rows = (example.parent / "trades.csv").read_text().splitlines()
    (example.parent / "trades.csv").write_text("\n".join(rows[:2000]) + "\n")  # new data
    argv = [sys.executable, "-m", "dataeng_magics", "run", "--client", "NORTHWIND",
            "--mapping", str(example), "--output-dir", str(out)]  # fmt: skip
    env = {**os.environ, PAUSE_ENV: "publish", "DATAENG_MAGICS_HOME": str(state_home)}
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            start_new_session=True, text=True)  # fmt: skip
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "paused at publish" in line:
                break
        else:
            pytest.fail("the run never reached publishing: " + "".join(seen[-5:]))
        staged = [p for p in (out / RUNS).iterdir() if p.is_dir() and p.name != first.run_id]
        assert len(staged) == 1 and (staged[0] / "TRADES").is_dir()  # fully staged
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its Spark JVM, in the group it leads
    assert proc.returncode == -signal.SIGKILL
    assert snapshot(out) == before  # readable, and identical
    entry = s.entry()
    assert entry is not None and entry.runs == 1 and entry.last_outcome == "succeeded"
    events = [e.event for e in AuditLog(s.settings.audit_path).events()]
    assert events[-2:] == ["run_end", "run_start"]  # started, never recorded as a success
    # the next run publishes and clears the killed run's staging folder
    again = session(example).run(output_dir=str(out))
    assert again.outcome == "succeeded" and snapshot(out) != before
    assert sorted(p.name for p in (out / RUNS).iterdir()) == sorted([first.run_id, again.run_id])
