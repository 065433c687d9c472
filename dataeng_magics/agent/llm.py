"""The LLM planner: drafts and revises plans through langchain structured output.

The model answers with a ``PlanEdit`` (typed changes to a plan), never code. Every
answer is applied to a copy of the plan and validated exactly like any plan (the same
``check_plan`` and compiler, plus stricter checks on SQL the model wrote and a check that
the filters keep some sample rows). An answer that fails to parse or validate gets one
repair round carrying the validator's reasons; if that fails too, the plan is left as
it was and the user is told why. Token usage is taken from ``include_raw=True``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from dataeng_magics.agent.chat_models import make_model, model_label
from dataeng_magics.agent.offline import OfflinePlanner, with_lookup, with_read_schemas
from dataeng_magics.agent.prompts import (
    CheckChange,
    ColumnChange,
    FilterChange,
    Message,
    PlanEdit,
    Prompt,
    PromptOptions,
    draft_prompt,
    estimate_messages,
    estimate_tokens,
    repair_messages,
    revise_prompt,
)
from dataeng_magics.agent.protocol import (
    CallUsage,
    PlanningContext,
    PlanResult,
    Schemas,
    Usage,
)
from dataeng_magics.compile import compile_plan
from dataeng_magics.compile.lint import check_plan
from dataeng_magics.compile.safety import parse_safe_sql
from dataeng_magics.errors import DataEngMagicsError
from dataeng_magics.mapping.model import Mapping
from dataeng_magics.plan.checks import check_name, parse_check
from dataeng_magics.plan.model import (
    Default,
    FilterPlan,
    Plan,
    Sql,
    SqlCheck,
    Step,
    TablePlan,
    Unresolved,
)
from dataeng_magics.redact import redact

if TYPE_CHECKING:
    from dataeng_magics.config import Settings

MAX_SHOWN_PROBLEMS = 5


@dataclass
class _Outcome:
    plan: Plan | None
    edit: PlanEdit | None
    summary: list[str]
    problems: list[str]
    usage: Usage
    repaired: bool
    error: str = ""


class LLMPlanner:
    """A ``Planner`` backed by any langchain chat model that supports tool calling."""

    def __init__(
        self,
        model: Any,
        *,
        options: PromptOptions | None = None,
        name: str | None = None,
        secret_env: tuple[str, ...] = (),
    ) -> None:
        self.model = model
        self.model_name = model_label(model)
        self.name = name or f"llm:{self.model_name}"
        self.options = options or PromptOptions()
        self.calls = 0  # model calls made through this planner
        self._secret_env = secret_env
        self._runnable: Any = None

    @classmethod
    def from_settings(cls, settings: Settings, model: Any = None) -> LLMPlanner:
        """The planner the settings describe; ``model`` (a langchain chat model) wins."""
        options = PromptOptions(
            sample_rows=settings.llm_sample_rows,
            privacy=settings.llm_privacy,
            token_budget=settings.llm_token_budget,
        )
        chosen = model if model is not None else make_model(settings)
        return cls(
            chosen,
            options=options,
            name=None if model is not None else f"{settings.planner}:{model_label(chosen)}",
            secret_env=(settings.llm_api_key_env,) if settings.llm_api_key_env else (),
        )

    def __repr__(self) -> str:  # the model's own repr may show endpoints; keys are masked
        return f"LLMPlanner(name={self.name!r})"

    # -- the Planner protocol ----------------------------------------------------------

    def draft(
        self,
        client: str,
        mapping: Mapping,
        schemas: Schemas,
        notes: str = "",
        *,
        context: PlanningContext | None = None,
    ) -> PlanResult:
        """The rule-based draft, with what it could not resolve (and the notes) handed to
        the model. No unresolved rows and no notes: no call at all."""
        context = context or PlanningContext()
        base = OfflinePlanner().draft(client, mapping, schemas, notes).plan
        if not base.unresolved() and not notes.strip():
            return PlanResult(
                base,
                "Every rule is in the rule vocabulary, so the draft needed no model call.",
                usage=Usage(),
            )
        prompt = draft_prompt(base, mapping, schemas, notes, context, self.options)
        defaults = {(c.table, c.name): c.default for c in mapping.targets if c.default is not None}

        def validate(edit: PlanEdit) -> tuple[Plan, list[str], list[str]]:
            return apply_edit(
                base, edit, schemas, context.samples, drafting=True, defaults=defaults
            )

        outcome = self._ask(prompt, validate)
        left = len((outcome.plan or base).unresolved())
        status = f"{left} column(s) still unresolved." if left else "Every column is resolved."
        kept = f"the draft is the rule-based one ({len(base.unresolved())} column(s) unresolved)"
        return self._result(base, outcome, prompt, status, kept)

    def revise(
        self,
        plan: Plan,
        feedback: str,
        schemas: Schemas,
        *,
        context: PlanningContext | None = None,
    ) -> PlanResult:
        """A new plan from plain-English feedback; the old plan if the answer is refused."""
        context = context or PlanningContext()
        prompt = revise_prompt(plan, feedback[:4000], schemas, context, self.options)

        def validate(edit: PlanEdit) -> tuple[Plan, list[str], list[str]]:
            return apply_edit(plan, edit, schemas, context.samples, drafting=False)

        outcome = self._ask(prompt, validate)
        return self._result(plan, outcome, prompt, "", "the plan is unchanged")

    # -- calling the model -------------------------------------------------------------

    def _structured(self) -> Any:
        if self._runnable is None:
            try:
                self._runnable = self.model.with_structured_output(
                    PlanEdit, method="function_calling", include_raw=True
                )
            except TypeError:  # a model whose with_structured_output takes no method
                self._runnable = self.model.with_structured_output(PlanEdit, include_raw=True)
        return self._runnable

    def _call(self, messages: list[Message], usage: Usage) -> dict[str, Any]:
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        kinds = {"system": SystemMessage, "human": HumanMessage, "ai": AIMessage}
        started = time.perf_counter()
        self.calls += 1
        result: dict[str, Any] = self._structured().invoke(
            [kinds[role](content=text) for role, text in messages]
        )
        raw = result.get("raw")
        meta = getattr(raw, "usage_metadata", None) or {}
        served = (getattr(raw, "response_metadata", None) or {}).get("model_name")
        if meta.get("input_tokens") is not None:
            call = CallUsage(
                int(meta.get("input_tokens") or 0),
                int(meta.get("output_tokens") or 0),
                time.perf_counter() - started,
                served or self.model_name,
            )
        else:  # the server reported nothing: count it ourselves, and say so
            call = CallUsage(
                estimate_messages(messages),
                estimate_tokens(_answer_text(raw)),
                time.perf_counter() - started,
                served or self.model_name,
                estimated=True,
            )
        usage.add(call)
        return result

    def _ask(
        self, prompt: Prompt, validate: Callable[[PlanEdit], tuple[Plan, list[str], list[str]]]
    ) -> _Outcome:
        """At most two calls: the question, and one repair round if the answer fails."""
        usage = Usage()
        messages = prompt.messages
        problems: list[str] = []
        for attempt in range(2):
            try:
                result = self._call(messages, usage)
            except DataEngMagicsError:
                raise
            except Exception as exc:  # the SDK's own errors, after its bounded retries
                reason = redact(f"{type(exc).__name__}: {exc}", self._secret_env)
                return _Outcome(None, None, [], [], usage, attempt > 0, error=_one_line(reason))
            edit = result.get("parsed")
            if isinstance(edit, PlanEdit):
                plan, summary, problems = validate(edit)
                if not problems:
                    return _Outcome(plan, edit, summary, [], usage, attempt > 0)
            else:
                problems = [_parse_problem(result)]
            if attempt == 0:
                messages = repair_messages(prompt, _answer_text(result.get("raw")), problems)
        return _Outcome(None, None, [], problems, usage, True)

    def _result(
        self, before: Plan, outcome: _Outcome, prompt: Prompt, status: str, kept: str
    ) -> PlanResult:
        """What the chat shows: the explanation, what changed, and the tokens spent; or,
        when the answer was not used, why, and what plan stands (``kept``)."""
        usage_line = outcome.usage.to_text()
        facts = prompt.to_dict()
        if outcome.error:
            reply = f"The model could not be asked ({outcome.error}), so {kept}. {usage_line}"
            return PlanResult(
                before,
                reply,
                [],
                [outcome.error],
                usage=outcome.usage,
                refused=[outcome.error],
                prompt=facts,
            )
        if outcome.plan is None or outcome.edit is None:
            shown = outcome.problems[:MAX_SHOWN_PROBLEMS]
            more = len(outcome.problems) - len(shown)
            why = "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
            reply = (
                f"The model's answer was refused, even after one repair round, so {kept}. "
                f"Why: {why}. {usage_line}"
            )
            problems = [redact(p, self._secret_env) for p in outcome.problems]
            return PlanResult(
                before,
                _one_line(redact(reply, self._secret_env)),
                [],
                problems,
                usage=outcome.usage,
                refused=problems,
                repaired=True,
                prompt=facts,
            )
        explanation = _one_line(redact(outcome.edit.explanation, self._secret_env))[:600]
        changed = (
            "Changed: " + "; ".join(outcome.summary) + "."
            if outcome.summary
            else "No change to the plan."
        )
        parts = [explanation, changed]
        if status:
            parts.append(status)
        if outcome.repaired:
            parts.append("(The first answer failed validation; the repair round fixed it.)")
        if prompt.trimmed:
            parts.append(f"(Prompt: {prompt.trimmed[0]}.)")
        parts.append(usage_line)
        reply = " ".join(p.strip() for p in parts if p.strip())
        return PlanResult(
            outcome.plan,
            reply,
            list(outcome.summary),
            [],
            usage=outcome.usage,
            explanation=explanation,
            repaired=outcome.repaired,
            prompt=facts,
        )


# --- applying and validating an answer -----------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _answer_text(raw: Any) -> str:
    """The answer as the model gave it (tool arguments, else text), for the repair round."""
    calls = getattr(raw, "tool_calls", None) or []
    if calls:
        return json.dumps(calls[0].get("args", {}), ensure_ascii=False)[:20_000]
    content = getattr(raw, "content", "")
    return content if isinstance(content, str) else json.dumps(content)[:20_000]


def _parse_problem(result: dict[str, Any]) -> str:
    error = result.get("parsing_error")
    if error is None:
        text = _one_line(_answer_text(result.get("raw")))[:200]
        return f"the answer did not call PlanEdit (it said: {text!r})"
    if isinstance(error, ValidationError):
        return "the answer does not fit the PlanEdit schema: " + _errors(error)
    cause = getattr(error, "__cause__", None)
    if isinstance(cause, ValidationError):
        return "the answer does not fit the PlanEdit schema: " + _errors(cause)
    return "the answer could not be parsed: " + _one_line(str(error))[:300]


def _errors(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()[:8]
    )


def _find(names: list[str], wanted: str) -> str | None:
    """``wanted`` among ``names``: exact, else the one case-insensitive match."""
    if wanted in names:
        return wanted
    folded = [n for n in names if n.lower() == wanted.lower()]
    return folded[0] if len(folded) == 1 else None


def _model_sql(text: str) -> list[str]:
    """Stricter than the mapping's own rules: SQL the model wrote may only call functions
    Spark's parser knows (no catalog or made-up functions such as ``__import__``)."""
    from sqlglot import exp

    from dataeng_magics.errors import UnsafePlanError

    try:
        tree = parse_safe_sql(text)
    except UnsafePlanError as exc:
        return [exc.message]
    unknown = sorted({n.name for n in tree.walk() if isinstance(n, exp.Anonymous)})
    return [f"unknown function {name}() (use Spark SQL built-ins)" for name in unknown]


def apply_edit(
    plan: Plan,
    edit: PlanEdit,
    schemas: Schemas,
    samples: dict[str, Any] | None = None,
    *,
    drafting: bool,
    defaults: dict[tuple[str, str], str] | None = None,
) -> tuple[Plan, list[str], list[str]]:
    """Apply a model's answer to ``plan`` and check it: (new plan, what changed, problems).

    Problems are the validator's reasons in plain words; when there are any, the new plan
    must not be used. Names are matched exactly (or by unique case-insensitive match);
    nothing in the answer can add a table, a target column or a source.
    """
    problems: list[str] = []
    summary: list[str] = []
    tables = {t.name: t for t in plan.tables}
    seen: set[tuple[str, str]] = set()
    for change in edit.columns:
        problems.extend(
            _apply_column(tables, change, seen, summary, defaults if drafting else None)
        )
    for filters in edit.filters:
        problems.extend(_apply_filters(tables, filters, schemas, summary, drafting))
    for checks in edit.checks:
        problems.extend(_apply_checks(tables, checks, summary))
    if problems:
        return plan, summary, problems
    new = plan.model_copy(update={"tables": [tables[t.name] for t in plan.tables]})
    problems = [str(p) for p in check_plan(new, schemas)]
    if problems:
        return plan, summary, problems
    new = with_read_schemas(new, schemas)
    if not new.unresolved():
        try:
            compile_plan(new)
        except DataEngMagicsError as exc:
            return plan, summary, [exc.message]
    problems = _empty_filters(plan, new, samples or {})
    return (plan if problems else new), summary, problems


def _apply_column(
    tables: dict[str, TablePlan],
    change: ColumnChange,
    seen: set[tuple[str, str]],
    summary: list[str],
    defaults: dict[tuple[str, str], str] | None,
) -> list[str]:
    table_name = _find(list(tables), change.table)
    if table_name is None:
        return [f"there is no table {change.table!r} (tables: {', '.join(tables)})"]
    table = tables[table_name]
    names = [c.name for c in table.columns]
    name = _find(names, change.column)
    if name is None:
        return [
            f"{table_name} has no target column {change.column!r}; only the mapping's "
            "columns can be changed"
        ]
    if (table_name, name) in seen:
        return [f"{table_name}.{name} is changed twice"]
    seen.add((table_name, name))
    steps: list[Step] = []
    for index, spec in enumerate(change.steps, start=1):
        try:
            steps.append(spec.to_step())
        except ValidationError as exc:
            return [f"{table_name}.{name} step {index} ({spec.op}): {_errors(exc)}"]
        if isinstance(steps[-1], Sql):
            bad = _model_sql(steps[-1].expression)
            if bad:
                return [f"{table_name}.{name} sql {steps[-1].expression!r}: {bad[0]}"]
    default = (defaults or {}).get((table_name, name))
    if default is not None and not any(isinstance(s, Default | Unresolved) for s in steps):
        steps.append(Default(value=default))  # the mapping's default is not the model's call
    column = next(c for c in table.columns if c.name == name)
    update: dict[str, Any] = {"steps": steps}
    if change.source_column is not None:
        update["source_column"] = change.source_column
    new = column.model_copy(update=update)
    if new != column:
        summary.append(f"{table_name}.{name}")
    tables[table_name] = table.model_copy(
        update={"columns": [new if c.name == name else c for c in table.columns]}
    )
    return []


def _apply_filters(
    tables: dict[str, TablePlan],
    change: FilterChange,
    schemas: Schemas,
    summary: list[str],
    drafting: bool,
) -> list[str]:
    table_name = _find(list(tables), change.table)
    if table_name is None:
        return [f"there is no table {change.table!r} (tables: {', '.join(tables)})"]
    table = tables[table_name]
    filters = list(table.filters)
    problems: list[str] = []
    for condition in change.remove:
        if drafting:
            problems.append(
                f"filter {condition!r} comes from the mapping and cannot be removed while "
                "drafting (ask for it in the chat)"
            )
            continue
        match = [f for f in filters if " ".join(f.condition.split()) == " ".join(condition.split())]
        if not match:
            problems.append(f"{table_name} has no filter {condition!r} to remove")
            continue
        filters.remove(match[0])
        summary.append(f"removed filter on {table_name}: {condition}")
    for spec in change.add:
        bad = _model_sql(spec.condition)
        if bad:
            problems.append(f"filter {spec.condition!r}: {bad[0]}")
            continue
        filters.append(FilterPlan(condition=spec.condition, description=spec.description))
        summary.append(f"added filter on {table_name}: {spec.condition}")
    tables[table_name] = table.model_copy(update={"filters": filters})
    return problems


def _apply_checks(
    tables: dict[str, TablePlan], change: CheckChange, summary: list[str]
) -> list[str]:
    """Checks are phrases of the check vocabulary, parsed like a Checks sheet's."""
    table_name = _find(list(tables), change.table)
    if table_name is None:
        return [f"there is no table {change.table!r} (tables: {', '.join(tables)})"]
    table = tables[table_name]
    checks = list(table.checks)
    problems: list[str] = []
    for name in change.remove:
        match = [c for c in checks if check_name(c) == " ".join(name.split())]
        if not match:
            problems.append(f"{table_name} has no check {name!r} to remove")
            continue
        checks.remove(match[0])
        summary.append(f"removed check on {table_name}: {name}")
    for spec in change.add:
        try:
            check = with_lookup(parse_check(spec.check, spec.columns, spec.action), table.columns)
        except (ValueError, ValidationError) as exc:
            problems.append(f"check {spec.check!r}: {_one_line(str(exc))}")
            continue
        if isinstance(check, SqlCheck):
            bad = _model_sql(check.expression)
            if bad:
                problems.append(f"check {spec.check!r}: {bad[0]}")
                continue
        checks.append(check)
        summary.append(f"added check on {table_name}: {check_name(check)} ({check.action})")
    tables[table_name] = table.model_copy(update={"checks": checks})
    return problems


def _empty_filters(before: Plan, after: Plan, samples: dict[str, Any]) -> list[str]:
    """A table whose filters kept sample rows before and keep none now drops everything:
    almost certainly a wrong condition, so it is refused rather than approved by accident."""
    problems = []
    for table in after.tables:
        old = next((t for t in before.tables if t.name == table.name), None)
        if old is None or old.filters == table.filters or table.source not in samples:
            continue
        kept_now = _kept(table.filters, samples[table.source])
        kept_before = _kept(old.filters, samples[table.source])
        if kept_now == 0 and (kept_before is None or kept_before > 0):
            conditions = " AND ".join(f"({f.condition})" for f in table.filters)
            problems.append(
                f"the filters on {table.name} keep none of the sample rows ({conditions}); "
                "a filter that drops everything is almost certainly wrong"
            )
    return problems


def _kept(filters: list[FilterPlan], sample: Any) -> int | None:
    """How many sample rows pass ``filters`` (evaluated with sqlglot's Python executor);
    None when it cannot tell (no rows, or a function the executor lacks)."""
    from sqlglot import exp, parse_one
    from sqlglot.executor import execute

    from dataeng_magics.agent.prompts import _rows

    names, rows = _rows(sample, 1000)
    if not rows:
        return None
    if not filters:
        return len(rows)
    index = {n.lower(): i for i, n in enumerate(names)}

    def rename(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.name.lower() in index:
            return exp.column(f"c{index[node.name.lower()]}")
        return node

    try:
        condition = exp.and_(
            *(parse_one(f.condition, read="spark").transform(rename) for f in filters)
        )
        query = exp.select("*").from_("t").where(condition)
        table = [{f"c{i}": _plain(v) for i, v in enumerate(row)} for row in rows]
        return len(execute(query, tables={"t": table}).rows)
    except Exception:  # the executor lacks a function, or types do not compare: unknown
        return None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
