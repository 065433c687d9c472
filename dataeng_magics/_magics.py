"""The IPython magics. Thin on purpose: flags -> request -> ``workflow``.

``%%transform`` reviews or replays a client's transformation, ``%%transform_run`` runs
a materialised (approved) cell, ``%transform <command>`` drives the current session and
the store and audit log, and ``%transform_config`` shows or changes settings (also
``%config TransformMagics.<name> = ...``).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from IPython.display import display
from traitlets import Bool, Enum, Float, Int, List, Unicode

from dataeng_magics.commands import (
    SHORTHANDS,
    TRANSFORM_FLAGS,
    TRANSFORM_RUN_FLAGS,
    Arg,
    HelpFormatter,
    Parser,
    commands,
    reason,
    unrecognized,
)
from dataeng_magics.config import Mode, Settings, current_user, load_settings
from dataeng_magics.display import error_bundle
from dataeng_magics.errors import DataEngMagicsError, ValidationFailed

if TYPE_CHECKING:
    from dataeng_magics.workflow import RunSummary, TransformSession


_F = TypeVar("_F", bound=Callable[..., Any])


def _flags(specs: tuple[Arg, ...]) -> Callable[[Any], Any]:
    """IPython's ``magic_arguments`` built from ``specs``: the cell magic's parser (its
    ``parser`` attribute) and the help that ``%%transform?`` shows."""

    def decorate(func: Any) -> Any:
        for spec in reversed(specs):  # decorators apply bottom-up
            func = argument(*spec.names, **spec.options)(func)
        return magic_arguments()(func)

    return decorate


def _words(line: str) -> list[str]:
    """A magic's line as words: quotes group (as ``shlex.quote`` wrote them in a
    materialised cell's guard line) and backslashes stay (Windows paths)."""
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split, lexer.escape, lexer.commenters = True, "", ""
    try:
        return list(lexer)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"{exc}: {line.strip()}") from None


def _parse_flags(magic: Any, line: str) -> argparse.Namespace:
    """A cell magic's flags; an unknown one is refused naming the closest known one."""
    parser = magic.parser
    args: argparse.Namespace
    args, extras = parser.parse_known_args(_words(line))
    if extras:
        parser.error(unrecognized(extras, parser))  # a UsageError
    return args


class _HelpShown(Exception):
    """``%transform COMMAND -h``: the help, shown as the command's output."""


class _LineParser(Parser):
    """A ``%transform`` command's parser: an error is a one-line UsageError with the
    usage (never ``sys.exit`` in a kernel), and ``-h`` is the command's output."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split())
        raise UsageError(f"{message} ({usage})")

    def print_help(self, file: Any = None) -> None:
        raise _HelpShown(self.format_help())


_LINE_COMMANDS = commands("kernel")
_LINE_COMMANDS_HELP = (
    f"one of: {', '.join([*_LINE_COMMANDS, *SHORTHANDS])} "
    "(%transform COMMAND -h shows its arguments)"
)


@functools.cache
def line_parser(name: str) -> Parser:
    """The parser of ``%transform NAME``, from the same definition as the CLI's."""
    command = _LINE_COMMANDS[name]
    parser = _LineParser(
        prog=f"%transform {name}",
        description=command.description or command.help,
        formatter_class=HelpFormatter,
    )
    parser.add_command(command, "kernel")
    # Fixed now, with its % escaped: argparse %-formats a usage, and its intermixed
    # parsing would capture this one unescaped.
    parser.usage = parser.format_usage().removeprefix("usage: ").replace("%", "%%")
    return parser


def _listing_commands(func: _F) -> _F:
    """``%transform``'s docstring, with its commands and shorthands appended."""
    rows = [f"{name:<12} {command.help}" for name, command in _LINE_COMMANDS.items()]
    rows += [f"{name:<12} is {' '.join(words)}" for name, words in SHORTHANDS.items()]
    func.__doc__ = f"{func.__doc__}\n        Commands:\n" + "".join(
        f"          {row}\n" for row in rows
    )
    return func


_OUR_CELL_MAGIC = re.compile(r"^%%transform(?:_run)?(?:\s|$)")


def allow_empty_body(lines: list[str]) -> list[str]:
    """IPython refuses a cell magic whose body is empty, but our notes are optional: give
    an empty ``%%transform`` cell a blank body (a public input-transformer hook)."""
    if lines and _OUR_CELL_MAGIC.match(lines[0]) and not any(x.strip() for x in lines[1:]):
        return [lines[0].rstrip("\n") + "\n", "\n"]
    return lines


def _user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Show our errors as one line (UsageError), never as a traceback, and record them
    as data in the cell's output (type, exit code, fields: ``display.ERROR_MIME``), so
    ``dataeng-magics replay`` reads the exit code from the executed notebook."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DataEngMagicsError as exc:
            display(error_bundle(exc), raw=True)
            raise UsageError(f"{type(exc).__name__}: {exc}") from None

    return wrapper


if TYPE_CHECKING:
    # ``@line_magic("name")`` as it behaves: returns its function. IPython 9 annotates
    # this named form as a decorator of ``Never`` (IPython 8 does not annotate it).
    def _named_line_magic(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """The named form of ``IPython.core.magic.line_magic``."""

else:
    _named_line_magic = line_magic


def _controls_parameter(value: Any) -> dict[str, str]:
    """The notebook's ``controls`` parameter: a dict, or its JSON text (``dataeng-magics
    replay -p controls '{"trades.rows": "4610"}'``); absent or empty: none."""
    import json

    from dataeng_magics.errors import ConfigError

    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise ConfigError(
                "the 'controls' parameter is not a JSON object",
                hint='Pass -p controls \'{"trades.rows": "4610"}\'.',
            )
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


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
    # Team state (README, "Teams"). A password in the URL is never shown.
    store_url = Unicode(
        None, allow_none=True, config=True,
        help="Team state on PostgreSQL (postgresql://user@host/db); unset: SQLite in home.",
    )  # fmt: skip
    store_auth = Enum(
        ["password", "entra_id"], None, allow_none=True, config=True,
        help="PostgreSQL sign-in: the URL's password, or an Entra ID token.",
    )  # fmt: skip
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
    # Bad input (README, "Bad input fails loudly").
    ignore_headers = List(
        Unicode(), None, allow_none=True, config=True,
        help="Informational workbook headers to ignore, besides the built-in list.",
    )  # fmt: skip
    read_hidden_sheets = Bool(
        None, allow_none=True, config=True, help="Read hidden workbook sheets (default: ignore)."
    )
    network_timeout_seconds = Float(
        None, allow_none=True, config=True,
        help="Total deadline for reaching remote storage (default 60).",
    )  # fmt: skip

    LLM_SETTINGS = (
        "llm_model", "llm_base_url", "llm_api_version", "llm_auth", "llm_api_key_env",
        "llm_temperature", "llm_timeout", "llm_max_retries", "llm_requests_per_second",
        "llm_max_output_tokens", "llm_sample_rows", "llm_privacy", "llm_token_budget",
    )  # fmt: skip
    SETTINGS = (
        "platform", "home", "sample_rows", "planner", "output_format", "ttl_days", "mode",
        "ignore_headers", "read_hidden_sheets", "network_timeout_seconds", "store_url",
        "store_auth", *LLM_SETTINGS,
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
        self, client: str, mapping: str, sources: dict[str, str], mode: Mode, **extra: Any
    ) -> TransformSession:
        from dataeng_magics.workflow import TransformRequest, TransformSession

        request = TransformRequest(client=client, mapping=Path(mapping), sources=sources, **extra)
        return TransformSession(request, self.settings(), mode=mode)

    def _reviewer(self, name: str | None = None) -> str:
        return name or self.reviewer or current_user()

    def _require_current(self) -> TransformSession:
        if self.current is None:
            raise UsageError("no transformation in this kernel yet: run a %%transform cell first")
        return self.current

    def _show_run(self, summary: RunSummary, note: str = "") -> None:
        from dataeng_magics.display import SummaryView

        display(SummaryView(summary, note))

    def _run_and_show(self, run: Callable[[], RunSummary]) -> None:
        """Run, then remember (for a materialised cell below) and show the summary, also
        that of a replay whose output failed its checks (``ValidationFailed`` carries it)."""
        try:
            summary = run()
        except ValidationFailed as exc:
            self._remember(exc.summary)
            raise
        self._remember(summary)

    def _remember(self, summary: RunSummary) -> None:
        self._ran[(summary.key, summary.code_sha256)] = summary
        self._show_run(summary)

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

    @_flags(TRANSFORM_FLAGS)
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
        args = _parse_flags(self.transform, line)
        session = self._session(
            args.client,
            args.mapping,
            dict(args.source or []),
            "replay" if args.replay else "interactive",
            output_dir=args.output_dir,
            output_format=args.format,
            platform=args.platform,
            notes=cell.strip(),
        )
        self.current = session
        if session.mode == "replay":  # no widget, no planner: the approved plan runs
            # control totals: --control flags and a papermill parameter ``controls``
            given = self.shell.user_ns.get("controls") if self.shell else None
            controls = {**_controls_parameter(given), **dict(args.control or [])}
            return self._run_and_show(lambda: session.run(controls=controls))
        entry = session.approved_entry()
        if entry is not None:
            from dataeng_magics.widgets import ApprovedPanel

            # Materialise asks the lab extension for the cell (CellInserter), never
            # set_next_input: from a button click its payload would ride on the next
            # execute reply and land below whichever cell runs next. Without the
            # extension, the panel's note says `%transform materialise`.
            self.panel = ApprovedPanel(session, entry)
        else:
            from dataeng_magics.widgets import ReviewPanel

            # the panel's Reviewer field: this name, else the Jupyter user if a person
            self.panel = ReviewPanel(
                session, reviewer=args.reviewer or self.reviewer, auto_preview=True
            )
        display(self.panel)
        return None

    # -- %%transform_run (the materialised cell) -------------------------------------

    @_flags(TRANSFORM_RUN_FLAGS)
    @cell_magic
    @_user_errors
    def transform_run(self, line: str, cell: str) -> None:
        """Run an approved, materialised transformation cell.

        Refuses (and runs nothing) if the code below was edited after approval or the
        inputs no longer produce the approved key. The body is plain PySpark.
        """
        from dataeng_magics.workflow import run_cell

        args = _parse_flags(self.transform_run, line)
        settings = self.settings()
        done = self._ran.get((args.key, args.code_sha256))
        if done is not None and not args.again and settings.mode == "replay":
            self._show_run(
                done, "Already ran in this kernel (by %%transform above); not run again."
            )
            return
        self._run_and_show(
            lambda: run_cell(
                cell,
                client=args.client,
                mapping=args.mapping,
                key=args.key,
                code_sha256=args.code_sha256,
                platform=args.platform,
                settings=settings,
                actor=self._reviewer(),
            )
        )

    # -- %transform <command> -------------------------------------------------------

    @_named_line_magic("transform")
    @_user_errors
    @_listing_commands
    def transform_line(self, line: str) -> Any:
        """%transform COMMAND [args]: the current transformation, the store and the audit
        log. ``%transform COMMAND -h`` shows a command's arguments, which are the CLI's
        (``dataeng-magics COMMAND``) less the inputs: those of the last ``%%transform``.

        ``%transform --client ID --mapping FILE ...`` is ``%%transform`` without notes.
        """
        words = _words(line)
        if not words:
            raise UsageError(f"%transform COMMAND [args]; {_LINE_COMMANDS_HELP}")
        if words[0].startswith("-"):  # %transform --client ... : the review with no notes
            return self._transform(line, "")
        words = [*SHORTHANDS.get(words[0], words[:1]), *words[1:]]
        handler = getattr(self, f"_cmd_{words[0].replace('-', '_')}", None)
        if words[0] not in _LINE_COMMANDS or handler is None:
            raise UsageError(f"unknown command {words[0]!r}; {_LINE_COMMANDS_HELP}")
        try:
            args = line_parser(words[0]).parse(words[1:])
        except _HelpShown as shown:
            from dataeng_magics.display import Text

            return Text(str(shown))
        return handler(args)

    def _cmd_approve(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text

        session = self._require_current()
        approval = session.approve(self._reviewer(args.reviewer), despite=args.anyway)
        entry = approval.entry
        if not approval.recorded:
            return Text(f"{approval.to_text()}. `%transform materialise` inserts its cell.")
        self._materialise(session)
        self._refresh_panel()
        return Text(
            f"Approved by {entry.reviewer}: key {entry.key[:16]}, code "
            f"{entry.code_sha256[:16]}. The approved code is inserted as a cell below."
        )

    def _cmd_reject(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text

        session = self._require_current()
        entry = session.reject(self._reviewer(args.reviewer), reason(args))
        self._refresh_panel()
        return Text(f"Rejected key {entry.key[:16]}: {entry.reason}")

    def _cmd_revise(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text

        session = self._require_current()
        entry, revision = session.revise(" ".join(args.feedback), actor=self._reviewer())
        self._refresh_panel()
        changes = entry.conversation[-1].get("changes", []) if entry.conversation else []
        revoked = [str(revision.revoked)] if revision.revoked else []
        return Text("\n".join([revision.reply, *revoked, *changes, "", entry.pseudocode]))

    def _cmd_materialise(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text

        self._materialise(self._require_current(), args.output_dir)
        return Text("The approved code is inserted as a cell below.")

    def _cmd_run(self, args: argparse.Namespace) -> None:
        session = self._require_current()
        executor = None
        if args.platform:
            from dataeng_magics.run.executors import get_executor

            executor = get_executor(args.platform, settings=session.settings)
        self._run_and_show(
            lambda: session.run(
                output_dir=args.output_dir,
                output_format=args.format,
                executor=executor,
                actor=self._reviewer(),
                controls=dict(args.control or []),
            )
        )

    def _cmd_preview(self, args: argparse.Namespace) -> Any:
        preview = self._require_current().preview()
        for name, frame in preview.tables.items():
            display(frame.head(10).style.set_caption(name) if hasattr(frame, "style") else frame)
        from dataeng_magics.display import Text

        return Text(preview.report.to_text())

    def _cmd_plan(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text

        entry = self._require_current().current_draft()
        return Text(entry.pseudocode)

    def _cmd_code(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text

        entry = self._require_current().current_draft()
        return Text(entry.code or "(the plan has unresolved steps; nothing to compile yet)")

    def _cmd_config(self, args: argparse.Namespace) -> Any:
        return self._transform_config("")

    def _store(self) -> Any:
        from dataeng_magics.state.backend import open_store

        return open_store(self.settings())

    def _cmd_cache(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text, entries_table, outdated_report

        if args.action == "list" and args.outdated:
            from dataeng_magics.workflow import outdated

            return outdated_report(outdated(self._store(), args.client))
        if args.action == "list":
            store = self._store()
            found = store.list(args.client)
            return entries_table(found, args.client, store.run_states(found))
        if args.action == "show":
            store = self._store()
            entry = store.get(store.resolve(args.key))
            head = (
                f"key {entry.key}\nclient {entry.client}  status {entry.status}  "
                f"runs {entry.runs}  reviewer {entry.reviewer or '-'}\n"
            )
            code = "\n" + entry.code if args.code and entry.code else ""
            return Text(head + "\n" + entry.pseudocode + code)
        from dataeng_magics.workflow import revoke

        entry = revoke(self.settings(), args.key, self._reviewer(), reason(args))
        return Text(f"Revoked {entry.key[:16]}: replays now need a new approval.")

    def _cmd_store(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text
        from dataeng_magics.state.backend import store_command

        return Text(store_command(self.settings(), args.action, args.url, args.to, args.role))

    def _cmd_audit(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text, audit_table
        from dataeng_magics.state.backend import open_audit
        from dataeng_magics.workflow import audit_events

        if args.action == "verify":
            log = open_audit(self.settings())
            result = log.verify()
            if not result.ok:
                raise UsageError(result.describe(log.where))
            return Text(result.describe(log.where))
        events = audit_events(self.settings(), client=args.client, key=args.key)
        return audit_table(events[-args.limit :], args.client, args.key)

    def _cmd_stats(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text
        from dataeng_magics.state.backend import audit_of
        from dataeng_magics.state.stats import collect, to_text

        store = self._store()
        figures = collect(store, audit_of(store), args.client)
        return Text(to_text(figures))

    def _cmd_evidence(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import EvidenceView, Text
        from dataeng_magics.run import evidence as ev
        from dataeng_magics.workflow import find_evidence

        target = args.target or self._require_current().key
        record, closing = find_evidence(self.settings(), target)
        if args.html:
            ev.write_page(args.html, record, closing)
        if args.json:
            return Text(json.dumps(record, indent=2))
        return EvidenceView(record, closing)

    def _cmd_export_test(self, args: argparse.Namespace) -> Any:
        from dataeng_magics.display import Text
        from dataeng_magics.workflow import session_for_key

        session = (
            session_for_key(self.settings(), args.target)
            if args.target
            else self._require_current()
        )
        return Text(f"wrote {session.export_test(args.output)}")

    # -- %transform_config ----------------------------------------------------------

    @line_magic
    @_user_errors
    def transform_config(self, line: str) -> Any:
        """%transform_config [name=value ...]: show settings, or set them for this kernel."""
        return self._transform_config(line)

    def _transform_config(self, line: str) -> Any:
        from dataeng_magics.display import Table

        for word in _words(line):
            name, sep, value = word.partition("=")
            if not sep or name not in self.trait_names(config=True):
                raise UsageError(
                    f"expected name=value with name one of: "
                    f"{', '.join(sorted(self.trait_names(config=True)))}"
                )
            trait = self.traits()[name]
            self.set_trait(name, None if value in ("", "None") else trait.from_string(value))
        from dataeng_magics.redact import public_path

        settings = self.settings()

        def shown(name: str, value: Any) -> Any:  # a store_url's password: never shown
            return public_path(value) if name == "store_url" and value else value

        rows = [
            {
                "setting": name,
                "value": shown(name, getattr(settings, name, getattr(self, name))),
                "from %config": shown(name, getattr(self, name)),
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
