"""The workflow on real local Spark: key, draft, approve, run, validate, replay rules."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook
from pydantic import create_model

from dataeng_magics.canonical import FIELDS_V1
from dataeng_magics.compile.codegen import compile_plan
from dataeng_magics.config import load_settings
from dataeng_magics.errors import (
    ApprovalRequired,
    ConfigError,
    DataEngMagicsWarning,
    ExecutionError,
    MappingError,
    ModeError,
    PlanError,
    StoreError,
    ValidationFailed,
)
from dataeng_magics.mapping import model as mapping_model
from dataeng_magics.plan import model as plan_model
from dataeng_magics.sources.profile import shown
from dataeng_magics.state.audit import AuditLog
from dataeng_magics.workflow import (
    TransformRequest,
    TransformSession,
    before_after,
    cache_key,
)


def session(mapping: Path, client: str = "NORTHWIND", **kwargs: Any) -> TransformSession:
    settings = kwargs.pop("settings", None) or load_settings()
    mode = kwargs.pop("mode", "interactive")
    request = TransformRequest(client=client, mapping=mapping, **kwargs)
    return TransformSession(request, settings, mode=mode)


def rewrite_csv(path: Path, change: Any) -> None:
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    rows = change(rows)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)


def set_rule(mapping: Path, target: str, rule: str) -> None:
    book = load_workbook(mapping)
    sheet = book["Mapping"]
    for row in sheet.iter_rows():
        if row[1].value == target:
            row[5].value = rule
    book.save(mapping)


# --- the cache key ----------------------------------------------------------------


def test_key_is_stable_and_ignores_resaving_and_unused_columns(example: Path) -> None:
    key = session(example).key
    assert session(example).key == key
    load_workbook(example).save(
        example
    )  # re-saving the workbook changes its bytes, not its content
    assert session(example).key == key
    trades = example.parent / "trades.csv"
    rewrite_csv(trades, lambda rows: [[*r, "extra" if i == 0 else "x"] for i, r in enumerate(rows)])
    assert session(example).key == key  # a column the mapping does not use is drift we tolerate
    assert session(example, client="OTHER").key != key


def test_key_changes_with_a_rule_or_a_retyped_used_column(example: Path) -> None:
    key = session(example).key
    set_rule(example, "DESK", "first 3 characters, then upper")
    changed_rule = session(example).key
    assert changed_rule != key
    trades = example.parent / "trades.csv"
    qty = None

    def retype(rows: list[list[str]]) -> list[list[str]]:
        nonlocal qty
        qty = rows[0].index("Qty")
        for r in rows[1:]:
            r[qty] = f"{r[qty]} units"  # Qty becomes text: the used column's type changed
        return rows

    rewrite_csv(trades, retype)
    assert session(example).key != changed_rule


def test_renamed_used_column_is_a_clear_mapping_error(example: Path) -> None:
    rewrite_csv(
        example.parent / "trades.csv",
        lambda rows: [[("Quantity" if c == "Qty" else c) for c in rows[0]], *rows[1:]],
    )
    with pytest.raises(MappingError) as err:
        session(example).key  # noqa: B018
    text = str(err.value)
    assert "'Qty'" in text and "Mapping" in text and "row 11" in text and "Quantity" in text


def test_a_new_optional_field_changes_no_key_plan_hash_or_code(example: Path) -> None:
    """An upgrade that adds a field (default value) to the mapping or the plan model keeps
    every existing key, plan hash and compiled code; a workbook that uses it differs."""
    s = session(example)
    used = {"trades": {"Qty": "bigint"}}
    key = cache_key("NORTHWIND", s.mapping, used)
    # The upgraded models: the same classes with one more field each, as a release adds it.
    target = create_model("TargetColumn", __base__=mapping_model.TargetColumn, pii=(bool, False))
    mapping = create_model("Mapping", __base__=mapping_model.Mapping, targets=(list[target], ...))

    def upgraded(**values: Any) -> Any:
        old = s.mapping
        targets = [target(**t.model_dump(), **values) for t in old.targets]
        return mapping(file=old.file, targets=targets, sources=old.sources, filters=old.filters)

    assert "pii" in upgraded().model_dump()["targets"][0]
    assert cache_key("NORTHWIND", upgraded(), used) == key
    assert cache_key("NORTHWIND", upgraded(pii=True), used) != key  # a workbook that uses it

    column = create_model("ColumnPlan", __base__=plan_model.ColumnPlan, checked=(bool, False))
    table = create_model("TablePlan", __base__=plan_model.TablePlan, columns=(list[column], ...))
    plan_cls = create_model("Plan", __base__=plan_model.Plan, tables=(list[table], ...))
    plan = s.baseline
    newer = plan_cls.model_validate(plan.model_dump())
    assert "checked" in newer.model_dump()["tables"][0]["columns"][0]
    assert newer.sha256() == plan.sha256()
    assert compile_plan(newer) == compile_plan(plan)  # the approved code, byte for byte


def test_every_version_1_field_still_exists() -> None:
    """Renaming or removing a field that version 1 keys hash would change them."""
    for name, fields in FIELDS_V1.items():
        cls = getattr(mapping_model, name, None) or getattr(plan_model, name)
        assert fields <= set(cls.model_fields), name


# --- modes: a replay never plans ---------------------------------------------------


def test_replay_session_builds_no_planner_and_refuses_review(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_planner(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a planner was built")

    monkeypatch.setattr("dataeng_magics.agent.get_planner", no_planner)
    llm = load_settings(planner="openai")
    with pytest.raises(AssertionError, match="a planner was built"):
        session(example, settings=llm).draft()  # interactive: the factory is what drafts use
    replay = session(example, settings=llm, mode="replay")
    steps = {
        "draft": replay.draft,
        "revise": lambda: replay.revise("DESK: upper"),
        "approve": lambda: replay.approve("alice"),
        "reject": lambda: replay.reject("alice", "no"),
    }
    for action, step in steps.items():
        with pytest.raises(ModeError, match=f"cannot {action} in replay mode") as err:
            step()
        assert "NORTHWIND" in str(err.value) and err.value.exit_code == 2
    with pytest.raises(ApprovalRequired):
        replay.run(output_dir=str(tmp_path / "out"))
    assert replay.store.list() == [] and list(replay.audit.events()) == []


def test_mode_setting_makes_every_session_a_replay(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENG_MAGICS_MODE", "replay")  # as `dataeng-magics replay` sets it
    s = session(example, mode="interactive")
    assert s.mode == "replay"
    with pytest.raises(ModeError):
        s.draft()


# --- settings resolution ----------------------------------------------------------


def test_request_choices_are_resolved_over_settings_once(example: Path, tmp_path: Path) -> None:
    settings = load_settings(output_format="parquet", platform="local")
    s = session(example, settings=settings, output_format="csv", platform="elsewhere")
    assert (s.settings.output_format, s.settings.platform) == ("csv", "elsewhere")
    assert (settings.output_format, settings.platform) == ("parquet", "local")  # untouched
    s.draft()
    s.approve("alice")
    assert 'output_format = "csv"' in s.materialised_cell()
    with pytest.raises(ConfigError, match="unknown platform 'elsewhere'"):
        s.run(output_dir=str(tmp_path / "out"))  # the run goes where the request said
    with pytest.raises(ConfigError, match="setting 'output_format'"):
        session(example, output_format="xml")


# --- approval gates ---------------------------------------------------------------


def test_run_without_approval_runs_nothing(example: Path, tmp_path: Path) -> None:
    s = session(example)
    s.draft()
    out = tmp_path / "out"
    with pytest.raises(ApprovalRequired) as err:
        s.run(output_dir=str(out))
    assert "NORTHWIND" in str(err.value) and s.key[:16] in str(err.value)
    assert not out.exists()
    assert [e.event for e in s.audit.events()] == ["draft"]


def test_unresolved_rule_blocks_approval_with_column_and_text(example: Path) -> None:
    set_rule(example, "DESK", "frobnicate the desk")
    s = session(example)
    entry = s.draft()
    assert entry.code == "" and "UNRESOLVED" in entry.pseudocode
    with pytest.raises(PlanError) as err:
        s.approve("alice")
    assert "TRADES.DESK" in str(err.value) and "frobnicate the desk" in str(err.value)
    assert s.entry().status == "draft"  # type: ignore[union-attr]


def test_revision_resolves_and_is_recorded_with_the_conversation(example: Path) -> None:
    set_rule(example, "DESK", "frobnicate the desk")
    s = session(example)
    s.draft()
    entry, revision = s.revise("DESK: first 4 characters, upper\nplease make it nicer")
    assert revision.understood and revision.not_understood
    assert "please make it nicer" in revision.reply
    assert not s.plan_of(entry).unresolved()
    assert entry.code and [t["role"] for t in entry.conversation] == ["user", "planner"]
    assert any("DESK" in line for line in entry.conversation[1]["changes"])
    s.approve("alice")
    assert [e.event for e in s.audit.events()] == ["draft", "revision", "approval"]
    assert s.audit.last().details == {"reviewer": "alice", "key_version": 1}  # type: ignore[union-attr]


def test_approving_an_approved_plan_changes_and_records_nothing(example: Path) -> None:
    s = session(example)
    s.draft()
    first = s.approve("alice")
    assert first.recorded and first.entry.reviewer == "alice"
    again = s.approve("alice")
    when = f"{first.entry.approved_at:%Y-%m-%d %H:%M} UTC"
    assert not again.recorded
    assert again.to_text() == f"already approved by alice at {when}; nothing changed"
    other = s.approve("bob")  # someone else: still a no-op, and it says bob was not recorded
    assert not other.recorded and other.entry == first.entry
    assert other.to_text().startswith(f"already approved by alice at {when}; nothing changed")
    assert "bob was not recorded" in other.to_text()
    assert [e.event for e in s.audit.events()] == ["draft", "approval"]


def test_revising_an_approved_plan_revokes_the_approval_and_says_whose(example: Path) -> None:
    s = session(example)
    s.draft()
    s.approve("alice")
    entry, unchanged = s.revise("DESK: first 4 characters, upper")  # the rule it already has
    assert unchanged.revoked is None and entry.status == "approved"
    entry, revision = s.revise("DESK: first 3 characters, upper", actor="bob")
    assert revision.revoked is not None and revision.revoked.reviewer == "alice"
    assert str(revision.revoked) == "approval by alice revoked: the plan changed"
    assert entry.status == "draft" and entry.reviewer is None
    events = list(s.audit.events())
    assert [e.event for e in events] == ["draft", "approval", "revision", "revocation", "revision"]
    revocation = events[3]
    assert revocation.actor == "bob"
    assert revocation.details == {"reason": "the plan changed", "approved_by": "alice"}
    # a plan that was never approved is revised with no revocation
    entry, revision = s.revise("DESK: first 2 characters, upper")
    assert revision.revoked is None and [e.event for e in s.audit.events()][-1] == "revision"


def test_forced_redraft_over_an_approval_records_the_revocation_a_revise_does(
    example: Path,
) -> None:
    s = session(example)
    s.draft()
    s.approve("alice")
    assert s.draft(actor="bob").status == "approved"  # no --force: the approval stays
    entry = s.draft(force=True, actor="bob")
    assert entry.status == "draft"
    events = list(s.audit.events())
    assert [e.event for e in events] == ["draft", "approval", "revocation", "draft"]
    assert events[2].actor == "bob"
    assert events[2].details == {"reason": "the plan was re-drafted", "approved_by": "alice"}
    s.draft(force=True)  # over a draft: nothing is revoked
    assert [e.event for e in s.audit.events()].count("revocation") == 1


def test_a_revoked_plan_reopens_as_a_draft_with_its_revisions_and_says_who_revoked_it(
    example: Path,
) -> None:
    s = session(example)
    s.draft()
    s.revise("DESK: first 3 characters, upper")
    s.approve("alice")
    s.revoke("bob", "mapping v4 arrived")
    entry = s.draft(actor="carol")  # re-running the cell
    assert entry.status == "draft"
    assert "substring 1, 3" in entry.pseudocode  # the revision is kept, not the workbook's rule
    banner = s.reopened(entry)
    assert banner is not None and banner["revoked_by"] == "bob"
    assert banner["reason"] == "mapping v4 arrived"
    assert "Revoked by bob at " in banner["text"]
    kinds = [t.get("kind", t["role"]) for t in entry.conversation]
    assert kinds == ["user", "planner", "approved", "reopened"]
    assert s.audit.last().details == {"reopened": True, "unresolved": 0}  # type: ignore[union-attr]
    assert s.draft() == entry  # a draft again: nothing more happens
    restarted = s.draft(force=True)  # "Start again from the workbook"
    assert "substring 1, 4" in restarted.pseudocode and s.reopened(restarted) is None
    assert restarted.conversation[-1]["text"].startswith("Started again from the workbook")
    s.approve("alice")
    assert s.reopened(s.entry()) is None  # type: ignore[arg-type]


def test_a_revision_that_drops_a_workbook_step_says_so_and_add_keeps_the_rest(
    example: Path,
) -> None:
    s = session(example)
    s.draft()
    entry, revision = s.revise("COUNTRY: trim, upper")
    assert "removed default 'XX' if null" in revision.reply
    assert "'COUNTRY: add RULE'" in revision.reply
    assert entry.conversation[-1]["changes"][-1].endswith("-- removed: default 'XX' if null")
    s.draft(force=True)
    entry, revision = s.revise("COUNTRY: add trim")
    assert "removed" not in revision.reply
    assert "COUNTRY (string) <- \"Country\": upper, then trim, then default 'XX' if null" in (
        entry.pseudocode
    )
    entry, revision = s.revise("COUNTRY: remove default")
    assert revision.reply == "COUNTRY: upper, then trim (removed default 'XX' if null)"
    entry, revision = s.revise("COUNTRY: remove round")
    assert "COUNTRY has no step round" in revision.reply and not entry.conversation[-1]["changes"]


def test_a_date_pattern_that_does_not_fit_the_sample_is_flagged_with_one_that_does(
    example: Path,
) -> None:
    s = session(example)
    s.draft()
    entry, revision = s.revise("SETTLE_DATE: parse date MM/DD/YYYY")
    assert "Warning: 96 of 96 sample values of SETTLE_DATE do not parse as MM/DD/YYYY" in (
        revision.reply
    )
    assert "(e.g. '27.06.2025') and would become null; DD.MM.YYYY fits 96 of 96." in revision.reply
    assert entry.conversation[-1]["text"] == revision.reply  # kept in the chat history
    _, revision = s.revise("TRADE_DATE: trim, parse date MM/DD/YYYY")  # it fits: no warning
    assert "Warning" not in revision.reply


@pytest.mark.spark
def test_a_failing_preview_shows_the_values_that_failed_beside_what_they_became(
    example: Path, spark: Any
) -> None:
    s = session(example)
    s.draft()
    assert s.preview().failing == []
    s.revise("SETTLE_DATE: parse date MM/DD/YYYY")  # the data is DD.MM.YYYY
    preview = s.preview(rows=5)
    [failing] = preview.failing
    assert (failing.table, failing.column, failing.check) == ("TRADES", "SETTLE_DATE", "conversion")
    assert len(failing.lines) == 10 and failing.rows == tuple(range(10))  # all 100 rows read
    frame = preview.tables["TRADES"]
    source = s.samples["trades"].frame.set_index(s.samples["trades"].frame["Trade ID"].str.strip())
    for line, row in zip(failing.lines[:5], failing.rows, strict=False):
        settle = source.loc[frame["TRADE_ID"].iloc[row]]["Settle Date"]
        assert line == f"SETTLE_DATE {shown(settle)} → null (parse date MM/DD/YYYY)"
        assert pd.isna(frame["SETTLE_DATE"].iloc[row])


@pytest.mark.spark
def test_after_a_failing_preview_approving_needs_a_reason_that_is_audited(
    example: Path, spark: Any
) -> None:
    s = session(example)
    s.draft()
    s.preview()  # the workbook's plan passes: nothing recorded, approval as usual
    assert s.failed_preview(s.current_draft()) == []
    s.revise("SETTLE_DATE: parse date MM/DD/YYYY")  # the data is DD.MM.YYYY
    preview = s.preview()
    assert not preview.report.passed
    failed = s.failed_preview(s.current_draft())
    assert len(failed) == 1 and failed[0].startswith("TRADES.SETTLE_DATE [conversion]: ")
    s.preview()  # the same plan again: recorded once
    assert [t.get("kind") for t in s.current_draft().conversation].count("preview_failed") == 1
    with pytest.raises(ValidationFailed, match="the preview failed 1 check") as refused:
        s.approve("alice")
    assert "--anyway REASON" in (refused.value.hint or "")
    with pytest.raises(ValidationFailed):
        s.approve("alice", despite="  ")  # a blank reason is no reason
    assert s.current_draft().status == "draft"
    assert not [e for e in s.audit.events(key=s.key) if e.event == "approval"]

    approval = s.approve("alice", despite="the settlement feed is fixed upstream on Monday")
    assert approval.recorded and approval.entry.status == "approved"
    [record] = [e for e in s.audit.events(key=s.key) if e.event == "approval"]
    assert record.details["despite"] == "the settlement feed is fixed upstream on Monday"
    assert record.details["failed_checks"] == failed
    assert approval.entry.conversation[-1]["text"] == (
        "Approved by alice despite 1 failing check(s): the settlement feed is fixed upstream "
        "on Monday."
    )
    s.revise("SETTLE_DATE: parse date DD.MM.YYYY")  # a new plan: its own preview decides
    assert s.failed_preview(s.current_draft()) == []
    assert s.approve("bob").recorded


def test_notes_the_planner_understands_are_applied_and_the_rest_said_to_be_context(
    example: Path,
) -> None:
    s = session(example, notes="CURRENCY: default 'USD'\nAmounts arrive in thousands.")
    entry = s.draft()
    assert "CURRENCY (string) [required] <- \"Ccy\": trim, then upper, then default 'USD'" in (
        entry.pseudocode
    )
    assert "# note: Amounts arrive in thousands." in entry.pseudocode
    assert "# note: CURRENCY" not in entry.pseudocode
    reply = entry.conversation[-1]["text"]
    assert reply.startswith(
        "Applied from the notes: CURRENCY: trim, then upper, then default 'USD' if null "
        "(removed default 'EUR' if null). "
    )
    assert "Kept as notes, context for an LLM planner only" in reply
    assert reply.endswith(": 'Amounts arrive in thousands.'")


def test_before_after_matches_preview_rows_to_sample_rows(example: Path, spark: Any) -> None:
    s = session(example)
    plan = s.plan_of(s.draft())
    preview = s.preview(plan, rows=20)
    traced = before_after(preview, plan, s.samples)
    how, columns = traced["TRADES"]  # a filter drops rows: matched by the trade id
    assert how == "rows matched by TRADE_ID = 'Trade ID'"
    by_name = {c.column: c for c in columns}
    frame = s.samples["trades"].frame
    for (before, after), trade in zip(
        by_name["CURRENCY"].pairs, preview.tables["TRADES"]["TRADE_ID"], strict=True
    ):
        row = frame[frame["Trade ID"].str.strip() == trade].iloc[0]
        ccy = None if pd.isna(row["Ccy"]) else row["Ccy"]
        assert before == ("null" if ccy is None else shown(ccy))
        assert after == ("EUR" if before == "null" else ccy.strip().upper())
    assert by_name["CURRENCY"].rule == "trim, then upper, then default 'EUR' if null"
    assert by_name["COUNTERPARTY"].source == "Cpty ID"  # the lookup's key
    keyless = [c for c in plan.tables[0].columns if c.name not in ("TRADE_ID", "QUANTITY")]
    plan = plan.model_copy(update={"tables": [
        plan.tables[0].model_copy(update={"columns": keyless}), *plan.tables[1:]]})  # fmt: skip
    preview = s.preview(plan, rows=20)
    assert before_after(preview, plan, s.samples)["TRADES"] == (
        "no column identifies the rows, and filters may drop some"
    )


def test_expired_approval_needs_a_new_one(example: Path) -> None:
    s = session(example, settings=load_settings(ttl_days=1e-9))
    s.draft()
    s.approve("alice")
    with pytest.raises(ApprovalRequired, match="expired"):
        s.require_approved()


def test_tampered_store_code_is_refused(example: Path, state_home: Path) -> None:
    s = session(example)
    s.draft()
    s.approve("alice")
    with sqlite3.connect(state_home / "store.sqlite") as conn:
        conn.execute("UPDATE entries SET code = code || '\nprint(1)\n'")
    with pytest.raises(StoreError, match="approval hash"):
        session(example).run(output_dir="unused")


# --- runs on real Spark -----------------------------------------------------------


@pytest.mark.spark
def test_approved_plan_runs_writes_validates_and_records(
    example: Path, tmp_path: Path, spark: Any
) -> None:
    s = session(example)
    s.draft()
    s.approve("alice")
    out = tmp_path / "out"
    summary = s.run(output_dir=str(out))
    assert summary.outcome == "succeeded" and summary.report.passed
    trades = {t.table: t for t in summary.report.tables}["TRADES"]
    assert trades.rows_read == 5000
    cancelled = sum(
        1
        for r in csv.DictReader((example.parent / "trades.csv").open())
        if r["Status"] == "CANCELLED"
    )
    assert trades.rows_written == 5000 - cancelled
    schema = pq.read_schema(next((out / "TRADES").glob("*.parquet")))
    mapping_order = [t.name for t in s.mapping.targets if t.table == "TRADES"]
    assert schema.names == mapping_order
    assert str(schema.field("AMOUNT").type) == "decimal128(18, 2)"
    assert str(schema.field("TRADE_DATE").type) == "date32[day]"
    # every column optional, whatever Spark proves of its rule (TRADER is a concat_ws,
    # SOURCE_SYSTEM a literal): the schema claims no more than the run enforces
    assert [f.name for f in schema if not f.nullable] == []
    text = summary.to_text()  # the real folders, one per target table
    assert f"output (parquet): {out}/TRADES/, {out}/COUNTERPARTIES/" in text
    entry = s.entry()
    assert entry is not None and entry.runs == 1 and entry.last_outcome == "succeeded"
    events = [e.event for e in s.audit.events()]
    assert events == ["draft", "approval", "run_start", "run_end"]
    assert AuditLog(s.settings.audit_path).verify().ok
    # a second session (a replay) runs the same approved code and counts the run
    again = session(example).run(output_dir=str(out))
    assert again.code_sha256 == summary.code_sha256
    assert session(example).entry().runs == 2  # type: ignore[union-attr]


@pytest.mark.spark
def test_wrong_date_pattern_fails_validation(example: Path, tmp_path: Path, spark: Any) -> None:
    set_rule(example, "TRADE_DATE", "parse date DD/MM/YYYY")  # the data is MM/DD/YYYY
    s = session(example)
    s.draft()
    s.approve("alice")
    summary = s.run(output_dir=str(tmp_path / "out"))
    assert summary.outcome == "validation_failed"
    failed = {(c.column, c.kind) for c in summary.report.failures}
    assert ("TRADE_DATE", "conversion") in failed and ("TRADE_DATE", "required") in failed
    assert s.entry().last_outcome == "validation_failed"  # type: ignore[union-attr]


@pytest.mark.spark
def test_failed_validation_is_an_error_in_a_replay(
    example: Path, tmp_path: Path, spark: Any
) -> None:
    set_rule(example, "TRADE_DATE", "parse date DD/MM/YYYY")  # the data is MM/DD/YYYY
    s = session(example)
    s.draft()
    s.approve("alice")
    with pytest.raises(ValidationFailed, match="failed validation") as err:
        session(example, mode="replay").run(output_dir=str(tmp_path / "out"))
    assert err.value.exit_code == 4 and err.value.summary.outcome == "validation_failed"
    assert not (tmp_path / "out" / "TRADES").exists()  # nothing published, recorded as such
    assert s.entry().last_outcome == "validation_failed"  # type: ignore[union-attr]


@pytest.mark.spark
def test_execution_failure_is_recorded_as_failed(example: Path, tmp_path: Path, spark: Any) -> None:
    s = session(example)
    s.draft()
    s.approve("alice")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with (
        pytest.raises(ExecutionError) as err,
        pytest.warns(DataEngMagicsWarning, match="evidence could not be written beside"),
    ):
        s.run(output_dir=str(blocker))
    assert "\n" not in str(err.value)
    entry = s.entry()
    assert entry is not None and entry.runs == 1 and entry.last_outcome == "failed"
    assert [e.event for e in s.audit.events()][-1] == "run_end"
