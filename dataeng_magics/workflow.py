"""One client's transformation from mapping to validated output.

``TransformSession`` is the whole workflow: load -> draft -> revise -> approve ->
run -> validate, with the store and the audit log beside it. The CLI, the magic and
the widgets only call it, so every path records the same things and honours the same
approvals.
"""

from __future__ import annotations

import difflib
import itertools
import shlex
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Mapping as MappingABC
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dataeng_magics.canonical import canonical_json, hashed_form, sha256_text
from dataeng_magics.compile.cell import (
    parse_parameters,
    render_parameters,
    run_parameters,
    split_cell,
)
from dataeng_magics.compile.codegen import compile_plan
from dataeng_magics.compile.lint import published_tables, refused_nulls, used_columns
from dataeng_magics.config import Mode, Settings, current_user, load_settings, resolve
from dataeng_magics.errors import (
    ApprovalRequired,
    DataEngMagicsError,
    DataEngMagicsWarning,
    ExecutionError,
    ModeError,
    PlanError,
    StoreError,
    ValidationFailed,
)
from dataeng_magics.mapping.model import Mapping, SourceSpec
from dataeng_magics.mapping.read import read_mapping
from dataeng_magics.plan.model import Plan
from dataeng_magics.plan.render import plan_diff, render_pseudocode
from dataeng_magics.redact import public_path, split_credential
from dataeng_magics.run.validate import (
    ValidationReport,
    control_columns,
    evaluate,
    parse_controls,
)
from dataeng_magics.state.audit import AuditEvent, AuditTrail
from dataeng_magics.state.backend import audit_of, open_store
from dataeng_magics.state.store import Entry, Outcome, Revoked, RunRecord, Store

if TYPE_CHECKING:
    from dataeng_magics.agent import Planner, PlanningContext, PlanResult
    from dataeng_magics.run.executors import Executor
    from dataeng_magics.run.executors.base import ProgressCallback
    from dataeng_magics.sources.sampling import Sample

#: What a materialised cell whose approval is gone (revoked, or new inputs) says to do.
RERUN_TRANSFORM = "Re-run the %%transform cell above to review the plan and approve it again."


class TransformRequest(BaseModel):
    """Everything the user asked for, the same from the CLI, the magic or Python."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client: str = Field(min_length=1)
    mapping: Path
    sources: dict[str, str] = {}
    output_dir: str | None = None
    output_format: str | None = None
    platform: str | None = None
    notes: str = ""


@dataclass
class RunSummary:
    """What a run did, for people (``to_text``) and for records (``to_dict``)."""

    client: str
    key: str
    code_sha256: str
    platform: str
    output_dir: str
    output_format: str
    seconds: float
    report: ValidationReport
    outcome: Outcome
    started_at: datetime
    details: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)  # run/evidence.py's record
    closing: AuditEvent | None = None  # the run_end audit record holding its sha256

    @property
    def rows_in(self) -> int:
        return sum(t.rows_read for t in self.report.tables)

    @property
    def rows_out(self) -> int:
        return sum(t.rows_written for t in self.report.tables)

    def to_dict(self) -> dict[str, Any]:
        passed, failed = self.report.counts()
        return {
            "run_id": self.run_id,
            "client": self.client,
            "key": self.key,
            "code_sha256": self.code_sha256,
            "platform": self.platform,
            "output_dir": self.output_dir,
            "output_format": self.output_format,
            "seconds": round(self.seconds, 3),
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "checks_passed": passed,
            "checks_failed": failed,
            "outcome": self.outcome,
            "validation": self.report.to_dict(),
        }

    def to_text(self) -> str:
        passed, failed = self.report.counts()
        base = self.output_dir.rstrip("/")
        folders = [f"{base}/{t.table}/" for t in self.report.tables] or [f"{base}/"]
        head = [
            f"client {self.client}  key {self.key[:16]}  code {self.code_sha256[:16]}",
            f"{self.outcome.upper()} on {self.platform} in {self.seconds:.1f}s: "
            f"{self.rows_in} rows read, {self.rows_out} written, "
            f"{passed} checks passed, {failed} failed",
            f"output ({self.output_format}): {', '.join(folders)}",
        ]
        if self.run_id:
            head.append(f"evidence: {base}/_evidence/{self.run_id}.html (run {self.run_id})")
        return "\n".join([*head, self.report.to_text()])


@dataclass(frozen=True)
class Approval:
    """What ``approve`` did: the approved entry, and whether this call approved it."""

    entry: Entry
    reviewer: str  # who asked to approve
    recorded: bool  # False: it was approved already; nothing changed, nothing audited

    def to_text(self) -> str:
        entry = self.entry
        if self.recorded:
            return f"approved key {entry.key} by {entry.reviewer}; code sha256 {entry.code_sha256}"
        text = (
            f"already approved by {entry.reviewer} at {entry.approved_at:%Y-%m-%d %H:%M} UTC; "
            "nothing changed"
        )
        if self.reviewer != entry.reviewer:
            text += f" (an approval names one reviewer; {self.reviewer} was not recorded)"
        return text


#: Failing values a preview shows per check.
FAILING_VALUES = 10


@dataclass(frozen=True)
class FailingValues:
    """A check the preview failed: up to ``FAILING_VALUES`` source values beside what they
    became (``rows``: their positions in the preview's output, to highlight)."""

    table: str
    column: str
    check: str  # the check's name or kind
    lines: tuple[str, ...]  # "SETTLE_DATE '25.06.2025' -> null (parse date MM/DD/YYYY)"
    rows: tuple[int, ...] = ()


@dataclass
class Preview:
    """The first rows of each target table computed from the samples, and their checks;
    ``failing``: each failed check's values, from all the sample rows."""

    tables: dict[str, Any]  # table -> pandas DataFrame
    report: ValidationReport
    seconds: float
    failing: list[FailingValues] = field(default_factory=list)


def failing_values(preview: Preview, plan: Plan, samples: dict[str, Sample]) -> list[FailingValues]:
    """Per failed check, the source values that failed it beside their results: a value
    that became null for a conversion or a required column (rows traced by
    ``before_after``), else the examples the check itself kept (as the evidence has)."""
    traced = before_after(preview, plan, samples)
    found = []
    for check in (c for t in preview.report.tables for c in t.checks if not c.passed):
        label = check.name or check.kind
        lines: list[str] = []
        rows: list[int] = []
        table = traced.get(check.table)
        column = (
            next((c for c in table[1] if c.column == check.column), None)
            if (check.kind in ("conversion", "required") and isinstance(table, tuple))
            else None
        )
        if column is not None:
            for row, (before, after) in enumerate(column.pairs):
                present = before not in ("null", "''", "")
                if _is_null(after) and (present or check.kind == "required"):
                    rows.append(row)
                    lines.append(f"{check.column} {before or 'null'} → null ({column.rule})")
                if len(lines) == FAILING_VALUES:
                    break
        elif check.examples:
            lines = [f"{check.column} {e}" for e in check.examples[:FAILING_VALUES]]
        if lines:
            found.append(FailingValues(check.table, check.column, label, tuple(lines), tuple(rows)))
    return found


def _is_null(value: Any) -> bool:
    import pandas as pd

    return value is None or bool(pd.api.types.is_scalar(value) and pd.isna(value))


@dataclass(frozen=True)
class BeforeAfter:
    """One target column over the preview's rows: each source value beside its result."""

    column: str
    rule: str  # the plan's steps, as the pseudocode says them
    source: str  # the source column(s) read ("" for a constant)
    pairs: list[tuple[str, Any]]  # (source value as read, result)


def before_after(preview: Preview, plan: Plan, samples: dict[str, Sample]) -> dict[str, Any]:
    """Per target table, how preview rows were matched to sample rows and each column's
    source value -> result, so a reviewer reads a transformation without reading code.

    Rows match by a key the plan copies unchanged but for trimming (TRADE_ID <- "Trade
    ID"), else by position where no filter can drop rows; a table with neither says so.
    """
    from dataeng_magics.plan.model import Concat, Lookup, Trim
    from dataeng_magics.plan.render import column_steps

    found: dict[str, Any] = {}
    for table in plan.tables:
        frame = preview.tables.get(table.name)
        source = samples[table.source].frame
        if frame is None:
            continue
        matched, how = None, ""
        for column in table.columns:
            src = column.source_column
            if (src in source.columns and column.name in frame.columns
                    and all(isinstance(s, Trim) for s in column.steps)):  # fmt: skip
                keys = source[src].astype("string").str.strip()
                if keys.notna().all() and keys.is_unique:
                    index = {k: i for i, k in enumerate(keys)}
                    got = frame[column.name].astype("string").str.strip()
                    matched = [index.get(k) for k in got]
                    how = f"rows matched by {column.name} = {src!r}"
                    break
        if matched is None and not table.filters and len(frame) <= len(source):
            matched, how = list(range(len(frame))), "rows in the sample's order"
        if matched is None:
            found[table.name] = "no column identifies the rows, and filters may drop some"
            continue
        columns = []
        for column in table.columns:
            names = [column.source_column or ""]
            for step in column.steps:  # what else a step reads from the driving source
                names = step.columns if isinstance(step, Concat) else names
                names = [step.key] if isinstance(step, Lookup) else names
            names = [n for n in names if n in source.columns]
            pairs = []
            for row, i in enumerate(matched):
                values = [] if i is None else [_shown(source[n].iloc[i]) for n in names]
                pairs.append((" + ".join(values), frame[column.name].iloc[row]))
            columns.append(BeforeAfter(column.name, column_steps(column), ", ".join(names), pairs))
        found[table.name] = (how, columns)
    return found


def _shown(value: Any) -> str:
    """A source value as read: text quoted with its edge spaces visible, null as null."""
    import pandas as pd

    from dataeng_magics.sources.profile import shown

    if pd.api.types.is_scalar(value) and pd.isna(value):
        return "null"
    return shown(value) if isinstance(value, str) else str(value)


def preview_engine_ready() -> bool:
    """Whether local Spark is up already, so a preview needs no start-up (imports nothing)."""
    import sys

    context = sys.modules.get("pyspark.context")
    return context is not None and context.SparkContext._active_spark_context is not None


def start_preview_engine() -> None:
    """Start local Spark for previews (a panel does it in the background while the
    reviewer reads, so the first preview does not wait for the JVM)."""
    from dataeng_magics.run.executors.local import spark_session

    spark_session()


def write_samples(samples: dict[str, Sample], mapping: Mapping, folder: Path) -> dict[str, str]:
    """Write each sample where the compiled code can read it, in the source's own format."""
    from dataeng_magics.sources.readers import reader_for

    paths: dict[str, str] = {}
    for name, smp in samples.items():
        spec = mapping.sources[name]
        path = reader_for(spec).write_sample(smp.frame, spec, folder / f"source_{len(paths)}")
        paths[name] = str(path)
    return paths


#: The canonical form of the key's content, recorded with each approval in the audit
#: log (0.1's approvals have none: version 1). Version 1 hashes the mapping in its
#: version 1 form (``canonical.hashed_form``), so a field added to the mapping model
#: changes no existing key. A later version must add ``"key_version": N`` to the content
#: (so its keys never equal a version 1 key) and keep finding entries approved under the
#: versions before it.
KEY_VERSION = 1


def cache_key(client: str, mapping: Mapping, used: dict[str, dict[str, str]]) -> str:
    """sha256 of client + parsed mapping + names and types of the source columns used.

    The parsed content (not the file) counts, so re-saving the workbook changes
    nothing; unused source columns do not count, so harmless drift is tolerated.
    """
    content = {"client": client, "mapping": hashed_form(mapping), "columns": used}
    return sha256_text(canonical_json(content))


def no_credential(output_dir: str) -> None:
    """An output folder is never given with a credential: it would be written into the
    cell, the run's code and its records. Remote output authenticates through a storage
    connection (its secret in an environment variable or Key Vault)."""
    if split_credential(output_dir)[1]:
        raise PlanError(
            f"the output folder {public_path(output_dir)} carries a credential (a SAS token "
            "or key in its query), which would be written into the cell and the records",
            hint="Name it as abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH with a storage "
            'connection for the account (auth = "sas", its SAS in an environment variable)',
        )


def _with_warnings(pseudocode: str, warnings: tuple[str, ...]) -> str:
    """The reviewer sees what the mapping reader left out, under the client line."""
    first, _, rest = pseudocode.partition("\n")
    lines = [first, *(f"# warning: {w}" for w in warnings)]
    return "\n".join(lines) + ("\n" + rest if rest else "")


def _now() -> datetime:
    return datetime.now(UTC)


#: What the chat history says when a forced draft starts again from the workbook.
RESTARTED = "Started again from the workbook: the revisions above no longer apply."
#: Conversation turns that mark what happened to the plan (not chat messages).
_MARKS = ("reopened", "restarted", "approved")
#: The conversation turn recording a preview that failed checks: approving that plan then
#: needs a reason ("approve anyway").
PREVIEW_FAILED = "preview_failed"


def _turn(kind: str, text: str, **facts: Any) -> dict[str, Any]:
    """A system turn in the conversation marking what happened to the plan."""
    return {"role": "system", "kind": kind, "text": text, "time": _now().isoformat(), **facts}


def audit_entry(audit: AuditTrail, event: str, entry: Entry, actor: str | None,
                **details: Any) -> AuditEvent:  # fmt: skip
    """One audit record about an entry, with its client, key and hashes."""
    return audit.append(
        event, actor=actor, client=entry.client, key=entry.key, plan_sha256=entry.plan_sha256,
        code_sha256=entry.code_sha256 or None, details=details,
    )  # fmt: skip


def _audit_revocation(audit: AuditTrail, entry: Entry, actor: str | None, reason: str) -> None:
    """The one "revocation" record, whether a person revoked the plan or a revise or a
    forced re-draft replaced an approved one (logs before this named it "invalidation")."""
    approved_by = entry.reviewer if entry.approved_at is not None else None
    audit_entry(audit, "revocation", entry, actor, reason=reason, approved_by=approved_by)


def revoke(settings: Settings, key: str, actor: str | None = None, reason: str = "") -> Entry:
    """Revoke a cached plan (by key or unique prefix) so replays need a new approval.
    The reason is required: it is what the audit log and every front end show later."""
    if not reason.strip():
        raise DataEngMagicsError(
            "a revocation needs a reason", hint="Say why, e.g. 'mapping v4 arrived'.", key=key
        )
    actor = actor or current_user()
    store = open_store(settings)
    entry = store.revoke(store.resolve(key), actor, reason)
    _audit_revocation(audit_of(store), entry, actor, reason)
    return entry


def approval_blocker(plan: Plan) -> PlanError | None:
    """Why ``plan`` cannot be approved yet (its first unresolved step), or None: what
    ``approve`` raises and what a front end shows before anyone clicks Approve."""
    blocking = plan.unresolved()
    if not blocking:
        return None
    table, column, step = blocking[0]
    more = f" (and {len(blocking) - 1} more)" if len(blocking) > 1 else ""
    return PlanError(
        f"cannot approve: {table}.{column.name} has an unresolved rule {step.text!r} "
        f"({step.reason}){more}",
        hint="Revise it (dataeng-magics revise / the chat), then approve.",
        table=table,
        target_column=column.name,
    )


def audit_events(
    settings: Settings, *, client: str | None = None, key: str | None = None
) -> list[AuditEvent]:
    """The audit records for a client (any case) and a key or key prefix, as ``cache
    show`` takes it (8+ characters); a full key no longer in the store still matches."""
    store = open_store(settings)
    if key is not None:
        try:
            key = store.resolve(key)
        except StoreError:
            if len(key) != 64:
                raise
    return list(audit_of(store).events(client=client, key=key))


class RunLease:
    """The store's lease on a run in progress, renewed by a background thread while the
    run goes on, so other machines see it running and, if this process dies or is lost,
    interrupted (recording the run ends the lease; leaving early expires it at once)."""

    SECONDS = 120.0  # a lost run shows as interrupted after at most this long

    def __init__(self, store: Store, run_id: str, key: str, actor: str) -> None:
        self.store, self.run_id, self.key, self.actor = store, run_id, key, actor
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{run_id}", daemon=True)

    def _renew(self) -> None:
        while not self._stop.wait(self.SECONDS / 4):
            try:
                self.store.renew_lease(self.run_id, self.SECONDS)
            except DataEngMagicsError:  # the database is away: try again next time
                continue

    def __enter__(self) -> RunLease:
        self.store.start_lease(self.run_id, self.key, self.actor, self.SECONDS)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if kind is not None:  # a recorded failure has no lease left; anything else is
            with suppress(DataEngMagicsError):  # an interruption, shown as one at once
                self.store.renew_lease(self.run_id, 0)


def find_evidence(settings: Settings, target: str) -> tuple[dict[str, Any], AuditEvent | None]:
    """A run's evidence by its run id (or 8+ characters of it), or a key's (or key
    prefix's) latest run's; with the audit record that closes it, if the chain has it."""
    from dataeng_magics.run import evidence as ev

    def sealed(records: list[RunRecord]) -> list[dict[str, Any]]:
        return [r.details["evidence"] for r in records if r.details.get("evidence")]

    store = open_store(settings)
    matches = sealed(store.runs_by_id(target)) if len(target) >= 8 else []
    if not matches:
        try:
            key = store.resolve(target)
        except StoreError:
            raise StoreError(
                f"no run or key {target!r} with an evidence record",
                hint="Give a run id from `dataeng-magics audit show` or a key from "
                "`dataeng-magics cache list` (8+ characters).",
            ) from None
        matches = sealed(store.runs(key))[-1:]
        if not matches:
            raise StoreError(f"key {key[:16]} has no run with an evidence record yet", key=key,
                             hint="Run it first (dataeng-magics run).")  # fmt: skip
    if len(matches) > 1:
        raise StoreError(f"run id prefix {target!r} matches several runs; give more of it")
    return matches[0], ev.closing_record(audit_of(store), matches[0])


def session_for_key(
    settings: Settings, key: str, sources: dict[str, str] | None = None
) -> TransformSession:
    """A replay session for a stored key (or 8+ character prefix): its client and mapping
    workbook as drafted, ``sources`` read instead of the workbook's paths. The inputs
    must still give that key."""
    store = open_store(settings)
    entry = store.get(store.resolve(key))
    assert entry is not None
    request = TransformRequest(client=entry.client, mapping=Path(entry.mapping_file),
                               sources=sources or {})  # fmt: skip
    session = TransformSession(request, settings, mode="replay", store=store)
    if session.key != entry.key:
        raise ApprovalRequired(
            f"the inputs no longer match key {entry.key[:16]} (they give {session.key[:16]}): "
            "the mapping or a used source column changed",
            hint="Pass the sources it was approved for (--source NAME=PATH), or approve anew.",
            client=entry.client, key=entry.key,
        )  # fmt: skip
    return session


class TransformSession:
    """The workflow for one request. Cheap to create; loads inputs on first use.

    ``mode`` says what the caller is doing. A review (the notebook's panel, the CLI's
    draft, revise, approve, reject) is ``interactive``: it may ask a planner. A replay
    (the CLI's run and replay, ``%%transform --replay``) only runs the approved plan: it
    never builds a planner, refuses to draft, revise, approve or reject, and a run whose
    output fails its checks raises ``ValidationFailed``. The ``mode`` setting
    (``DATAENG_MAGICS_MODE=replay``, set by ``dataeng-magics replay`` for its kernels)
    makes every session a replay.
    """

    def __init__(
        self,
        request: TransformRequest,
        settings: Settings | None = None,
        *,
        mode: Mode = "interactive",
        planner: Planner | None = None,
        store: Store | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.request = request
        self.settings = resolve(
            settings or load_settings(),
            platform=request.platform,
            output_format=request.output_format,
        )
        self.mode: Mode = "replay" if "replay" in (mode, self.settings.mode) else "interactive"
        self.store = store or open_store(self.settings)
        self.audit = audit or audit_of(self.store)
        self._planner = planner

    def _interactive(self, action: str) -> None:
        """Refuse a review step in a replay, before anything is read or asked."""
        if self.mode == "replay":
            raise ModeError(
                f"cannot {action} in replay mode: a replay runs the approved plan for "
                f"client {self.request.client!r} and never plans, reviews or approves",
                hint="Review interactively (%%transform without --replay, or dataeng-magics "
                "draft/revise/approve), with DATAENG_MAGICS_MODE unset.",
                client=self.request.client,
            )

    # -- inputs ---------------------------------------------------------------------

    @cached_property
    def mapping(self) -> Mapping:
        from dataeng_magics.sources.credentials import from_connection

        mapping = read_mapping(
            self.request.mapping,
            self.request.sources,
            ignore_headers=self.settings.ignore_headers,
            read_hidden_sheets=self.settings.read_hidden_sheets,
        )
        # An https Blob URL given without its SAS: a SAS storage connection's, if any.
        sources = {
            name: spec.model_copy(update={"credential": sas})
            for name, spec in mapping.sources.items()
            if not spec.credential and (sas := from_connection(spec.path, self.settings.storage))
        }
        return mapping.model_copy(update={"sources": {**mapping.sources, **sources}})

    @cached_property
    def samples(self) -> dict[str, Sample]:
        from dataeng_magics.connections import storage_options
        from dataeng_magics.sources.network import is_remote, with_timeouts, within_deadline
        from dataeng_magics.sources.sampling import sample

        rows, seconds = self.settings.sample_rows, self.settings.network_timeout_seconds

        def read(spec: SourceSpec) -> Sample:
            options = storage_options(spec.path, self.settings.storage)
            if not is_remote(spec.path):
                return sample(spec, rows, options)
            options = with_timeouts(spec.path, options, seconds)
            return within_deadline(spec.path, seconds, lambda: sample(spec, rows, options))

        return {name: read(spec) for name, spec in self.mapping.sources.items()}

    @cached_property
    def schemas(self) -> dict[str, dict[str, str]]:
        return {name: dict(s.schema) for name, s in self.samples.items()}

    @cached_property
    def baseline(self) -> Plan:
        """The rule-based reading of the mapping: what the key's used columns come from."""
        from dataeng_magics.agent import OfflinePlanner

        return OfflinePlanner().draft(self.request.client, self.mapping, self.schemas).plan

    @cached_property
    def key(self) -> str:
        used = used_columns(self.baseline, self.schemas)
        columns = {
            src: {c: self.schemas[src].get(c, "?") for c in cols}
            for src, cols in used.items()
            if cols
        }
        return cache_key(self.request.client, self.mapping, columns)

    @property
    def planner(self) -> Planner:
        """The planner the settings name (offline by default); built on first use, so a
        replay, which never plans, never builds a model."""
        self._interactive("ask a planner")
        if self._planner is None:
            from dataeng_magics.agent import get_planner

            self._planner = get_planner(self.settings)
        return self._planner

    def _context(self, entry: Entry | None = None) -> PlanningContext:
        """What the planner may use beyond the plan: the samples and, for a revision of
        ``entry``, the chat so far and the last run's failed checks."""
        from dataeng_magics.agent import PlanningContext

        return PlanningContext(
            samples={name: smp.frame for name, smp in self.samples.items()},
            conversation=list(entry.conversation) if entry else [],
            failures=self.last_failures(entry.key) if entry else [],
        )

    def last_failures(self, key: str) -> list[str]:
        """The last run's failed checks (or its error), in words, for the planner."""
        runs = self.store.runs(key)
        if not runs:
            return []
        last = runs[-1]
        if last.outcome == "failed":
            return [f"the last run failed: {last.details.get('error', 'unknown error')}"]
        if last.details.get("evidence"):  # with example values
            from dataeng_magics.run.evidence import failures_in_words

            return failures_in_words(last.details["evidence"])
        return [
            f"{t['table']}.{c['column']} [{c['kind']}, {c['severity']}]: {c['failed']} row(s)"
            for t in last.details.get("validation", {}).get("tables", [])
            for c in t.get("checks", [])
            if c.get("failed")
        ]

    def date_warnings(self, before: Plan, after: Plan) -> list[str]:
        """Each date pattern ``after`` sets anew, checked against the sample in Python
        (no Spark): where most values do not parse, a warning naming the pattern that fits."""
        from dataeng_magics.plan.dates import best_pattern, parses
        from dataeng_magics.plan.model import ParseDate, Trim

        old = {(t.name, c.name): c.steps for t in before.tables for c in t.columns}
        warnings = []
        for table in after.tables:
            frame = self.samples[table.source].frame
            for column in table.columns:
                lead = list(itertools.takewhile(lambda s: isinstance(s, Trim), column.steps))
                step = column.steps[len(lead)] if len(lead) < len(column.steps) else None
                was = old.get((table.name, column.name), [])
                if not isinstance(step, ParseDate) or step in was:
                    continue
                if column.source_column not in frame.columns:
                    continue
                values = [str(v).strip() for v in frame[column.source_column].dropna()]
                values = [v for v in values if v]
                failed = len(values) - parses(values, step.pattern)
                if not values or failed * 2 <= len(values):
                    continue
                example = next(v for v in values if parses([v], step.pattern) == 0)
                warning = (
                    f"Warning: {failed} of {len(values)} sample values of {column.name} do not "
                    f"parse as {step.pattern} (e.g. {example!r}) and would become null"
                )
                best = best_pattern(values)
                if best is not None and best[1] > len(values) - failed:
                    warning += f"; {best[0]} fits {best[1]} of {len(values)}"
                warnings.append(warning + ".")
        return warnings

    def _client_tokens(self, client: str) -> str:
        spent = [(e.tokens_in, e.tokens_out) for e in self.store.list(client)]
        return (
            f" Client {client} so far: {sum(i for i, _ in spent):,} in / "
            f"{sum(o for _, o in spent):,} out."
        )

    def _record_usage(self, key: str, result: PlanResult) -> dict[str, Any]:
        """Tokens a model's answer cost, added to the store; the facts for the audit log
        (none when no model was involved)."""
        usage = result.usage
        if usage is None:
            return {}
        if usage.calls:
            self.store.add_tokens(key, usage.input_tokens, usage.output_tokens)
        return {
            **usage.to_dict(),
            "repaired": result.repaired,
            "refused": [r[:300] for r in result.refused][:10],
            **result.prompt,
        }

    # -- state ----------------------------------------------------------------------

    def entry(self) -> Entry | None:
        return self.store.get(self.key)

    def approved_entry(self) -> Entry | None:
        """The approved entry for these inputs, if it is current and untampered."""
        entry = self.entry()
        if entry is None or entry.status != "approved":
            return None
        if entry.expired(self.settings.ttl_days):
            return None
        if sha256_text(entry.code) != entry.code_sha256:
            raise StoreError(
                f"the stored code for key {self.key[:16]} does not match its approval hash",
                hint="The store was edited; run `dataeng-magics audit verify` and re-approve.",
                key=self.key,
            )
        return entry

    def require_approved(self, hint: str | None = None) -> Entry:
        """The approved entry, or ``ApprovalRequired`` (``hint``: what to do, where the
        caller knows better than the CLI's default)."""
        entry = self.approved_entry()
        if entry is None:
            current = self.entry()
            why = f" (the entry is {current.status})" if current else ""
            if current and current.status == "approved":
                why = " (the approval has expired)"
            elif current and current.status == "revoked":
                why = f" (the entry is revoked by {current.revoked_by}: {current.reason})"
            raise ApprovalRequired(
                f"approval required: no approved plan for client {self.request.client!r}, "
                f"key {self.key[:16]}{why}; nothing ran",
                hint=hint
                or "Draft and approve it: dataeng-magics draft ... then approve --reviewer NAME.",
                client=self.request.client,
                key=self.key,
            )
        return entry

    def plan_of(self, entry: Entry) -> Plan:
        return Plan.model_validate_json(entry.plan_json)

    def _entry_for(self, plan: Plan) -> Entry:
        code = "" if plan.unresolved() else compile_plan(plan)
        now = _now()
        return Entry(
            key=self.key,
            client=self.request.client,
            mapping_file=str(self.request.mapping),
            status="draft",
            plan_json=plan.model_dump_json(),
            pseudocode=_with_warnings(render_pseudocode(plan), self.mapping.warnings),
            code=code,
            plan_sha256=plan.sha256(),
            code_sha256=sha256_text(code) if code else "",
            created_at=now,
            updated_at=now,
        )

    # -- steps ----------------------------------------------------------------------

    def draft(self, *, force: bool = False, actor: str | None = None) -> Entry:
        """A new draft, unless one already exists (``force`` replaces it; an approval it
        replaces is revoked, and audited as a revise would)."""
        self._interactive("draft")
        existing = self.entry()
        if existing is not None and not force and existing.status in ("draft", "approved"):
            return existing
        if existing is not None and not force and existing.status == "revoked":
            return self._reopen(existing, actor)
        if existing is not None and existing.status == "approved":
            _audit_revocation(self.audit, existing, actor, "the plan was re-drafted")
        from dataeng_magics.sources.platforms import check_platform

        check_platform(self.mapping, self.settings.platform, self.settings)
        planner = self.planner
        result = planner.draft(self.request.client, self.mapping, self.schemas,
                               self.request.notes, context=self._context())  # fmt: skip
        plan = result.plan
        entry = self.store.put(self._entry_for(plan))
        if existing is not None and existing.conversation:  # kept, marked as no longer applying
            entry = self.store.add_conversation(entry.key, [_turn("restarted", RESTARTED)])
        usage = self._record_usage(entry.key, result)
        if result.reply:  # the planner's account of the draft (the LLM planner's)
            text = result.reply + (self._client_tokens(entry.client) if usage.get("calls") else "")
            turn = {"role": "planner", "text": text, "planner": planner.name,
                    "usage": usage, "time": _now().isoformat()}  # fmt: skip
            entry = self.store.add_conversation(entry.key, [turn])
        audit_entry(
            self.audit, "draft", entry, actor, planner=planner.name,
            unresolved=len(plan.unresolved()), mapping=public_path(str(self.request.mapping)),
            replaced=existing.status if existing else None, **usage,
        )  # fmt: skip
        return entry

    def _reopen(self, revoked: Entry, actor: str | None) -> Entry:
        """The revoked plan, revisions and chat kept, as a draft to review again: a
        revocation never silently sends a reviewer back to the workbook's draft."""
        entry = self.store.put(self._entry_for(self.plan_of(revoked)))
        by, reason = revoked.revoked_by or "someone", revoked.reason or "no reason given"
        turn = _turn(
            "reopened",
            f"Revoked by {by} at {revoked.updated_at:%Y-%m-%d %H:%M} UTC: {reason}. The plan "
            "is reopened as a draft with its revisions; approve it again, or start again "
            "from the workbook.",
            revoked_by=by, revoked_at=revoked.updated_at.isoformat(), reason=reason,
        )  # fmt: skip
        entry = self.store.add_conversation(entry.key, [turn])
        audit_entry(self.audit, "draft", entry, actor, reopened=True, unresolved=len(
            self.plan_of(entry).unresolved()))  # fmt: skip
        return entry

    @staticmethod
    def reopened(entry: Entry) -> dict[str, Any] | None:
        """The revocation a draft was reopened after (by, at, reason), while it is the
        latest thing that happened to the plan: what the review panel's banner shows."""
        if entry.status != "draft":
            return None
        marks = [t for t in entry.conversation if t.get("kind") in _MARKS]
        return marks[-1] if marks and marks[-1]["kind"] == "reopened" else None

    def current_draft(self) -> Entry:
        entry = self.entry()
        if entry is None:
            raise StoreError(
                f"no draft for client {self.request.client!r}, key {self.key[:16]}",
                hint="Run `dataeng-magics draft` first.",
            )
        return entry

    def revise(self, feedback: str, *, actor: str | None = None) -> tuple[Entry, PlanResult]:
        """Apply chat feedback to the current draft; the conversation is kept with it.
        A change to an approved plan revokes the approval: ``result.revoked`` says whose."""
        self._interactive("revise")
        entry = self.current_draft()
        before = self.plan_of(entry)
        revision = self.planner.revise(before, feedback, self.schemas, context=self._context(entry))
        changes = plan_diff(before, revision.plan)
        warnings = self.date_warnings(before, revision.plan)
        if warnings:
            revision = replace(revision, reply=" ".join([revision.reply, *warnings]))
        usage = self._record_usage(entry.key, revision)
        if usage.get("calls"):
            revision = replace(revision, reply=revision.reply + self._client_tokens(entry.client))
        turns: list[dict[str, Any]] = [
            {"role": "user", "text": feedback, "time": _now().isoformat()},
            {
                "role": "planner",
                "text": revision.reply,
                "changes": changes,
                "planner": self.planner.name,
                "time": _now().isoformat(),
                **({"usage": usage} if usage else {}),
            },
        ]
        if changes:
            if entry.status == "approved":
                revoked = Revoked(entry.reviewer or "", "the plan changed")
                revision = replace(revision, revoked=revoked)
                _audit_revocation(self.audit, entry, actor, revoked.reason)
            self.store.put(self._entry_for(revision.plan))
        entry = self.store.add_conversation(entry.key, turns)
        audit_entry(
            self.audit, "revision", entry, actor, planner=self.planner.name,
            changes=len(changes), not_understood=len(revision.not_understood), **usage,
        )  # fmt: skip
        return entry, revision

    @staticmethod
    def failed_preview(entry: Entry) -> list[str]:
        """The failed checks of the last preview of ``entry``'s plan, in words ([] when it
        passed or was not previewed): approving it then needs a reason."""
        for turn in reversed(entry.conversation):
            if turn.get("kind") == PREVIEW_FAILED and turn.get("plan_sha256") == entry.plan_sha256:
                return [str(f) for f in turn.get("failures", [])]
        return []

    def _record_preview(self, plan: Plan, report: ValidationReport) -> None:
        """A preview of the current draft that failed checks, kept with the entry (once per
        plan), so ``approve`` asks for a reason, here, in another kernel or the CLI."""
        entry = self.entry()
        if report.passed or entry is None or entry.plan_sha256 != plan.sha256():
            return
        if entry.status != "draft" or self.failed_preview(entry):
            return
        failures = [f"{c.table}.{c.column or '*'} [{c.kind}]: {c.message}" for c in report.failures]
        text = f"The preview failed checks: {'; '.join(failures)}"
        turn = _turn(PREVIEW_FAILED, text, plan_sha256=entry.plan_sha256, failures=failures)
        self.store.add_conversation(entry.key, [turn])

    def approve(self, reviewer: str, *, despite: str | None = None) -> Approval:
        """Record an explicit approval; refuses plans with unresolved steps, and a plan whose
        last preview failed checks unless ``despite`` says why ("approve anyway"; the
        reason and the failures go into the audit log). Approving an approved plan
        changes and records nothing, whoever asks (``recorded`` is False)."""
        self._interactive("approve")
        entry = self.current_draft()
        if entry.status == "approved":
            return Approval(entry, reviewer, recorded=False)
        plan = self.plan_of(entry)
        blocker = approval_blocker(plan)
        if blocker is not None:
            raise blocker
        failed = self.failed_preview(entry)
        despite = (despite or "").strip() or None
        if failed and despite is None:
            raise ValidationFailed(
                f"cannot approve: the preview failed {len(failed)} check(s) (first: "
                f"{failed[0]}); fix the plan, or approve anyway with a reason",
                hint="Revise the plan (chat / dataeng-magics revise), or approve with "
                "--anyway REASON (the reason is recorded in the audit log).",
                key=entry.key,
            )
        code = compile_plan(plan)  # the code approved is the code compiled from this plan
        if code != entry.code:
            raise StoreError(
                "the stored code does not match its plan",
                key=entry.key,
                hint="Re-draft with --force.",
            )
        entry = self.store.approve(entry.key, reviewer, sha256_text(code))
        anyway = {"despite": despite, "failed_checks": failed} if failed else {}
        text = f"Approved by {reviewer}" + (
            f" despite {len(failed)} failing check(s): {despite}." if failed else "."
        )
        entry = self.store.add_conversation(entry.key, [_turn("approved", text, **anyway)])
        audit_entry(self.audit, "approval", entry, reviewer, reviewer=reviewer,
                    key_version=KEY_VERSION, **anyway)  # fmt: skip
        return Approval(entry, reviewer, recorded=True)

    def reject(self, reviewer: str, reason: str) -> Entry:
        self._interactive("reject")
        entry = self.store.reject(self.current_draft().key, reviewer, reason)
        audit_entry(self.audit, "rejection", entry, reviewer, reason=reason)
        return entry

    def revoke(self, actor: str | None = None, reason: str = "") -> Entry:
        return revoke(self.settings, self.current_draft().key, actor, reason)

    def parameters(self, output_dir: str, output_format: str, *, relative: bool = False) -> str:
        """The per-run parameters block for these inputs (paths under the working folder
        relative when ``relative``, so a notebook's cell moves with its folder)."""
        paths = {name: spec.path for name, spec in self.mapping.sources.items()}
        if relative:
            cwd = Path.cwd().resolve()
            paths = {n: (Path(p).relative_to(cwd).as_posix() if Path(p).is_relative_to(cwd) else p)
                     for n, p in paths.items()}  # fmt: skip
        return render_parameters(paths, output_dir, output_format)

    def materialised_cell(self, entry: Entry | None = None, output_dir: str | None = None) -> str:
        """The approved code as a notebook cell: a guard line tying it to the approval,
        then plain PySpark (parameters + approved body) a user can copy into a job."""
        entry = entry or self.require_approved()
        guard = " ".join(
            ["%%transform_run", "--client", shlex.quote(entry.client), "--mapping",
             shlex.quote(str(self.request.mapping)), "--key", entry.key,
             "--code-sha256", entry.code_sha256]
        )  # fmt: skip
        out = output_dir or self.request.output_dir or "out"
        no_credential(out)
        params = self.parameters(out, self.settings.output_format, relative=True)
        return f"{guard}\n{params}\n{entry.code}"

    def run(
        self,
        *,
        output_dir: str | None = None,
        output_format: str | None = None,
        executor: Executor | None = None,
        actor: str | None = None,
        controls: MappingABC[str, str] | None = None,
        batch_id: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> RunSummary:
        """Replay the approved code for these inputs; never re-plans or regenerates.
        ``controls`` are the client's control totals (``{"trades.rows": "4610",
        "trades.AMOUNT": "1234.50+-0.01"}``), compared with the sources as read;
        ``batch_id`` ties the run's store and audit records to a ``batch``;
        ``progress`` hears how the run goes (a panel's bar; default: the platform's)."""
        out = output_dir or self.request.output_dir
        if not out:
            raise PlanError("no output directory", hint="Pass --output-dir DIR.")
        entry = self.require_approved()
        no_credential(out)
        out = out if "://" in out else str(Path(out).expanduser().resolve())
        fmt = output_format or self.settings.output_format
        if executor is None and self.settings.platform == "local":
            from dataeng_magics.connections import storage_options
            from dataeng_magics.sources.network import check_output_reachable, is_remote

            if is_remote(out):  # a platform reaches its storage itself: checked there
                options = storage_options(out, self.settings.storage)
                check_output_reachable(out, options, self.settings.network_timeout_seconds)
        if progress is not None:
            from dataeng_magics.run.executors import get_executor

            executor = executor or get_executor(self.settings.platform, settings=self.settings)
            executor.progress = progress
        return self._execute(entry, out, fmt, executor, actor, controls, batch_id)

    def _execute(self, entry: Entry, out: str, fmt: str, executor: Executor | None,
                 actor: str | None,
                 controls: MappingABC[str, str] | None = None,
                 batch_id: str | None = None) -> RunSummary:  # fmt: skip
        """Run into a staging folder, validate, publish only if every table and every
        ``fail`` check passed, then record the run (succeeded only once published) with its
        evidence, whose sha256 the ``run_end`` audit record holds."""
        from dataeng_magics.connections import storage_options
        from dataeng_magics.run import evidence as ev
        from dataeng_magics.run.executors import Job, get_executor
        from dataeng_magics.run.inputs import line_reads, readable, spark_inputs
        from dataeng_magics.run.publish import publisher_for
        from dataeng_magics.sources.diagnose import locate_malformed, unclosed_quotes

        plan = self.plan_of(entry)
        checked = parse_controls(controls, plan)
        executor = executor or get_executor(self.settings.platform, settings=self.settings)
        readable(self.mapping, executor.local_files)  # before anything is recorded
        run_id = uuid.uuid4().hex
        tables = tuple(t.name for t in plan.tables)
        options = storage_options(out, self.settings.storage)
        job = Job(
            name=f"{self.request.client}/{entry.key[:12]}", client=entry.client, key=entry.key,
            code="", inputs={n: public_path(s.path) for n, s in self.mapping.sources.items()},
            output_dir=out, output_format=fmt, tables=tables,
        )  # fmt: skip
        refused = {t.name: refused_nulls(t) for t in plan.tables}  # NOT NULL on Delta
        publisher = publisher_for(out, fmt, storage_options=options, executor=executor, job=job,
                                  not_null=refused)  # fmt: skip
        # The run's own parameters follow (and so override) the cell's defaults; its
        # sources are what its Spark reads (a local copy of an http(s) file).
        staged = publisher.staged(run_id)
        own = run_parameters(run_id, control_columns(checked))  # checked before recording
        started_at, started = _now(), time.perf_counter()
        where = {"platform": executor.name, **executor.location(), "run_id": run_id,
                 "output_dir": public_path(out), "format": fmt}  # fmt: skip
        if batch_id:
            where["batch_id"] = batch_id
        run_start = audit_entry(self.audit, "run_start", entry, actor, **where)
        facts: dict[str, Any] = {
            "run_id": run_id, "client": entry.client, "key": entry.key,
            "plan_sha256": entry.plan_sha256, "code_sha256": entry.code_sha256,
            "approval": ev.approval_of(self.audit, entry.key),
            "inputs": ev.input_files(self.mapping, self.settings.storage),
            "output_dir": public_path(out), "output_format": fmt, "tables": list(tables),
            "audit": {"run_start_seq": run_start.seq, "run_start_hash": run_start.hash},
        }  # fmt: skip
        with RunLease(self.store, run_id, entry.key, actor or current_user()):
            try:
                seconds = self.settings.network_timeout_seconds
                with publisher.running(run_id), spark_inputs(self.mapping, seconds) as reads:
                    # CSV sources with no record spanning lines are read by lines (split
                    # across cores); the scan is part of the run's time.
                    lines = line_reads(self.mapping, executor.local_files)
                    own = run_parameters(run_id, control_columns(checked), lines)
                    params = render_parameters(reads, staged, fmt) + own
                    job = replace(job, code=f"{params}\n{entry.code}")
                    result = executor.run(job)
                    report = evaluate(result.metrics, plan, checked)
                    # a file cut inside a quoted field (the scan proved the by-lines ones whole)
                    unclosed_quotes(report, self.mapping, scanned=lines)
                    ran = time.perf_counter() - started
                    if report.passed:
                        publisher.publish(run_id, published_tables(plan))
                    else:
                        publisher.discard(run_id)
            except (ExecutionError, OSError) as exc:
                error = exc if isinstance(exc, ExecutionError) else ExecutionError(
                    f"cannot publish run {run_id[:12]} to {public_path(out)}: {exc}",
                    hint="Nothing was recorded as a success; check the output folder and "
                    "run again.",
                )  # fmt: skip
                publisher.discard(run_id)
                timings = self._timings(started_at, started)
                facts.update(outcome="failed", published=False, error=error.message,
                             platform=where, timings=timings)  # fmt: skip
                failed = {**where, "error": error.message}
                self._record(entry, "failed", started_at, None, actor, failed, run_id,
                             ev.build(**facts), out, options)  # fmt: skip
                if error is exc:
                    raise
                raise error from exc
            if any(c.kind == "malformed" for c in report.failures):
                locate_malformed(report, self.mapping, self.settings.storage)
            outcome: Outcome = "succeeded" if report.passed else "validation_failed"
            summary = RunSummary(
                client=entry.client, key=entry.key, code_sha256=entry.code_sha256,
                platform=result.platform, output_dir=public_path(out), output_format=fmt,
                seconds=time.perf_counter() - started, report=report, outcome=outcome,
                started_at=started_at, details=result.details, run_id=run_id,
            )  # fmt: skip
            facts.update(
                outcome=outcome, published=report.passed, validation=report.to_dict(),
                platform={**where, "platform": result.platform, **result.details},
                timings={**self._timings(started_at, started), "run_seconds": round(ran, 3)},
            )  # fmt: skip
            summary.evidence = ev.build(**facts)
            summary.closing = self._record(entry, outcome, started_at, summary, actor, where,
                                           run_id, summary.evidence, out, options)  # fmt: skip
        if self.mode == "replay" and not report.passed:
            raise ValidationFailed(
                f"the output of client {entry.client!r} failed validation: "
                f"{len(report.failures)} check(s) failed (first: "
                f"{report.failures[0].column or report.failures[0].table}: "
                f"{report.failures[0].message}); the previous output is untouched",
                hint="Nothing was published; see the summary and revise the plan.",
                summary=summary, client=entry.client, key=entry.key,
            )  # fmt: skip
        return summary

    @staticmethod
    def _timings(started_at: datetime, started: float) -> dict[str, Any]:
        return {"started_at": started_at.isoformat(), "finished_at": _now().isoformat(),
                "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip

    def export_test(self, output: str | Path) -> Path:
        """Write the approved transformation as a self-contained pytest module."""
        from dataeng_magics.run.export_test import export_test

        path = Path(output)
        text = export_test(self, self.require_approved(), path.name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise DataEngMagicsError(
                f"cannot write the test module: {exc.strerror}",
                file=str(path),
                hint="Choose another --output.",
            ) from exc
        return path

    def preview(self, plan: Plan | None = None, rows: int = 20, *, code: str = "") -> Preview:
        """The plan applied to the sample rows on local Spark, with its validation.

        ``code``: the plan's compiled code, when the caller has it. A background preview
        must pass it: compiling parses Python (``ast``), which CPython 3.11 cannot do in
        two threads at once (gh-106905), and the kernel parses each cell it runs."""
        from dataeng_magics.run.executors.base import Job
        from dataeng_magics.run.executors.local import execute, spark_session

        plan = plan or self.plan_of(self.current_draft())
        code = code or compile_plan(plan)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="dem-preview-") as tmp:
            paths = write_samples(self.samples, self.mapping, Path(tmp))
            out = str(Path(tmp) / "out")
            params = render_parameters(paths, out, "parquet")
            job = Job(name="preview", client=self.request.client, key=self.key, code="")
            metrics = execute(f"{params}\n{code}", spark_session(), job)
            import pandas as pd

            try:
                tables = {t.name: pd.read_parquet(Path(out) / t.name) for t in plan.tables}
            except (OSError, ValueError) as exc:
                raise ExecutionError(f"cannot read the preview output: {exc}") from exc
        report = evaluate(metrics, plan)
        self._record_preview(plan, report)
        failing = [] if report.passed and not report.warnings else failing_values(
            Preview(tables, report, 0), plan, self.samples)  # fmt: skip
        head = {name: frame.head(rows) for name, frame in tables.items()}
        return Preview(head, report, time.perf_counter() - started, failing)

    def _record(
        self,
        entry: Entry,
        outcome: Outcome,
        started_at: datetime,
        summary: RunSummary | None,
        actor: str | None,
        details: dict[str, Any],
        run_id: str,
        evidence: dict[str, Any] | None = None,
        out: str = "",
        options: dict[str, Any] | None = None,
    ) -> AuditEvent:
        """The run's store row (with its evidence) and its ``run_end`` audit record (with
        the evidence's sha256); then the evidence beside the output, closing record shown."""
        from dataeng_magics.run import evidence as ev

        facts = summary.to_dict() if summary else {}
        sealed = {"evidence": evidence} if evidence else {}
        self.store.record_run(
            entry.key,
            outcome=outcome,
            started_at=started_at,
            finished_at=_now(),
            platform=details["platform"],
            rows_in=facts.get("rows_in"),
            rows_out=facts.get("rows_out"),
            details={**details, **facts, **sealed},
            run_id=run_id,
            batch_id=details.get("batch_id"),
        )
        kept: dict[str, Any] = {
            k: facts[k] for k in ("rows_in", "rows_out", "checks_failed", "seconds") if k in facts
        }
        if evidence:
            kept["evidence_sha256"] = ev.digest(evidence)
        closing = audit_entry(self.audit, "run_end", entry, actor, **details, outcome=outcome,
                              **kept)  # fmt: skip
        if evidence and out:
            try:
                ev.write(evidence, ev.to_html(evidence, closing), out, options or {})
            except OSError as exc:  # the store and the audit log hold it already
                warnings.warn(
                    f"the evidence could not be written beside the output: {exc}; "
                    "`dataeng-magics evidence` shows it from the store",
                    DataEngMagicsWarning,
                    stacklevel=2,
                )
        return closing


def run_cell(
    body: str,
    *,
    client: str,
    mapping: str | Path,
    key: str,
    code_sha256: str,
    platform: str | None = None,
    settings: Settings | None = None,
    executor: Executor | None = None,
    actor: str | None = None,
) -> RunSummary:
    """Run a materialised cell's body (its guard line gives client, mapping, key and code
    hash): only if its code is the approved code, unedited, and its inputs still give
    the approved key. Otherwise nothing runs. The body is parsed here, once."""
    params_text, code = split_cell(body)
    if sha256_text(code) != code_sha256:
        raise PlanError(
            "the code in this cell was edited after approval; nothing ran",
            hint="Change the plan (%%transform, chat), approve it and materialise again.",
            key=key,
        )
    params = parse_parameters(params_text)
    paths, out = params["source_paths"], str(params["output_dir"])
    if not isinstance(paths, dict):
        raise PlanError("the cell's source_paths must map source names to paths", key=key,
                        hint="Materialise the approved plan again.")  # fmt: skip
    request = TransformRequest(
        client=client, mapping=Path(mapping), sources={str(n): str(p) for n, p in paths.items()},
        output_dir=out, output_format=str(params["output_format"]), platform=platform,
    )  # fmt: skip
    session = TransformSession(request, settings)
    if session.key != key:
        raise ApprovalRequired(
            f"the inputs no longer match the approved key {key[:16]} (they give "
            f"{session.key[:16]}): the mapping or a used source column changed; nothing ran",
            hint=RERUN_TRANSFORM,
            client=client, key=session.key,
        )  # fmt: skip
    entry = session.require_approved(hint=RERUN_TRANSFORM)
    if entry.code_sha256 != code_sha256:
        raise ApprovalRequired(
            f"this cell's code {code_sha256[:16]} is not the approved code "
            f"{entry.code_sha256[:16]} for key {key[:16]}; nothing ran",
            hint="Materialise the current approval again.", key=key,
        )  # fmt: skip
    return session._execute(entry, out, session.settings.output_format, executor, actor)


@dataclass(frozen=True)
class Outdated:
    """An approved entry whose code the current compiler would write differently."""

    entry: Entry
    diff: list[str]  # unified diff of the code lines, approved -> current
    error: str = ""  # set when the current code cannot read or compile the stored plan

    @property
    def change(self) -> str:
        if self.error:
            return self.error
        added = sum(1 for line in self.diff if line[:1] == "+" and line[:3] != "+++")
        removed = sum(1 for line in self.diff if line[:1] == "-" and line[:3] != "---")
        return f"{added} line(s) added, {removed} removed"


def outdated(store: Store, client: str | None = None) -> list[Outdated]:
    """Approved entries whose stored code differs from what the current compiler writes
    for their stored plan. Nothing is changed: they keep replaying their approved code
    until a reviewer re-approves deliberately."""
    found = []
    for entry in store.list(client):
        if entry.status != "approved":
            continue
        try:
            code = compile_plan(Plan.model_validate_json(entry.plan_json))
        except ValidationError as exc:  # the plan model changed in a way this plan breaks
            first, more = exc.errors()[0], exc.error_count() - 1
            where = ".".join(str(part) for part in first["loc"])
            reason = f"the plan no longer reads: {where}: {first['msg']}"
            found.append(Outdated(entry, [], reason + (f" (and {more} more)" if more else "")))
            continue
        except DataEngMagicsError as exc:  # the compiler refuses it now
            found.append(Outdated(entry, [], f"cannot compile: {exc.message}"))
            continue
        if code != entry.code:
            lines = difflib.unified_diff(entry.code.splitlines(), code.splitlines(),
                                         "approved", "current", n=0, lineterm="")  # fmt: skip
            found.append(Outdated(entry, list(lines)))
    return found
