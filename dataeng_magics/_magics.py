"""The IPython magics. Thin on purpose: flags -> request -> ``workflow``.

``%%transform`` reviews or replays a client's transformation, ``%%transform_run`` runs
a materialised (approved) cell, ``%transform <command>`` drives the current session and
the store and audit log, and ``%transform_config`` shows or changes settings (also
``%config TransformMagics.<name> = ...``).
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Enum, Float, Int, Unicode

from dataeng_magics.config import Settings, current_user, load_settings
from dataeng_magics.errors import DataEngMagicsError

if TYPE_CHECKING:
    from dataeng_magics.workflow import RunSummary, TransformSession


def _pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--source expects NAME=PATH, got {item!r}")
        pairs[name.strip()] = path.strip()
    return pairs


_OUR_CELL_MAGIC = re.compile(r"^%%transform(?:_run)?(?:\s|$)")


def allow_empty_body(lines: list[str]) -> list[str]:
    """IPython refuses a cell magic whose body is empty, but our notes are optional: give
    an empty ``%%transform`` cell a blank body (a public input-transformer hook)."""
    if lines and _OUR_CELL_MAGIC.match(lines[0]) and not any(x.strip() for x in lines[1:]):
        return [lines[0].rstrip("\n") + "\n", "\n"]
    return lines


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Show our errors as one line (UsageError), never as a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DataEngMagicsError as exc:
            raise UsageError(f"{type(exc).__name__}: {exc}") from None

    return wrapper


if TYPE_CHECKING:
    # ``@line_magic("name")`` as it behaves: returns its function. IPython 9 annotates
    # this named form as a decorator of ``Never`` (IPython 8 does not annotate it).
    def _named_line_magic(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """The named form of ``IPython.core.magic.line_magic``."""

else:
    _named_line_magic = line_magic


@magics_class
class TransformMagics(Magics):
    """Configure with ``%config TransformMagics.<name> = value`` or ``%transform_config``.

    Unset options fall back to ``[tool.dataeng_magics]`` in pyproject.toml, then the
    ``DATAENG_MAGICS_*`` environment variables.
    """

    platform = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Where runs go: local (default), or a registered executor name.",
    )
    home = Unicode(
        None,
        allow_none=True,
        config=True,
        help="State directory for the store and audit log (DATAENG_MAGICS_HOME).",
    )
    sample_rows = Int(
        None,
        allow_none=True,
        config=True,
        help="Rows read from each source for review and preview (default 100).",
    )
    planner = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Planner that drafts and revises plans: offline (default), openai, azure, "
        "openai-compatible, or a name given to dataeng_magics.agent.register_model().",
    )
    output_format = Enum(
        ["parquet", "csv", "delta"],
        None,
        allow_none=True,
        config=True,
        help="Output format when a cell does not say.",
    )
    ttl_days = Float(
        None,
        allow_none=True,
        config=True,
        help="Approvals older than this many days need a new approval.",
    )
    reviewer = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Name recorded on approvals (default: the JupyterHub user, else the OS user).",
    )
    mode = Enum(
        ["interactive", "replay"],
        None,
        allow_none=True,
        config=True,
        help="replay: never show widgets or call a planner (DATAENG_MAGICS_MODE).",
    )
    # The LLM planner (README, "LLM planner"). API keys stay in environment variables.
    llm_model = Unicode(None, allow_none=True, config=True, help="Model (azure: deployment).")
    llm_base_url = Unicode(
        None, allow_none=True, config=True, help="OpenAI-compatible server URL, or Azure endpoint."
    )
    llm_api_version = Unicode(None, allow_none=True, config=True, help="Azure API version.")
    llm_auth = Enum(
        ["auto", "api_key", "entra_id"], None, allow_none=True, config=True,
        help="Azure sign-in: API key or Entra ID (auto: the key if one is set).",
    )  # fmt: skip
    llm_api_key_env = Unicode(
        None, allow_none=True, config=True, help="Environment variable holding the API key."
    )
    llm_temperature = Float(None, allow_none=True, config=True, help="Default 0.")
    llm_timeout = Float(None, allow_none=True, config=True, help="Seconds per request (60).")
    llm_max_retries = Int(None, allow_none=True, config=True, help="Retries per call (2).")
    llm_requests_per_second = Float(
        None, allow_none=True, config=True, help="Rate limit (1; 0 switches it off)."
    )
    llm_max_output_tokens = Int(None, allow_none=True, config=True, help="Per call (4096).")
    llm_sample_rows = Int(
        None, allow_none=True, config=True, help="Sample rows sent per source (20)."
    )
    llm_privacy = Enum(
        ["sample", "schema"], None, allow_none=True, config=True,
        help="schema: send column names and types only, never sample values.",
    )  # fmt: skip
    llm_token_budget = Int(None, allow_none=True, config=True, help="Input tokens per call (8000).")

    LLM_SETTINGS = (
        "llm_model", "llm_base_url", "llm_api_version", "llm_auth", "llm_api_key_env",
        "llm_temperature", "llm_timeout", "llm_max_retries", "llm_requests_per_second",
        "llm_max_output_tokens", "llm_sample_rows", "llm_privacy", "llm_token_budget",
    )  # fmt: skip
    SETTINGS = (
        "platform", "home", "sample_rows", "planner", "output_format", "ttl_days", "mode",
        *LLM_SETTINGS,
    )  # fmt: skip

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.current: TransformSession | None = None
        self.panel: Any = None
        # Replays this kernel already ran: (key, code hash) -> summary. A notebook holding
        # both %%transform and its materialised cell runs the transformation once.
        self._ran: dict[tuple[str, str], RunSummary] = {}

    # -- helpers --------------------------------------------------------------------

    def settings(self) -> Settings:
        return load_settings(**{name: getattr(self, name) for name in self.SETTINGS})

    def _session(
        self, client: str, mapping: str, sources: dict[str, str], **extra: Any
    ) -> TransformSession:
        from dataeng_magics.workflow import TransformRequest, TransformSession

        request = TransformRequest(client=client, mapping=Path(mapping), sources=sources, **extra)
        return TransformSession(request, self.settings())

    def _reviewer(self, name: str | None = None) -> str:
        return name or self.reviewer or current_user()

    def _require_current(self) -> TransformSession:
        if self.current is None:
            raise UsageError("no transformation in this kernel yet: run a %%transform cell first")
        return self.current

    def _show_run(self, summary: RunSummary, note: str = "") -> None:
        from dataeng_magics.display import SummaryView

        display(SummaryView(summary, note))

    def _refresh_panel(self) -> None:
        """Keep a displayed panel in step with changes made by %transform commands."""
        if self.panel is not None and hasattr(self.panel, "refresh"):
            self.panel.refresh()

    def _materialise(self, session: TransformSession, output_dir: str | None = None) -> str:
        cell = session.materialised_cell(output_dir=output_dir)
        if self.shell is not None:
            self.shell.set_next_input(cell, replace=False)
        return cell

    # -- %%transform ----------------------------------------------------------------

    @magic_arguments()
    @argument("--client", required=True, help="client id (part of the cache key)")
    @argument("--mapping", required=True, help="mapping workbook (.xlsx or .csv)")
    @argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="read source NAME from PATH (repeatable)",
    )
    @argument("--output-dir", help="where each target table is written (DIR/<TABLE>/)")
    @argument("--format", choices=["parquet", "csv", "delta"], help="output format")
    @argument("--platform", help="where to run: local, or a registered platform")
    @argument(
        "--replay",
        action="store_true",
        help="run the approved plan with no widgets and no planner (batch mode)",
    )
    @argument(
        "--reviewer",
        help="name recorded on approval (default: the reviewer setting, else the Jupyter user)",
    )
    @cell_magic
    @_user_errors
    def transform(self, line: str, cell: str) -> Any:
        """Review, approve and run a client's transformation from its mapping workbook.

        The cell body is optional plain-English notes for the planner. Interactively it
        shows the review panel (or, when an approved plan matches, the approved view).
        In replay mode (--replay, DATAENG_MAGICS_MODE=replay, `dataeng-magics replay`) it
        runs the approved plan or fails with "approval required"; it never asks a planner.
        """
        return self._transform(line, cell)

    # The magics delegate to plain methods, which the other magics call: IPython 9 types
    # a decorated magic as a union with its decorator, which is not callable as a method.
    def _transform(self, line: str, cell: str) -> Any:
        args = parse_argstring(self.transform, line)
        session = self._session(
            args.client,
            args.mapping,
            _pairs(args.source),
            output_dir=args.output_dir,
            output_format=args.format,
            platform=args.platform,
            notes=cell.strip(),
            replay=args.replay,
        )
        self.current = session
        if args.replay or session.settings.mode == "replay":
            return self._replay(session)
        entry = session.approved_entry()
        if entry is not None:
            from dataeng_magics.widgets import ApprovedPanel

            # Materialise asks the lab extension for the cell (CellInserter), never
            # set_next_input: from a button click its payload would ride on the next
            # execute reply and land below whichever cell runs next. Without the
            # extension, the panel's note says `%transform materialise`.
            self.panel = ApprovedPanel(
                session,
                entry,
                on_redraft=lambda _: None,
                on_run=lambda summary: None,
            )
        else:
            from dataeng_magics.widgets import ReviewPanel

            # the panel's Reviewer field: this name, else the Jupyter user if a person
            self.panel = ReviewPanel(session, reviewer=args.reviewer or self.reviewer)
        display(self.panel)
        return None

    def _replay(self, session: TransformSession) -> None:
        if not session.request.output_dir:
            raise UsageError("replay needs --output-dir DIR")
        entry = session.require_approved()  # raises ApprovalRequired: nothing runs
        summary = session.run()
        self._ran[(entry.key, entry.code_sha256)] = summary
        self._show_run(summary)
        if not summary.report.passed:
            raise UsageError(
                f"ValidationFailed: output of client {summary.client!r} failed "
                f"{len(summary.report.failures)} check(s); see the summary above"
            )

    # -- %%transform_run (the materialised cell) -------------------------------------

    @magic_arguments()
    @argument("--client", required=True)
    @argument("--mapping", required=True)
    @argument("--key", required=True, help="the approved cache key")
    @argument("--code-sha256", required=True, help="sha256 of the approved code")
    @argument("--platform", help="where to run (default: the configured platform)")
    @argument("--again", action="store_true", help="run even if this kernel already ran it")
    @cell_magic
    @_user_errors
    def transform_run(self, line: str, cell: str) -> None:
        """Run an approved, materialised transformation cell.

        Refuses (and runs nothing) if the code below was edited after approval or the
        inputs no longer produce the approved key. The body is plain PySpark.
        """
        from dataeng_magics.compile.cell import parse_parameters, split_cell

        args = parse_argstring(self.transform_run, line)
        params = parse_parameters(split_cell(cell)[0])
        paths = params["source_paths"]
        assert isinstance(paths, dict)
        session = self._session(args.client, args.mapping, paths, platform=args.platform)
        done = self._ran.get((args.key, args.code_sha256))
        if done is not None and not args.again and session.settings.mode == "replay":
            self._show_run(
                done, "Already ran in this kernel (by %%transform above); not run again."
            )
            return
        summary = session.run_cell(cell, args.key, args.code_sha256, actor=self._reviewer())
        self._ran[(args.key, args.code_sha256)] = summary
        self._show_run(summary)
        if session.settings.mode == "replay" and not summary.report.passed:
            raise UsageError("ValidationFailed: the output failed its checks; see the summary")

    # -- %transform <command> -------------------------------------------------------

    @_named_line_magic("transform")
    @_user_errors
    def transform_line(self, line: str) -> Any:
        """%transform COMMAND [args]: the current transformation and the store.

        ``%transform --client ID --mapping FILE ...`` is ``%%transform`` without notes.

        Session: approve [--reviewer R] | reject REASON | revise FEEDBACK | materialise
                 [--output-dir D] | run [--output-dir D] | preview | code | plan
        Store:   list [--client C] | show KEY | revoke KEY REASON | verify |
                 audit [--client C] [--key K] [--limit N] | stats [--client C] | config
        """
        words = shlex.split(line)
        if not words:
            raise UsageError(self.transform_line.__doc__ or "")
        if words[0].startswith("-"):  # %transform --client ... : the review with no notes
            return self._transform(line, "")
        command, rest = words[0], words[1:]
        handlers: dict[str, Callable[[list[str]], Any]] = {
            "approve": self._cmd_approve,
            "reject": self._cmd_reject,
            "revise": self._cmd_revise,
            "materialise": self._cmd_materialise,
            "materialize": self._cmd_materialise,
            "run": self._cmd_run,
            "preview": self._cmd_preview,
            "plan": self._cmd_plan,
            "code": self._cmd_code,
            "list": self._cmd_list,
            "show": self._cmd_show,
            "revoke": self._cmd_revoke,
            "invalidate": self._cmd_revoke,  # the old name
            "verify": self._cmd_verify,
            "audit": self._cmd_audit,
            "stats": self._cmd_stats,
            "config": lambda _: self._transform_config(""),
        }
        if command not in handlers:
            raise UsageError(f"unknown command {command!r}; one of: {', '.join(handlers)}")
        return handlers[command](rest)

    @staticmethod
    def _option(words: list[str], name: str) -> str | None:
        if name in words:
            index = words.index(name)
            if index + 1 >= len(words):
                raise UsageError(f"{name} needs a value")
            value = words[index + 1]
            del words[index : index + 2]
            return value
        return None

    def _cmd_approve(self, words: list[str]) -> Any:
        from dataeng_magics.display import Text

        session = self._require_current()
        approval = session.approve(self._reviewer(self._option(words, "--reviewer")))
        entry = approval.entry
        if not approval.recorded:
            return Text(f"{approval.to_text()}. `%transform materialise` inserts its cell.")
        self._materialise(session)
        self._refresh_panel()
        return Text(
            f"Approved by {entry.reviewer}: key {entry.key[:16]}, code "
            f"{entry.code_sha256[:16]}. The approved code is inserted as a cell below."
        )

    def _cmd_reject(self, words: list[str]) -> Any:
        if not words:
            raise UsageError("reject needs a reason: %transform reject 'why'")
        entry = self._require_current().reject(self._reviewer(), " ".join(words))
        self._refresh_panel()
        from dataeng_magics.display import Text

        return Text(f"Rejected key {entry.key[:16]}: {entry.reason}")

    def _cmd_revise(self, words: list[str]) -> Any:
        from dataeng_magics.display import Text

        entry, revision = self._require_current().revise(" ".join(words), actor=self._reviewer())
        self._refresh_panel()
        changes = entry.conversation[-1].get("changes", []) if entry.conversation else []
        revoked = [str(revision.revoked)] if revision.revoked else []
        return Text("\n".join([revision.reply, *revoked, *changes, "", entry.pseudocode]))

    def _cmd_materialise(self, words: list[str]) -> Any:
        from dataeng_magics.display import Text

        self._materialise(self._require_current(), self._option(words, "--output-dir"))
        return Text("The approved code is inserted as a cell below.")

    def _cmd_run(self, words: list[str]) -> None:
        session = self._require_current()
        summary = session.run(
            output_dir=self._option(words, "--output-dir"), actor=self._reviewer()
        )
        self._show_run(summary)

    def _cmd_preview(self, words: list[str]) -> Any:
        preview = self._require_current().preview()
        for name, frame in preview.tables.items():
            display(frame.head(10).style.set_caption(name) if hasattr(frame, "style") else frame)
        from dataeng_magics.display import Text

        return Text(preview.report.to_text())

    def _cmd_plan(self, words: list[str]) -> Any:
        from dataeng_magics.display import Text

        entry = self._require_current().current_draft()
        return Text(entry.pseudocode)

    def _cmd_code(self, words: list[str]) -> Any:
        from dataeng_magics.display import Text

        entry = self._require_current().current_draft()
        return Text(entry.code or "(the plan has unresolved steps; nothing to compile yet)")

    def _store(self) -> Any:
        from dataeng_magics.state.store import Store

        return Store(self.settings().store_path)

    def _cmd_list(self, words: list[str]) -> Any:
        from dataeng_magics.display import entries_table

        client = self._option(words, "--client")
        return entries_table(self._store().list(client), client)

    def _cmd_show(self, words: list[str]) -> Any:
        from dataeng_magics.display import Text

        if not words:
            raise UsageError("show needs a KEY (or a unique prefix)")
        store = self._store()
        entry = store.get(store.resolve(words[0]))
        head = (
            f"key {entry.key}\nclient {entry.client}  status {entry.status}  "
            f"runs {entry.runs}  reviewer {entry.reviewer or '-'}\n"
        )
        return Text(head + "\n" + entry.pseudocode + ("\n" + entry.code if entry.code else ""))

    def _cmd_revoke(self, words: list[str]) -> Any:
        from dataeng_magics.display import Text
        from dataeng_magics.workflow import revoke

        if len(words) < 2:
            raise UsageError("revoke needs a KEY and a reason: %transform revoke KEY 'why'")
        entry = revoke(self.settings(), words[0], self._reviewer(), " ".join(words[1:]))
        return Text(f"Revoked {entry.key[:16]}: replays now need a new approval.")

    def _cmd_verify(self, words: list[str]) -> Any:
        from dataeng_magics.display import Text
        from dataeng_magics.state.audit import AuditLog

        log = AuditLog(self.settings().audit_path)
        result = log.verify()
        if not result.ok:
            raise UsageError(
                f"audit log BROKEN at line {result.first_bad_line} "
                f"(seq {result.first_bad_seq}): {result.reason}"
            )
        return Text(f"Audit log intact: {result.count} records ({log.path}).")

    def _cmd_audit(self, words: list[str]) -> Any:
        from dataeng_magics.display import audit_table
        from dataeng_magics.workflow import audit_events

        client, key = self._option(words, "--client"), self._option(words, "--key")
        limit = int(self._option(words, "--limit") or 50)
        events = audit_events(self.settings(), client=client, key=key)
        return audit_table(events[-limit:], client, key)

    def _cmd_stats(self, words: list[str]) -> Any:
        from dataeng_magics.display import Text
        from dataeng_magics.state.audit import AuditLog
        from dataeng_magics.state.stats import collect, to_text

        settings = self.settings()
        figures = collect(
            self._store(), AuditLog(settings.audit_path), self._option(words, "--client")
        )
        return Text(to_text(figures))

    # -- %transform_config ----------------------------------------------------------

    @line_magic
    @_user_errors
    def transform_config(self, line: str) -> Any:
        """%transform_config [name=value ...]: show settings, or set them for this kernel."""
        return self._transform_config(line)

    def _transform_config(self, line: str) -> Any:
        from dataeng_magics.display import Table

        for word in shlex.split(line):
            name, sep, value = word.partition("=")
            if not sep or name not in self.trait_names(config=True):
                raise UsageError(
                    f"expected name=value with name one of: "
                    f"{', '.join(sorted(self.trait_names(config=True)))}"
                )
            trait = self.traits()[name]
            self.set_trait(name, None if value in ("", "None") else trait.from_string(value))
        settings = self.settings()
        rows = [
            {
                "setting": name,
                "value": getattr(settings, name, getattr(self, name)),
                "from %config": getattr(self, name),
            }
            for name in (*self.SETTINGS, "reviewer")
        ]
        return Table(rows, ["setting", "value", "from %config"], "dataeng_magics settings")


def load_ipython_extension(ipython: Any) -> None:
    magics = TransformMagics(shell=ipython)
    ipython.register_magics(magics)
    ipython.configurables.append(magics)
    if allow_empty_body not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(allow_empty_body)


def unload_ipython_extension(ipython: Any) -> None:
    if allow_empty_body in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(allow_empty_body)
    ipython.configurables[:] = [
        c for c in ipython.configurables if not isinstance(c, TransformMagics)
    ]
