"""Checks in the plan: the vocabulary, the Checks sheet and Validation column, lint, the
single-pass compiled checks (quarantine, row accounting, control totals, reconciliation,
deterministic lookups) on real local Spark, and both planners editing checks."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from dataeng_magics.canonical import hashed_form
from dataeng_magics.cli import main
from dataeng_magics.compile.codegen import compile_plan
from dataeng_magics.compile.lint import check_plan, java_regex_problem
from dataeng_magics.config import load_settings
from dataeng_magics.errors import ConfigError, MappingError, PlanError, ValidationFailed
from dataeng_magics.mapping.read import read_mapping
from dataeng_magics.plan.checks import (
    check_name,
    describe_check,
    parse_chat_check,
    parse_check,
)
from dataeng_magics.plan.model import (
    Between,
    Compare,
    LookupDuplicates,
    Matches,
    NotNull,
    OneOf,
    Plan,
    SqlCheck,
    TotalEquals,
    Unique,
)
from dataeng_magics.plan.render import render_pseudocode
from dataeng_magics.state.audit import AuditLog
from dataeng_magics.workflow import TransformRequest, TransformSession

CLIENT_DIR = Path(__file__).parent / "data" / "checks_client"


@pytest.fixture
def client(tmp_path: Path) -> Path:
    """A private copy of the held-in client whose Checks sheet uses every kind and action."""
    target = tmp_path / "checks_client"
    shutil.copytree(CLIENT_DIR, target)
    return target / "checks_client.xlsx"


def session(mapping: Path, mode: str = "interactive", **kwargs: Any) -> TransformSession:
    request = TransformRequest(client="ACME", mapping=mapping, **kwargs)
    return TransformSession(request, load_settings(), mode=mode)  # type: ignore[arg-type]


def approved(mapping: Path, mode: str = "replay", **kwargs: Any) -> TransformSession:
    session(mapping).draft()
    session(mapping).approve("alice")
    return session(mapping, mode, **kwargs)


def set_cell(mapping: Path, sheet: str, cell: str, value: str | None) -> None:
    book = load_workbook(mapping)
    book[sheet][cell] = value
    book.save(mapping)


# --- the vocabulary --------------------------------------------------------------------

EVERY_KIND = [
    NotNull(columns=["A"]),
    Unique(columns=["A", "B"], action="warn"),
    OneOf(columns=["C"], values=["USD", "EUR", "it's"], action="quarantine"),
    Between(columns=["Q"], low="1", high="1000"),
    Between(columns=["D"], low="2024-01-01", high="2024-12-31"),
    *(Compare(columns=["A"], op=op, value="-0.5") for op in (">", ">=", "<", "<=")),
    Matches(columns=["T"], pattern="T[0-9]{6}|X'Y"),
    SqlCheck(expression="A < B OR B IS NULL", action="warn"),
    TotalEquals(columns=["A"], source_column="Amount", factor="1000", tolerance="0.01"),
    TotalEquals(columns=["A"], source_column="Amount"),
    LookupDuplicates(columns=["N"], source="cpty", key="Cpty ID"),
]


@pytest.mark.parametrize("check", EVERY_KIND, ids=[check_name(c) for c in EVERY_KIND])
def test_every_check_reads_back_from_its_pseudocode(check: Any) -> None:
    assert parse_check(describe_check(check), check.columns, check.action) == check


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("add validation for negative values on AMOUNT", "AMOUNT >= 0"),
        ("AMOUNT must be positive", "AMOUNT > 0"),
        ("TRADE_ID must be unique", "TRADE_ID unique"),
        ("CURRENCY must be one of USD, EUR, GBP", "CURRENCY one of 'USD', 'EUR', 'GBP'"),
        ("check AMOUNT > 0, quarantine", "AMOUNT > 0"),
        ("check TRADE_ID, CURRENCY unique, warn", "TRADE_ID, CURRENCY unique"),
        ("TRADE_ID must match 'T[0-9]{6}'", "TRADE_ID matches 'T[0-9]{6}'"),
        ("QUANTITY must not be null", "QUANTITY not null"),
        ("check QUANTITY between 1 and 5 (warn)", "QUANTITY between 1 and 5"),
    ],
)
def test_chat_phrasings_people_write_become_checks(line: str, expected: str) -> None:
    found = parse_chat_check(line)
    assert found is not None
    columns, phrase, action = found
    check = parse_check(phrase, columns, action)
    assert check_name(check) == expected
    assert check.action == ("quarantine" if "quarantine" in line else "warn" if "warn" in line
                            else "fail")  # fmt: skip


def test_rules_and_other_text_are_not_checks() -> None:
    assert parse_chat_check("AMOUNT: multiply by 1000") is None
    assert parse_chat_check("filter: Status <> 'X'") is None
    with pytest.raises(ValueError, match="is not a check"):
        parse_check("looks fine", ["A"])


def test_java_regex_subset_is_checked_without_a_jvm() -> None:
    assert java_regex_problem(r"\p{Alpha}{3}(?<code>[0-9]+)") is None
    assert java_regex_problem("[A-Z") is not None
    assert "Java" in (java_regex_problem("(?P<x>a)") or "")


# --- the workbook ------------------------------------------------------------------------


def test_checks_sheet_and_validation_column_are_read(client: Path) -> None:
    mapping = read_mapping(client)
    assert [(c.table, c.columns, c.check, c.action) for c in mapping.checks][:3] == [
        ("TRADES", ["AMOUNT"], "> 0", "quarantine"),
        ("TRADES", ["TRADE_ID"], "matches 'T[0-9]{6}'", "quarantine"),
        ("TRADES", ["CURRENCY"], "one of USD, EUR, GBP", "warn"),
    ]
    assert next(t for t in mapping.targets if t.name == "QUANTITY").validation == "< 1000000"
    assert len(mapping.checks) == 12 and mapping.checks[9].columns == []


def test_a_checks_sheet_with_a_target_column_header_is_not_a_mapping_sheet(client: Path) -> None:
    set_cell(client, "Checks", "B1", "Target Column")
    set_cell(client, "Checks", "D1", "Action")
    set_cell(client, "Checks", "C1", "Validation")
    assert len(read_mapping(client).checks) == 12


@pytest.mark.parametrize(
    ("cell", "value", "message", "column"),
    [
        ("C3", "looks fine", "is not a check", "Check (C)"),
        ("D3", "maybe", "not an action", "On Failure (D)"),
        ("C3", "between 1 and", "is not a check", "Check (C)"),
    ],
)
def test_a_bad_checks_row_is_reported_at_its_cell(
    client: Path, cell: str, value: str, message: str, column: str
) -> None:
    set_cell(client, "Checks", cell, value)
    with pytest.raises(MappingError, match=message) as info:
        read_mapping(client)
    assert (info.value.sheet, info.value.row, info.value.column) == ("Checks", 3, column)
    assert "\n" not in str(info.value)


def test_a_check_on_an_unknown_column_or_table_names_its_row(client: Path) -> None:
    set_cell(client, "Checks", "B4", "CURENCY")
    with pytest.raises(MappingError, match="unknown column 'CURENCY'") as info:
        read_mapping(client)
    assert (info.value.sheet, info.value.row) == ("Checks", 4)


def test_a_bad_validation_cell_and_a_rejected_table_name_are_refused(client: Path) -> None:
    set_cell(client, "Mapping", "H5", "sometimes")
    with pytest.raises(MappingError, match="is not a check") as info:
        read_mapping(client)
    assert (info.value.sheet, info.value.row, info.value.column) == (
        "Mapping", 5, "Validation (H)"
    )  # fmt: skip
    set_cell(client, "Mapping", "H5", None)
    set_cell(client, "Mapping", "A2", "TRADES__rejected")
    with pytest.raises(MappingError, match="'TRADES__rejected' is not allowed"):
        read_mapping(client)


# --- the plan ------------------------------------------------------------------------------


def test_checks_are_in_the_plan_its_pseudocode_and_its_hash(client: Path) -> None:
    plan = Plan.model_validate_json(session(client).draft().plan_json)
    table = plan.table("TRADES")
    assert [check_name(c) for c in table.checks][:2] == ["QUANTITY < 1000000", "AMOUNT > 0"]
    lookup = next(c for c in table.checks if isinstance(c, LookupDuplicates))
    assert (lookup.source, lookup.key, lookup.action) == ("counterparties", "Cpty ID", "warn")
    text = render_pseudocode(plan)
    assert "  CHECK AMOUNT > 0  ON FAILURE quarantine" in text
    assert "  CHECK sql: AMOUNT < 1000000  ON FAILURE fail" in text
    # A plan without checks hashes as before checks existed; a check changes the hash.
    bare = plan.model_copy(update={"tables": [table.model_copy(update={"checks": []})]})
    assert "checks" not in hashed_form(bare)["tables"][0]
    assert bare.sha256() != plan.sha256()
    fewer = table.model_copy(update={"checks": table.checks[1:]})
    assert plan.model_copy(update={"tables": [fewer]}).sha256() != plan.sha256()


def _with_checks(plan: Plan, *checks: Any) -> Plan:
    table = plan.tables[0].model_copy(update={"checks": list(checks)})
    return plan.model_copy(update={"tables": [table]})


def test_lint_refuses_bad_checks_before_compiling(client: Path) -> None:
    plan = Plan.model_validate_json(session(client).draft().plan_json)
    schemas = {n: dict(s.columns) for n, s in plan.sources.items()}
    bad = {
        "invalid regex": Matches(columns=["TRADE_ID"], pattern="T[0-9"),
        "not a column of TRADES": NotNull(columns=["NOPE"]),
        "only checks of single rows can quarantine": Unique(columns=["TRADE_ID"],
                                                             action="quarantine"),
        "not a valid bigint": Compare(columns=["QUANTITY"], op=">", value="abc"),
        "is not in trades": TotalEquals(columns=["AMOUNT"], source_column="Amt"),
        "has no lookup from": LookupDuplicates(source="trades", key="Qty"),
    }  # fmt: skip
    for message, check in bad.items():
        problems = check_plan(_with_checks(plan, check), schemas)
        assert problems and message in str(problems[0]), (message, problems)
    unsafe = check_plan(_with_checks(plan, SqlCheck(expression="reflect('a', 'b') = 1")), schemas)
    assert unsafe and unsafe[0].unsafe
    with pytest.raises(PlanError, match="invalid regex"):
        compile_plan(_with_checks(plan, Matches(columns=["TRADE_ID"], pattern="(")))


def test_checks_compile_into_the_same_single_pass(client: Path) -> None:
    plan = Plan.model_validate_json(session(client).draft().plan_json)
    code = compile_plan(plan)
    tree = ast.parse(code)
    calls = [n.func.attr for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]  # fmt: skip
    # one select per table (+ the lookup's and the rejected rows'), no UDF, no collect
    assert calls.count("select") == 4 and "collect" not in calls and "udf" not in code
    bare = compile_plan(_with_checks(plan))
    # the sources are read as without checks: the quarantine split writes from the kept
    # frame (persisted), so no second read
    assert calls.count("persist") == 1 and code.count(".csv(") == bare.count(".csv(")
    assert "dropDuplicates" not in code and "F.min(F.struct(" in code
    # ONE Observation in the table's pass (each splits Spark's generated code): the
    # malformed records, filters, control sums and checks are all counted in it; the
    # lookup source keeps its own; then one per unique check, on the output, and one per
    # quarantine check, for its examples, on the rejected rows
    chain = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                 and getattr(n.targets[0], "id", "") == "trades_table")  # fmt: skip
    assert ast.unparse(chain).count(".observe(") == 1
    assert code.count("Observation()") == bare.count("Observation()") + 2 + 2 == 2 + 2 + 2
    assert "trades_malformed" not in code and "counterparties_malformed = Observation()" in code
    assert (
        "example_min" not in code and "collect_list" not in code.split("trades_table.unpersist")[0]
    )


# --- running it on Spark -----------------------------------------------------------------


def test_the_held_in_client_runs_every_check_kind_and_action(
    client: Path, tmp_path: Path, spark: Any, state_home: Path
) -> None:
    out = tmp_path / "out"
    summary = approved(client, output_dir=str(out)).run()
    report = summary.report
    assert report.passed, report.to_text()
    trades = next(t for t in report.tables if t.table == "TRADES")
    # every row accounted for: 8 read = 5 written + 2 quarantined + 1 cancelled
    assert (trades.rows_read, trades.rows_written, trades.quarantined) == (8, 5, 2)
    assert trades.dropped == {"Status <> 'CANCELLED'": 1}
    accounting = next(c for c in trades.checks if c.kind == "accounting")
    assert accounting.passed
    by_name = {c.name: c for c in trades.checks if c.name}
    assert by_name["AMOUNT > 0"].failed == 1 and by_name["AMOUNT > 0"].action == "quarantine"
    assert by_name["AMOUNT > 0"].examples == ("-500.00 (source '-0.5')",)
    assert by_name["TRADE_ID matches 'T[0-9]{6}'"].failed == 1
    currency = by_name["CURRENCY one of 'USD', 'EUR', 'GBP'"]
    assert (currency.failed, currency.severity, currency.examples) == (
        1, "warning", ("JPY (source 'jpy')",)
    )  # fmt: skip
    assert by_name["QUANTITY between 1 and 1000"].failed == 1
    assert by_name["QUANTITY >= 0"].passed and by_name["AMOUNT <= 100000"].passed
    assert by_name["TRADE_ID unique"].passed and by_name["TRADE_ID, CURRENCY unique"].passed
    assert by_name["sql: AMOUNT < 1000000"].passed
    assert by_name["AMOUNT total equals source Amount x 1000"].passed
    # C2 has two names: flagged (rows using it), and the smallest name is taken, every run
    duplicates = next(c for c in trades.checks if c.kind == "lookup_duplicates")
    assert (duplicates.failed, duplicates.severity) == (2, "warning")
    written = pd.read_parquet(out / "TRADES").sort_values("TRADE_ID")
    assert list(written["TRADE_ID"]) == ["T000001", "T000002", "T000004", "T000005", "T000007"]
    assert set(written.loc[written["TRADE_ID"] == "T000002", "COUNTERPARTY"]) == {"Beta"}
    assert not [c for c in written.columns if c.startswith("_")]
    rejected = pd.read_parquet(out / "TRADES__rejected").sort_values("TRADE_ID")
    assert list(rejected["TRADE_ID"]) == ["T000003", "X-8"]
    assert list(rejected["failed_checks"]) == ["AMOUNT > 0", "TRADE_ID matches 'T[0-9]{6}'"]
    assert list(rejected["source_Amount"]) == ["-0.5", "1"]
    # a quarantine run's tables, rejected rows included, claim no column is never null
    for table in ("TRADES", "TRADES__rejected"):
        schema = pq.read_schema(next((out / table).glob("*.parquet")))
        assert [f.name for f in schema if not f.nullable] == [], table
    start = [r for r in AuditLog(state_home / "audit.jsonl").events() if r.event == "run_start"]
    assert set(rejected["run_id"]) == {start[-1].details["run_id"]}
    assert json.loads(json.dumps(report.to_dict()))["tables"][0]["quarantined"] == 2


def test_a_wrong_multiplier_is_caught_by_the_source_total(
    client: Path, tmp_path: Path, spark: Any
) -> None:
    set_cell(client, "Mapping", "F3", "multiply by 100")
    with pytest.raises(ValidationFailed, match="total equals source Amount x 1000") as info:
        approved(client, output_dir=str(tmp_path / "out")).run()
    assert info.value.exit_code == 4
    total = next(c for c in info.value.summary.report.failures if c.kind == "total")
    assert "1325.00" in total.message and "13250" in total.message


def test_control_totals_match_or_fail_the_run_with_both_numbers(
    client: Path, tmp_path: Path, spark: Any
) -> None:
    s = approved(client, output_dir=str(tmp_path / "out"))
    ok = s.run(controls={"trades.rows": "8", "trades.Amount": "14.25+-0.001"})
    controls = [c for t in ok.report.tables for c in t.checks if c.kind == "control"]
    assert len(controls) == 2 and all(c.passed for c in controls)
    with pytest.raises(ValidationFailed) as info:
        s.run(controls={"trades.rows": "4610"})
    assert "expected 4610, the source as read gives 8" in str(info.value)
    with pytest.raises(ConfigError, match="does not read column 'Notes'"):
        s.run(controls={"trades.Notes": "1"})
    with pytest.raises(ConfigError, match="not a source a table reads its rows from"):
        s.run(controls={"counterparties.rows": "4"})


def test_cli_run_takes_controls_and_exits_4(
    client: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--client", "ACME", "--mapping", str(client), "--output-dir", str(tmp_path / "o")]
    assert main(["draft", *flags[:4]]) == 0
    assert main(["approve", *flags[:4], "--reviewer", "alice"]) == 0
    assert main(["run", *flags, "--control", "trades.rows=8"]) == 0
    assert main(["run", *flags, "--control", "trades.rows=9"]) == 4
    assert "FAIL rows [control]: control total trades.rows: expected 9" in capsys.readouterr().out
    with pytest.raises(SystemExit) as usage:  # argparse's own usage error
        main(["run", *flags, "--control", "trades"])
    assert usage.value.code == 2


# --- the planners --------------------------------------------------------------------------


def test_the_offline_planner_adds_and_removes_checks_from_the_chat(client: Path) -> None:
    s = session(client)
    s.draft()
    entry, result = s.revise(
        "AMOUNT must be positive\ncheck CURRENCY one of USD, EUR, quarantine\n"
        "add validation for negative values on QUANTITY"
    )
    assert not result.not_understood, result.reply
    added = [check_name(c) + " " + c.action for c in s.plan_of(entry).tables[0].checks[-3:]]
    assert added == ["AMOUNT > 0 fail", "CURRENCY one of 'USD', 'EUR' quarantine",
                     "QUANTITY >= 0 fail"]  # fmt: skip
    entry, result = s.revise("remove checks on CURRENCY")
    assert not any("CURRENCY" in c.columns for c in s.plan_of(entry).tables[0].checks)
    _, result = s.revise("check NOPE > 1")
    assert result.not_understood


def test_the_llm_planner_edits_checks_through_its_structured_answer(client: Path) -> None:
    from test_llm import ScriptedModel, answer

    from dataeng_magics.agent import get_planner

    edit = {
        "explanation": "Amounts must be positive; bad rows are quarantined.",
        "checks": [
            {
                "table": "TRADES",
                "add": [{"columns": ["AMOUNT"], "check": ">= 0", "action": "quarantine"}],
                "remove": ["CURRENCY not null"],
            }
        ],
    }
    unsafe = {"check": "sql: reflect('a','b') = 1"}
    bad = {"explanation": "x", "checks": [{"table": "TRADES", "add": [unsafe]}]}
    model = ScriptedModel(responses=[answer(edit), answer(bad), answer(bad)])
    config = load_settings()
    s = TransformSession(TransformRequest(client="ACME", mapping=client), config,
                         planner=get_planner(config, model))  # fmt: skip
    s.draft()  # the draft comes from the mapping: no model call for a plan with no gaps
    entry, result = s.revise("AMOUNT must not be negative; quarantine those rows")
    names = [(check_name(c), c.action) for c in s.plan_of(entry).tables[0].checks]
    assert ("AMOUNT >= 0", "quarantine") in names and ("CURRENCY not null", "fail") not in names
    assert "7. Data checks" in model.prompt(0)  # the model is told what checks are
    before = s.plan_of(entry)
    entry, result = s.revise("add a check with reflect")
    assert s.plan_of(entry) == before and model.calls == 3  # refused, asked again, refused
    assert "reflect" in result.reply


def test_the_magic_takes_controls_as_flags_or_a_papermill_parameter(
    client: Path, tmp_path: Path, spark: Any
) -> None:
    from IPython.core.error import UsageError
    from test_magics import Shell, magics_of

    ip = Shell.instance()
    ip.run_line_magic("load_ext", "dataeng_magics")
    magics_of(ip).current = None
    approved(client)
    cell = f"%%transform --client ACME --mapping {client} --output-dir {tmp_path / 'o'} --replay"
    try:
        ip.user_ns["controls"] = '{"trades.rows": "9"}'  # as `replay -p controls ...` passes it
        with pytest.raises(UsageError, match=r"ValidationFailed: .*expected 9"):
            ip.run_cell(cell)
        ip.run_cell(cell + " --control trades.rows=8")  # the flag wins over the parameter
        ip.user_ns["controls"] = "rows=9"
        with pytest.raises(UsageError, match="'controls' parameter is not a JSON object"):
            ip.run_cell(cell)
    finally:
        ip.user_ns.pop("controls", None)
        Shell.clear_instance()


def test_a_quarantine_check_reports_up_to_ten_examples(
    client: Path, tmp_path: Path, spark: Any
) -> None:
    trades = client.parent / "trades.csv"
    extra = "".join(f"T1000{n:02d},-{n}.25,USD,1,NEW,C1\n" for n in range(1, 13))
    trades.write_text(trades.read_text(encoding="utf-8") + extra, encoding="utf-8")
    report = approved(client, output_dir=str(tmp_path / "out")).run().report
    [positive] = [c for t in report.tables for c in t.checks if c.name == "AMOUNT > 0"]
    assert positive.failed == 13 and len(positive.examples) == 10
    assert all(" (source '-" in e for e in positive.examples)
    assert "AMOUNT > 0 in 13 row(s), quarantined, e.g. " in positive.message


def test_sql_that_would_fail_on_a_filtered_out_row_never_fails_the_run(
    client: Path, tmp_path: Path, spark: Any
) -> None:
    """Rows a filter drops reach the table's one observation before they are dropped;
    SQL (the only code that can raise under ANSI, e.g. 1 / 0) is never evaluated for
    them, so a run that passed when they were dropped first still passes."""
    trades = client.parent / "trades.csv"
    text = trades.read_text(encoding="utf-8")
    text = text.replace("T000005,4,USD,0,NEW", "T000005,4,USD,4,NEW")
    text = text.replace("T000006,1,USD,1,CANCELLED", "T000006,1,USD,0,CANCELLED")
    trades.write_text(text, encoding="utf-8")
    set_cell(client, "Mapping", "F5", "sql: 100 / Qty")  # QUANTITY's rule
    set_cell(client, "Checks", "C11", "sql: 100 / QUANTITY > 0")  # a fail check
    out = tmp_path / "out"
    report = approved(client, output_dir=str(out)).run().report
    assert report.passed, report.to_text()
    [table] = report.tables
    assert (table.rows_read, table.rows_written, table.quarantined) == (8, 5, 2)
    assert table.dropped == {"Status <> 'CANCELLED'": 1}
    assert next(c for c in table.checks if c.name == "sql: 100 / QUANTITY > 0").passed
    written = pd.read_parquet(out / "TRADES").sort_values("TRADE_ID")
    assert list(written["QUANTITY"]) == [10, 5, 14, 25, 33]  # 100 / Qty
    assert "T000006" not in set(written["TRADE_ID"])


def test_malformed_records_of_the_table_and_of_its_lookup_are_both_counted(
    client: Path, tmp_path: Path, spark: Any
) -> None:
    """The table's source has its malformed records counted in the table's observation
    (before its filter), the lookup source in its own: both fail the run. (After 100
    good rows each, which the sample reads.)"""
    cancelled = "".join(f"T3{n:05d},1,USD,1,CANCELLED,C1\n" for n in range(100))
    more = "".join(f"D{n},Other\n" for n in range(100))
    for name, lines in (("trades.csv", cancelled + "T000009,1,USD,2,NEW,C1,extra\n"),
                        ("counterparties.csv", more + "C4,Delta,extra\n")):  # fmt: skip
        path = client.parent / name
        path.write_text(path.read_text(encoding="utf-8") + lines, encoding="utf-8")
    summary = approved(client, mode="interactive").run(output_dir=str(tmp_path / "out"))
    assert summary.outcome == "validation_failed"
    malformed = {c.column: c.failed for c in summary.report.failures if c.kind == "malformed"}
    assert malformed == {"trades": 1, "counterparties": 1}
    [table] = summary.report.tables
    assert (table.rows_read, table.rows_written, table.quarantined) == (108, 5, 2)
    assert table.dropped == {"Status <> 'CANCELLED'": 101}


def test_a_warn_check_reports_ten_distinct_examples_the_same_every_run(
    client: Path, tmp_path: Path, spark: Any
) -> None:
    trades = client.parent / "trades.csv"
    extra = "".join(f"T2000{n:02d},1,X{n:02d},5,NEW,C1\n" for n in range(1, 15))
    trades.write_text(trades.read_text(encoding="utf-8") + extra, encoding="utf-8")
    s = approved(client)
    runs = [s.run(output_dir=str(tmp_path / f"out{n}")) for n in (1, 2)]
    failing = {"JPY (source 'jpy')", *(f"X{n:02d} (source 'X{n:02d}')" for n in range(1, 15))}
    found = []
    for summary in runs:
        [currency] = [c for t in summary.report.tables for c in t.checks
                      if c.name == "CURRENCY one of 'USD', 'EUR', 'GBP'"]  # fmt: skip
        assert currency.failed == 15 and currency.action == "warn"
        assert len(set(currency.examples)) == 10 and set(currency.examples) <= failing
        assert list(currency.examples) == sorted(currency.examples)
        [record] = [c for t in summary.evidence["validation"]["tables"] for c in t["checks"]
                    if c.get("name") == currency.name]  # fmt: skip
        assert record["examples"] == list(currency.examples)
        found.append(currency.examples)
    assert found[0] == found[1]


def test_the_only_loop_generated_code_may_hold_is_over_the_runs_control_columns() -> None:
    from dataeng_magics.compile.safety import check_generated
    from dataeng_magics.errors import UnsafePlanError

    check_generated('x = [c for c in control_columns.get("trades", [])]')
    for code in (
        "x = [c for c in source_paths]",
        'x = [c for c in control_columns.get("t", []) if c]',
        'x = [c for c in control_columns.get("t", []) for d in source_paths]',
        'x = [(a, b) for (a, b) in control_columns.get("t", [])]',
    ):
        with pytest.raises(UnsafePlanError):
            check_generated(code)


@pytest.mark.connect
def test_the_checked_client_runs_over_spark_connect(
    spark_connect_server: Any, client: Path, tmp_path: Path
) -> None:
    """Quarantine (persist), unique and example read-backs (noop writes with an
    Observation) and the deterministic lookup also run on a Spark Connect server."""
    from dataeng_magics.run.executors.connect import ConnectExecutor

    executor = ConnectExecutor(spark_connect_server.url, poll_seconds=0.2)
    summary = approved(client).run(output_dir=str(tmp_path / "out"), executor=executor)
    trades = summary.report.tables[0]
    assert summary.outcome == "succeeded" and (trades.rows_written, trades.quarantined) == (5, 2)
    by_name = {c.name: c for c in trades.checks if c.name}
    assert by_name["AMOUNT > 0"].examples == ("-500.00 (source '-0.5')",)
    assert by_name["TRADE_ID unique"].passed
    assert len(pd.read_parquet(tmp_path / "out" / "TRADES__rejected")) == 2
