"""The rule-based planner: drafts a plan from the mapping's rule vocabulary, no LLM.

It is the default planner and the fallback when no model is configured. What it does
not understand stays visibly unresolved in the plan instead of being guessed.
"""

from __future__ import annotations

import difflib
import re

from dataeng_magics.agent.protocol import PlanningContext, PlanResult, Schemas
from dataeng_magics.compile.lint import check_plan, used_columns
from dataeng_magics.errors import MappingError
from dataeng_magics.mapping.model import Mapping, TargetColumn
from dataeng_magics.plan.checks import check_name, parse_chat_check, parse_check
from dataeng_magics.plan.model import (
    Check,
    ColumnPlan,
    Concat,
    Constant,
    Default,
    DigitsOnly,
    Divide,
    FilterPlan,
    Lookup,
    LookupDuplicates,
    Lower,
    MapValues,
    Multiply,
    ParseDate,
    Plan,
    Round,
    SourceRead,
    Sql,
    Step,
    Substring,
    TablePlan,
    Trim,
    Unresolved,
    Upper,
)
from dataeng_magics.plan.render import column_steps, describe_step
from dataeng_magics.plan.rules import SEPARATORS, parse_rule

#: "COLUMN: add trim" keeps the column's steps; "COLUMN: remove default" drops one.
_EDIT = re.compile(r"^(?P<verb>add|also|plus|remove|drop|without)\s+(?P<rest>.+)$", re.I)
_REMOVE_VERBS = ("remove", "drop", "without")


_KINDS: dict[str, type[Step]] = {
    "default": Default, "trim": Trim, "upper": Upper, "lower": Lower, "date": ParseDate,
    "parse date": ParseDate, "round": Round, "multiply": Multiply, "divide": Divide,
    "map": MapValues, "digits only": DigitsOnly, "substring": Substring, "sql": Sql,
    "constant": Constant, "lookup": Lookup, "concat": Concat,
}  # fmt: skip
Unwanted = Step | type[Step]


def _named_steps(text: str) -> list[Unwanted]:
    """Steps to remove, by rule ("default 'XX'") or by kind alone ("default", "trim")."""
    found: list[Unwanted] = []
    for chunk in SEPARATORS.split(text):
        if chunk.strip():
            kind = _KINDS.get(" ".join(chunk.lower().split()))
            found += [kind] if kind is not None else parse_rule(chunk)
    return found


def _without(steps: list[Step], unwanted: list[Unwanted]) -> tuple[list[Step], list[str]]:
    """``steps`` less each unwanted step (the same step, or the first of a kind named
    alone: "remove default" needs no value), and what the column does not have."""
    kept, missing = list(steps), []
    for step in unwanted:
        if isinstance(step, type):
            match = next((s for s in kept if isinstance(s, step)), None)
        else:
            match = next((s for s in kept if s == step), None)
        if match is None:
            kind = next((name for name, k in _KINDS.items() if k is step), "")
            missing.append(kind if isinstance(step, type) else describe_step(step))
        else:
            kept.remove(match)
    return kept, missing


def _driving_source(columns: list[TargetColumn]) -> str | None:
    """The source whose rows become the table's rows: the first column read directly."""
    for column in columns:
        steps = parse_rule(column.rule)
        if column.source and not (steps and isinstance(steps[0], Lookup)):
            return column.source
    return next((c.source for c in columns if c.source), None)


def _check_source_column(
    mapping: Mapping, column: TargetColumn, name: str, source: str, schemas: Schemas
) -> None:
    """A column the mapping names must be in the source's header (the classic typo)."""
    header = schemas.get(source, {})
    if name in header or any(c.lower() == name.lower() for c in header):
        return
    close = difflib.get_close_matches(name, list(header), n=1, cutoff=0.5)
    raise MappingError(
        f"source column {name!r} is not in the header of source {source!r}",
        file=mapping.file,
        sheet=column.sheet,
        row=column.row,
        column="Source Column",
        hint=f"Did you mean {close[0]!r}?" if close else f"Columns: {', '.join(header)}.",
    )


def _column_plan(
    mapping: Mapping, column: TargetColumn, driving: str, schemas: Schemas
) -> ColumnPlan:
    steps: list[Step] = list(parse_rule(column.rule))
    first = steps[0] if steps else None
    if column.source and column.source != driving and not isinstance(first, Lookup):
        steps = [
            Unresolved(
                text=column.rule or "(blank)",
                reason=f"reads source {column.source!r} but the table's rows come from "
                f"{driving!r}; write 'lookup COLUMN from {column.source} on KEY'",
            )
        ]
    elif column.source_column and column.source and not isinstance(first, Lookup):
        _check_source_column(mapping, column, column.source_column, column.source, schemas)
    for step in steps:
        if isinstance(step, Lookup):
            if step.source not in mapping.sources:
                close = difflib.get_close_matches(step.source, list(mapping.sources), n=1)
                raise MappingError(
                    f"lookup names unknown source {step.source!r}",
                    file=mapping.file,
                    sheet=column.sheet,
                    row=column.row,
                    column="Transformation Rule",
                    hint=f"Did you mean {close[0]!r}?"
                    if close
                    else f"Sources: {', '.join(mapping.sources)}.",
                )
            _check_source_column(mapping, column, step.column, step.source, schemas)
            _check_source_column(mapping, column, step.key, step.source, schemas)
            _check_source_column(mapping, column, step.key, driving, schemas)
    if column.default is not None:
        steps.append(Default(value=column.default))
    return ColumnPlan(
        name=column.name,
        type=column.type,
        source_column=column.source_column,
        steps=steps,
        required=column.required,
        rule=column.rule,
    )


def with_lookup(check: Check, columns: list[ColumnPlan]) -> Check:
    """A duplicated-lookup-keys check written on a column ("no duplicate keys") takes its
    source and key from that column's lookup."""
    if not isinstance(check, LookupDuplicates) or check.source:
        return check
    for column in columns:
        if column.name.lower() in (c.lower() for c in check.columns):
            for step in column.steps:
                if isinstance(step, Lookup):
                    return check.model_copy(update={"source": step.source, "key": step.key})
    raise ValueError("duplicated lookup keys: name a column filled by a lookup")


def _table_checks(mapping: Mapping, table: str, columns: list[ColumnPlan]) -> list[Check]:
    """The mapping's checks for ``table``: each Validation cell (fail), then the Checks
    sheet's rows. (Required columns are counted as nulls by the compiler already.)"""
    checks: list[Check] = [
        parse_check(t.validation, [t.name]) for t in mapping.targets
        if t.table == table and t.validation
    ]  # fmt: skip
    for spec in mapping.checks:
        if spec.table != table:
            continue
        try:
            check = with_lookup(parse_check(spec.check, spec.columns, spec.action), columns)
        except ValueError as exc:
            raise MappingError(str(exc), file=mapping.file, sheet=spec.sheet, row=spec.row,
                               column="Check") from None  # fmt: skip
        checks.append(check)
    return checks


def _flag_problems(plan: Plan, schemas: Schemas) -> Plan:
    """Turn each column-level problem into a visible unresolved step; the rest is fatal."""
    problems = check_plan(plan, schemas)
    by_column = {(p.table, p.column): p for p in problems if p.column}
    fatal = [p for p in problems if not p.column]
    if fatal:
        raise MappingError(str(fatal[0]), file=None)
    if not by_column:
        return plan
    tables = []
    for table in plan.tables:
        columns = []
        for column in table.columns:
            problem = by_column.get((table.name, column.name))
            if problem:
                column = column.model_copy(
                    update={"steps": [Unresolved(text=column.rule, reason=problem.message)]}
                )
            columns.append(column)
        tables.append(table.model_copy(update={"columns": columns}))
    return plan.model_copy(update={"tables": tables})


def with_read_schemas(plan: Plan, schemas: Schemas) -> Plan:
    """Record, per source, the used columns and their sample types in the plan itself."""
    used = used_columns(plan, schemas)
    sources = {
        name: read.model_copy(
            update={"columns": {c: schemas.get(name, {}).get(c, "string") for c in used[name]}}
        )
        for name, read in plan.sources.items()
    }
    return plan.model_copy(update={"sources": sources})


def _located(exc: MappingError, mapping: Mapping) -> MappingError:
    """A plan-level problem pointed at the workbook row it comes from: the filter whose
    condition it quotes, else the first row of its table."""
    table = exc.message.split(":", 1)[0]
    for f in mapping.filters:
        if f.table == table and repr(f.condition) in exc.message:
            return MappingError(
                exc.message,
                file=mapping.file,
                sheet=f.sheet,
                row=f.row,
                column=f.condition_column,
                hint="Fix or remove the filter.",
            )
    first = next((t for t in mapping.targets if t.table == table), None)
    return MappingError(
        exc.message,
        file=mapping.file,
        sheet=first.sheet if first else None,
        row=first.row if first else None,
        hint=exc.hint or "Fix the table's rows in the mapping.",
    )


def finalize(plan: Plan, schemas: Schemas) -> Plan:
    """Check a plan against the sample schemas and make it self-contained."""
    return with_read_schemas(_flag_problems(plan, schemas), schemas)


class OfflinePlanner:
    """Drafts and revises plans from the rule vocabulary alone; it uses no context and
    reports no usage (no model is involved)."""

    name = "offline"

    def draft(
        self,
        client: str,
        mapping: Mapping,
        schemas: Schemas,
        notes: str = "",
        *,
        context: PlanningContext | None = None,
    ) -> PlanResult:
        tables = []
        for table_name, columns in mapping.tables().items():
            driving = _driving_source(columns)
            if driving is None:
                raise MappingError(
                    f"table {table_name!r} reads no source: every column is a constant",
                    file=mapping.file,
                    sheet=columns[0].sheet,
                    row=columns[0].row,
                    hint="Name a Source for at least one column.",
                )
            filters = [
                FilterPlan(condition=f.condition, description=f.description or "")
                for f in mapping.filters
                if f.table == table_name
            ]
            column_plans = [_column_plan(mapping, c, driving, schemas) for c in columns]
            tables.append(
                TablePlan(
                    name=table_name,
                    source=driving,
                    filters=filters,
                    columns=column_plans,
                    checks=_table_checks(mapping, table_name, column_plans),
                )
            )
        for f in mapping.filters:
            from dataeng_magics.compile.safety import check_sql

            table = next(t for t in tables if t.name == f.table)
            try:
                check_sql(f.condition, schemas[table.source])
            except Exception as exc:
                raise MappingError(
                    f"filter {f.condition!r}: {getattr(exc, 'message', exc)}",
                    file=mapping.file,
                    sheet=f.sheet,
                    row=f.row,
                    column=f.condition_column or "Condition",
                    hint="Write a Spark SQL condition over the source's columns.",
                ) from None
        sources = {
            name: SourceRead(
                format=s.format,
                delimiter=s.delimiter,
                header=s.header,
                encoding=s.encoding,
                excel_sheet=s.excel_sheet,
                record_path=s.record_path,
                row_tag=s.row_tag,
                layout=s.layout,
            )
            for name, s in mapping.sources.items()
        }
        plan = Plan(client=client, sources=sources, tables=tables)
        try:
            plan = finalize(plan, schemas)
        except MappingError as exc:
            raise _located(exc, mapping) from None
        return self._apply_notes(plan, notes, schemas)

    def _apply_notes(self, plan: Plan, notes: str, schemas: Schemas) -> PlanResult:
        """Apply each line of the cell's notes that is an instruction in the rule
        vocabulary ("CURRENCY: default 'USD'"), and say so; the other lines stay in the
        plan as notes, context for an LLM planner only, and the reply says that too."""
        applied, kept = [], []
        for line in (raw.strip() for raw in notes.splitlines()):
            result = self.revise(plan, line, schemas) if line else None
            if result is None:
                continue
            if result.understood and not result.not_understood:
                plan = result.plan
                applied += result.understood
            else:
                kept.append(line)
        said = []
        if applied:
            said.append(f"Applied from the notes: {'; '.join(applied)}.")
        if kept:
            said.append(
                "Kept as notes, context for an LLM planner only (the offline planner acts "
                "only on 'COLUMN: rule' and 'filter: condition' lines): "
                + "; ".join(repr(line) for line in kept)
            )
        plan = plan.model_copy(update={"notes": "\n".join(kept)})
        return PlanResult(plan, " ".join(said), applied)

    def revise(
        self,
        plan: Plan,
        feedback: str,
        schemas: Schemas,
        *,
        context: PlanningContext | None = None,
    ) -> PlanResult:
        """Apply feedback written in the rule vocabulary, one instruction per line:

        ``COLUMN: <rule>`` sets that column's rule; ``filter: <condition>`` (or ``filter
        TABLE: <condition>``) adds a filter; ``drop filter TABLE``/``drop filters`` removes
        them; ``check COLUMN <check> [, warn|quarantine]`` or "AMOUNT must be positive" adds
        a check, ``remove checks on COLUMN`` drops them. Anything else is reported back as
        not understood.
        """
        understood: list[str] = []
        not_understood: list[str] = []
        tables = {t.name: t for t in plan.tables}
        columns = {(c.name.lower()): (t.name, c) for t in plan.tables for c in t.columns}
        for raw in re.split(r"[\n;]+", feedback):
            line = raw.strip()
            if not line:
                continue
            match = re.match(
                r"^(?:add\s+)?filter(?:\s+(?P<t>[^:]+?))?\s*:\s*(?P<c>.+)$", line, re.I
            )
            drop = re.match(r"^(?:drop|remove|clear)\s+filters?(?:\s+(?P<t>\S+))?$", line, re.I)
            col = re.match(r"^(?P<n>[^:]+?)\s*:\s*(?P<r>.*)$", line)
            asked = (
                None
                if col and col.group("n").strip().lower() in columns
                else parse_chat_check(line)
            )
            unchecked = re.match(
                r"^(?:drop|remove|clear)\s+(?:the\s+)?(?:checks?|validations?)\s+(?:on|for)\s+"
                r"(?P<c>\S+)$", line, re.I,
            )  # fmt: skip
            if asked is not None and (
                all(c.lower() in columns for c in asked[0]) or asked[0][0] in tables
            ):
                names, phrase, action = asked
                table_name = names[0] if names[0] in tables else columns[names[0].lower()][0]
                table = tables[table_name]
                cols = [] if names[0] in tables else [columns[c.lower()][1].name for c in names]
                try:
                    check = with_lookup(parse_check(phrase, cols, action), table.columns)
                except ValueError as exc:
                    not_understood.append(f"{line!r}: {exc}")
                    continue
                tables[table_name] = table.model_copy(update={"checks": [*table.checks, check]})
                understood.append(f"{table_name}: check {check_name(check)}, on failure {action}")
            elif unchecked and unchecked.group("c").lower() in columns:
                table_name, column = columns[unchecked.group("c").lower()]
                table = tables[table_name]
                kept = [c for c in table.checks if column.name not in c.columns]
                tables[table_name] = table.model_copy(update={"checks": kept})
                understood.append(f"{table_name}: removed the checks on {column.name}")
            elif match:
                name = match.group("t") or (plan.tables[0].name if len(plan.tables) == 1 else "")
                if name not in tables:
                    not_understood.append(
                        f"{line!r}: say which table, e.g. 'filter {plan.tables[0].name}: ...'"
                    )
                    continue
                table = tables[name]
                filters = [*table.filters, FilterPlan(condition=match.group("c").strip())]
                tables[name] = table.model_copy(update={"filters": filters})
                understood.append(f"{name}: keep rows where {match.group('c').strip()}")
            elif drop:
                names = [drop.group("t")] if drop.group("t") else list(tables)
                for name in names:
                    if name in tables:
                        tables[name] = tables[name].model_copy(update={"filters": []})
                understood.append(f"removed filters on {', '.join(names)}")
            elif col and col.group("n").strip().lower() in columns:
                table_name, column = columns[col.group("n").strip().lower()]
                rule = col.group("r").strip()
                edit = _EDIT.match(rule)
                verb, rest = (edit["verb"].lower(), edit["rest"]) if edit else ("", rule)
                removing = verb in _REMOVE_VERBS
                named = _named_steps(rest) if removing else []
                steps = [] if removing else parse_rule(rest)
                bad = [s for s in [*steps, *named] if isinstance(s, Unresolved)]
                if bad or (not rule and column.source_column is None):
                    not_understood.append(
                        f"{line!r}: did not understand "
                        f"{', '.join(repr(s.text) for s in bad) or 'an empty rule'}"
                    )
                    continue
                if removing:
                    steps, missing = _without(column.steps, named)
                    if missing:
                        not_understood.append(
                            f"{line!r}: {column.name} has no step {', '.join(missing)}"
                        )
                        continue
                # a new default replaces the old one only: the other steps stay
                new_default = bool(steps) and all(isinstance(s, Default) for s in steps)
                merged = bool(edit) or new_default
                if new_default:
                    steps = [*(s for s in column.steps if not isinstance(s, Default)), *steps]
                elif edit and not removing:  # add: the new steps go before the null default
                    current = column.steps
                    at = len(current) - (1 if current and isinstance(current[-1], Default) else 0)
                    steps = [*current[:at], *steps, *current[at:]]
                removed = [s for s in column.steps if s not in steps]
                if merged:
                    rule = column_steps(column.model_copy(update={"steps": steps}))
                new = column.model_copy(update={"steps": steps, "rule": rule})
                table = tables[table_name]
                tables[table_name] = table.model_copy(
                    update={"columns": [new if c.name == column.name else c for c in table.columns]}
                )
                columns[column.name.lower()] = (table_name, new)
                said = f"{column.name}: {rule}"
                if removed:
                    said += f" (removed {', '.join(describe_step(r) for r in removed)}" + (
                        ")" if merged else f"; to keep a step, write '{column.name}: add RULE')"
                    )
                understood.append(said)
            else:
                not_understood.append(
                    f"{line!r}: write 'COLUMN: rule' (e.g. '{plan.tables[0].columns[0].name}: "
                    "trim') or 'filter: condition'"
                )
        new_plan = plan.model_copy(update={"tables": [tables[t.name] for t in plan.tables]})
        new_plan = finalize(new_plan, schemas)
        reply = "; ".join(understood) if understood else "No change."
        if not_understood:
            reply += " Not understood: " + "; ".join(not_understood)
        return PlanResult(new_plan, reply, understood, not_understood)
