"""Every command's arguments, defined once: the CLI's subcommands, ``%transform``'s and
the ``%%transform`` cells' flags are built from these specs, so the front ends agree.

A command is data (name, help, ``Arg`` specs); ``cli.build_parser`` and the magics turn
it into argparse parsers and bind their own handlers. A new flag is one ``Arg`` in its
command's ``args``; a new command is one ``Command`` in ``COMMANDS`` plus a handler in
each front end that has it.
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Front = Literal["cli", "kernel"]


@dataclass(frozen=True)
class Arg:
    """One ``add_argument`` call as data: argparse and IPython's ``magic_arguments``
    build the same argument from it."""

    names: tuple[str, ...]
    options: dict[str, Any]

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(*self.names, **self.options)


def arg(*names: str, **options: Any) -> Arg:
    return Arg(names, options)


def source_pair(text: str) -> tuple[str, str]:
    """``--source NAME=PATH`` as a pair; argparse reports the error with the flag."""
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), path.strip()


def control_pair(text: str) -> tuple[str, str]:
    """``--control SOURCE.rows=N`` or ``SOURCE.COLUMN=TOTAL[+-TOL]`` as a pair."""
    name, sep, value = text.partition("=")
    if not sep or "." not in name or not value.strip():
        raise argparse.ArgumentTypeError(
            f"expected SOURCE.rows=N or SOURCE.COLUMN=TOTAL[+-TOLERANCE], got {text!r}"
        )
    return name.strip(), value.strip()


def reason(args: argparse.Namespace) -> str:
    """The reason given as words (``reject too vague``) or ``--reason``, or both."""
    return " ".join([*args.reason_words, args.reason or ""]).strip()


# -- the inputs and choices of a transformation (``%%transform``'s flags) -------------

CLIENT = arg("--client", required=True, help="client id (part of the cache key)")
MAPPING = arg("--mapping", required=True, help="mapping workbook (.xlsx or .csv)")
SOURCE = arg(
    "--source",
    action="append",
    type=source_pair,
    metavar="NAME=PATH",
    help="read source NAME from PATH (repeatable)",
)
OUTPUT_DIR = arg("--output-dir", help="where each target table is written (DIR/<TABLE>/)")
FORMAT = arg(
    "--format",
    choices=["parquet", "csv", "delta"],
    help="output format (default: the output_format setting, parquet)",
)
PLATFORM = arg(
    "--platform",
    help="where to run: local or a registered platform (default: the platform setting, local)",
)
REPLAY = arg(
    "--replay",
    action="store_true",
    help="run the approved plan with no widgets and no planner (batch mode)",
)
REVIEWER = arg(
    "--reviewer",
    help="name recorded on approval (default: the reviewer setting, else the Jupyter user)",
)
HOME = arg("--home", help="state directory: store and audit log (default $DATAENG_MAGICS_HOME)")
PLANNER = arg(
    "--planner", help="offline, openai, azure, openai-compatible (default: setting 'planner')"
)
JSON = arg("--json", action="store_true", help="also print the result as JSON")
REASON_WORDS = arg(
    "reason_words", nargs="*", metavar="REASON", help="why, recorded in the audit log"
)
REASON = arg("--reason", help="the same as REASON")

#: What a keyed CLI command names; in a kernel, the current ``%%transform``'s.
INPUTS = (CLIENT, MAPPING, SOURCE)
#: ``%%transform``'s flags (labextension/src/constants.ts lists them for the editor).
CONTROL = arg(
    "--control",
    action="append",
    type=control_pair,
    metavar="SOURCE.rows=N|SOURCE.COLUMN=TOTAL[+-TOL]",
    help="a control total the client sent, checked against the source as read (repeatable)",
)
TRANSFORM_FLAGS = (
    CLIENT, MAPPING, SOURCE, OUTPUT_DIR, FORMAT, PLATFORM, REPLAY, REVIEWER, CONTROL
)  # fmt: skip
#: ``%%transform_run``'s: the guard line of a materialised cell.
TRANSFORM_RUN_FLAGS = (
    CLIENT,
    MAPPING,
    arg("--key", required=True, help="the approved cache key"),
    arg("--code-sha256", required=True, help="sha256 of the approved code"),
    PLATFORM,
    arg("--again", action="store_true", help="run even if this kernel already ran it"),
)


@dataclass(frozen=True)
class Command:
    """A command of the CLI (``dataeng-magics NAME``) and/or of a kernel
    (``%transform NAME``), with the same arguments in both."""

    name: str
    help: str
    args: tuple[Arg, ...] = ()
    description: str = ""
    #: The CLI names the inputs (``INPUTS``); a kernel uses its current session's.
    keyed: bool = False
    #: Only the CLI's: a kernel has these from its session and settings.
    cli_only: tuple[Arg, ...] = ()
    fronts: tuple[Front, ...] = ("cli", "kernel")
    #: Arguments that only go together: returns what is wrong, or None.
    check: Callable[[argparse.Namespace], str | None] | None = None

    def arguments(self, front: Front) -> tuple[Arg, ...]:
        if front == "kernel":
            return self.args
        return (*(INPUTS if self.keyed else ()), *self.args, *self.cli_only, HOME)


def _needs_reason(args: argparse.Namespace) -> str | None:
    return None if reason(args) else "a rejection needs a reason: REASON or --reason"


def _cache_check(args: argparse.Namespace) -> str | None:
    if args.action != "list" and not args.key:
        return f"cache {args.action} needs a KEY (or a unique prefix of 8+ characters)"
    if args.reason_words and args.action not in ("revoke", "invalidate"):
        return f"unexpected words after KEY: {' '.join(args.reason_words)}"
    return None


_ONE_CLIENT = "only this client (any case)"


def jobs_count(text: str) -> int:
    """``--jobs N`` or ``auto`` (what the machine can take: ``batches.default_jobs``)."""
    if text == "auto":
        return 0
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of 1 or more, or auto, got {text!r}")
    return int(text)


JOBS = arg(
    "--jobs",
    type=jobs_count,
    default="auto",
    metavar="N",
    help="clients at once (auto: one per core, fewer if memory is short)",
)


def _batch_check(args: argparse.Namespace) -> str | None:
    return None if args.manifest or args.resume else "batch needs --manifest (or --resume ID)"


COMMANDS = (
    Command(
        "draft",
        "draft a plan and print it with its cache key",
        (
            arg("--notes", default="", help="plain-English notes for the planner"),
            arg(
                "--force",
                action="store_true",
                help="start again from the workbook: replace an existing draft or approval "
                "(an approval is revoked, and audited)",
            ),
            PLANNER,
        ),
        "Draft a plan from the mapping and the first rows of each source, and print it as "
        "pseudocode with its cache key. An existing draft or approval is shown, not "
        "replaced; a revoked plan reopens as a draft with its revisions. (In a notebook, "
        "a %%transform cell drafts.)",
        keyed=True,
        fronts=("cli",),
    ),
    Command(
        "revise",
        "revise the draft with feedback ('COL: rule', 'filter: cond')",
        (
            arg(
                "feedback",
                nargs="+",
                help="'COLUMN: rule', 'filter: condition' or 'drop filters'",
            ),
        ),
        "Revise the current plan with feedback, one instruction per line. Changing an "
        "approved plan revokes its approval: it must be approved again.",
        keyed=True,
        cli_only=(PLANNER,),
    ),
    Command(
        "approve",
        "approve the draft (recorded in the audit log)",
        (
            REVIEWER,
            arg(
                "--anyway",
                metavar="REASON",
                help="approve although the last preview failed checks; why (audited)",
            ),
        ),
        "Approve the current plan and its compiled code (by hash), recorded in the audit "
        "log. A plan that is already approved stays as it is; nothing is recorded. After "
        "a preview that failed checks, approving needs --anyway REASON.",
        keyed=True,
    ),
    Command(
        "reject",
        "reject the draft with a reason",
        (REASON_WORDS, REVIEWER, REASON),
        keyed=True,
        check=_needs_reason,
    ),
    Command(
        "run",
        "run the approved plan, write and validate each target table",
        (OUTPUT_DIR, FORMAT, PLATFORM, CONTROL),
        "Run the approved code (never re-planned) into OUTPUT_DIR/_runs/<RUN_ID>/, validate "
        "it (the plan's checks, row accounting and any --control totals), and publish each "
        "target table at OUTPUT_DIR/<TABLE>/ only if the whole run passed. Exit 3 if there "
        "is no approval, 4 if validation failed (the previous output is untouched), 5 if "
        "the run fails.",
        keyed=True,
        cli_only=(JSON,),
    ),
    Command(
        "materialise",
        "insert the approved code as a cell below",
        (OUTPUT_DIR,),
        fronts=("kernel",),
    ),
    Command(
        "preview",
        "the plan applied to the sample rows, with its checks",
        fronts=("kernel",),
    ),
    Command("plan", "the current plan as pseudocode", fronts=("kernel",)),
    Command("code", "the compiled code of the current plan", fronts=("kernel",)),
    Command(
        "demo",
        "onboard the bundled example client end to end",
        (
            arg("--client", default="NORTHWIND", help="client id for the example"),
            arg("--mapping", help=argparse.SUPPRESS),
            arg("--output-dir", default="out", help="folder for the target tables"),
            REVIEWER,
        ),
        "Draft, approve and run the bundled example client (example_notebooks/data/"
        "northwind/) on local Spark, printing each step's command.",
        fronts=("cli",),
    ),
    Command(
        "replay",
        "run a notebook with papermill in replay mode, once per --client",
        (
            arg("notebook", help="the template notebook (with a 'parameters' cell)"),
            arg(
                "--client",
                action="append",
                required=True,
                help="client id, passed as the 'client' parameter (repeat for a batch)",
            ),
            arg(
                "-p",
                "--parameter",
                nargs=2,
                action="append",
                metavar=("NAME", "VALUE"),
                help="another notebook parameter (repeatable)",
            ),
            arg("--output-notebooks", help="folder for executed notebooks (default replayed/)"),
            arg("--kernel", help="kernel name (default: the notebook's)"),
            JOBS,
        ),
        "Batch re-runs: each client's approved plan runs with no LLM and no widgets; a "
        "client without an approved plan fails with exit code 3 and runs nothing. All "
        "notebooks share one Spark: locally a Spark Connect server started for the replay "
        "(and stopped after it), remotely the configured endpoint or one Livy session.",
        fronts=("cli",),
    ),
    Command(
        "batch",
        "run many clients' approved plans from a manifest, on one Spark session",
        (
            arg(
                "--manifest",
                help="CSV or YAML: client, mapping, output_dir, source.NAME, "
                "control.SOURCE.rows, control.SOURCE.COLUMN",
            ),
            JOBS,
            arg(
                "--resume",
                metavar="BATCH_ID",
                help="re-run only the clients that did not succeed in that batch",
            ),
            arg("--report", metavar="FILE", help="also write the end table: .json, .csv or .html"),
        ),
        "Each manifest row replays that client's approved plan as `run` does, in one "
        "process on one Spark session, clients side by side. A client's failure is its "
        "own; the exit code is the worst client's. The batch id is recorded in the store "
        "and the audit log.",
        fronts=("cli",),
        check=_batch_check,
    ),
    Command(
        "cache",
        "list, show or revoke cached plans",
        (
            # `invalidate` is the old name of `revoke`: accepted, not offered.
            arg(
                "action",
                nargs="?",
                default="list",
                choices=["list", "show", "revoke", "invalidate"],
                metavar="{list,show,revoke}",
                help="what to do (default: list)",
            ),
            arg("key", nargs="?", help="with show, revoke: a key or a unique prefix (8+)"),
            arg(
                "reason_words",
                nargs="*",
                metavar="REASON",
                help="with revoke: why, recorded in the audit log",
            ),
            arg("--client", help=f"with list: {_ONE_CLIENT}"),
            arg("--code", action="store_true", help="with show: print the code too"),
            arg(
                "--outdated",
                action="store_true",
                help="with list: approved entries the current compiler would compile differently",
            ),
            arg("--reason", help="with revoke: the same as REASON"),
        ),
        "List the cached plans, show one (by key or a unique prefix of 8+ characters), or "
        "revoke one so replays need a new approval (recorded in the audit log).",
        check=_cache_check,
    ),
    Command(
        "audit",
        "verify or show the audit log",
        (
            arg(
                "action",
                nargs="?",
                default="show",
                choices=["verify", "show"],
                help="what to do (default: show)",
            ),
            arg("--client", help=f"with show: {_ONE_CLIENT}"),
            arg("--key", help="with show: only this key, or a unique prefix (8+)"),
            arg(
                "--limit",
                type=int,
                default=50,
                metavar="N",
                help="with show: the latest N records",
            ),
        ),
        "verify: check the audit log's hash chain and name the first edited line (exit "
        "1). show: the latest records, optionally for one client or key.",
    ),
    Command(
        "stats",
        "cache hit rate, tokens, time from draft to approval, runs and outcomes",
        (arg("--client", help=_ONE_CLIENT),),
        cli_only=(JSON,),
    ),
    Command(
        "store",
        "the store's backend: info, upgrade its schema, migrate it, the grants it needs",
        (
            arg(
                "action",
                nargs="?",
                default="info",
                choices=["info", "upgrade", "migrate", "grants"],
                help="what to do (default: info)",
            ),
            arg(
                "--url",
                help="with upgrade: a database URL whose user may create tables (default: "
                "the store_url setting)",
            ),
            arg("--to", metavar="URL", help="with migrate: the new, empty store"),
            arg(
                "--role",
                default="dataeng_magics",
                help="with grants: the runtime user (default: dataeng_magics)",
            ),
        ),
        "info: backend, schema version, rows, runs in progress, audit chain. upgrade: "
        "create or migrate the schema (PostgreSQL: run it with a privileged URL). migrate "
        "--to URL: copy every entry, run and the whole audit chain into an empty store and "
        "verify the chain there. grants: the SQL that gives the runtime user what it needs.",
        check=lambda args: (
            "store migrate needs --to URL" if args.action == "migrate" and not args.to else None
        ),
    ),
    Command("config", "the settings (%transform_config name=value sets them)", fronts=("kernel",)),
    Command(
        "evidence",
        "a run's evidence record (run id or key), or its printable HTML page",
        (
            arg(
                "target",
                nargs="?",
                metavar="RUN_ID|KEY",
                help="a run id or a key (8+ characters; in a kernel, default: the current key)",
            ),
            arg("--html", metavar="FILE", help="write the one-page HTML an auditor files"),
            arg("--json", action="store_true", help="print the record as JSON"),
        ),
        "The evidence of a run: hashes, approval, input files, row accounting, every check "
        "with its counts and examples, timings, platform, and the audit records that open "
        "and close it. A key gives its latest run.",
    ),
    Command(
        "export-test",
        "write a self-contained pytest module for the approved transformation",
        (
            arg(
                "target",
                nargs="?",
                metavar="KEY",
                help="the approved key (8+ characters; in a kernel, default: the current key)",
            ),
            arg("--output", required=True, metavar="FILE", help="e.g. tests/test_<client>.py"),
        ),
        "Write a pytest module holding the 100-row samples, the output the approved code "
        "computes from them and the code's hash, for a client's own CI with local PySpark: "
        "it fails if the approved code or Spark's behaviour changes.",
        cli_only=(SOURCE,),
    ),
)

#: ``%transform``'s shorthands: the first word stands for these words.
SHORTHANDS: dict[str, tuple[str, ...]] = {
    "list": ("cache", "list"),
    "show": ("cache", "show", "--code"),
    "revoke": ("cache", "revoke"),
    "invalidate": ("cache", "invalidate"),
    "verify": ("audit", "verify"),
    "materialize": ("materialise",),
}


def commands(front: Front) -> dict[str, Command]:
    """The commands ``front`` has, by name."""
    return {c.name: c for c in COMMANDS if front in c.fronts}


class HelpFormatter(argparse.HelpFormatter):
    """An option's help ends with its default when it has one worth saying (not None,
    not a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        default = action.default
        if (
            text
            and text != argparse.SUPPRESS
            and "%(default)" not in text
            and action.option_strings
            and default not in (None, argparse.SUPPRESS)
            and default is not False
        ):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse with three additions: positionals may follow options (``cache show
    --code KEY``), an unknown option names the closest known one, and a command's
    ``check`` runs after parsing. Front ends call ``parse``."""

    check: Callable[[argparse.Namespace], str | None] | None = None
    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        """A command's words in any order: argparse's intermixed parsing, which calls
        back here for each of its two passes (a parser of subcommands cannot intermix)."""
        if self._intermixing or self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return super().parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def add_command(self, command: Command, front: Front) -> None:
        for spec in command.arguments(front):
            spec.add_to(self)
        self.check = command.check

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(argv)
        parser = self._chosen(parsed)
        if extras:
            parser.error(unrecognized(extras, parser))
        problem = parser.check(parsed) if parser.check else None
        if problem:
            parser.error(problem)
        return parsed

    def _chosen(self, parsed: argparse.Namespace) -> Parser:
        """The (sub)command's parser that ``parsed`` went through."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                sub = action.choices.get(getattr(parsed, action.dest, None) or "")
                if isinstance(sub, Parser):
                    return sub._chosen(parsed)
        return self


def unrecognized(extras: Sequence[str], parser: argparse.ArgumentParser) -> str:
    """argparse's message for words no argument took, naming the closest known options."""
    known = [name for action in parser._actions for name in action.option_strings]
    guesses = [
        match[0]
        for word in extras
        if word.startswith("-")
        for match in [difflib.get_close_matches(word.split("=")[0], known, n=1)]
        if match
    ]
    message = f"unrecognized arguments: {' '.join(extras)}"
    return f"{message}; did you mean {' or '.join(guesses)}?" if guesses else message
