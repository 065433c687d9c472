"""``dataeng-magics``: the whole workflow from a terminal, on the same store and audit log
as the notebook. ``dataeng-magics --help`` lists the commands and the exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dataeng_magics import __version__
from dataeng_magics.display import audit_table, entries_table, text_table
from dataeng_magics.errors import DataEngMagicsError, ValidationFailed

EXIT_CODES = """\
exit codes:
  0  success (also a step that changed nothing, such as approving an approved plan)
  1  audit verify: the audit log is broken (the first bad line is named)
  2  bad input, or a plan that cannot be approved (one line naming file, sheet, row, column)
  3  approval required: no approved plan for these inputs; nothing ran
  4  the output was written but failed validation
  5  execution failed (nothing recorded as a success)
"""

EXAMPLE_MAPPING = (
    Path(__file__).resolve().parent.parent
    / "example_notebooks"
    / "data"
    / "northwind"
    / "northwind.xlsx"
)


def _source_pair(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name.strip(), path.strip()


def _settings(args: argparse.Namespace) -> Any:
    from dataeng_magics.config import load_settings

    return load_settings(
        home=getattr(args, "home", None), mode="replay", planner=getattr(args, "planner", None)
    )


def _session(args: argparse.Namespace) -> Any:
    from dataeng_magics.workflow import TransformRequest, TransformSession

    request = TransformRequest(
        client=args.client,
        mapping=Path(args.mapping),
        sources=dict(args.source or []),
        output_dir=getattr(args, "output_dir", None),
        output_format=getattr(args, "format", None),
        platform=getattr(args, "platform", None),
        notes=getattr(args, "notes", "") or "",
    )
    return TransformSession(request, _settings(args))


def _print_entry(entry: Any) -> None:
    print(entry.pseudocode.rstrip())
    print()
    status = entry.status
    if entry.status == "approved":
        status += f" by {entry.reviewer} at {entry.approved_at:%Y-%m-%d %H:%M} UTC"
    print(f"key: {entry.key}")
    print(f"status: {status}; runs: {entry.runs}")


def cmd_draft(args: argparse.Namespace) -> int:
    session = _session(args)
    entry = session.draft(force=args.force)
    _print_entry(entry)
    unresolved = session.plan_of(entry).unresolved()
    if unresolved:
        print(f"{len(unresolved)} unresolved step(s): revise before approving.")
    return 0


def cmd_revise(args: argparse.Namespace) -> int:
    entry, revision = _session(args).revise(args.feedback)
    print(revision.reply)
    if revision.revoked:
        print(revision.revoked)
    print()
    _print_entry(entry)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    print(_session(args).approve(args.reviewer).to_text())
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    entry = _session(args).reject(args.reviewer, args.reason)
    print(f"rejected key {entry.key}: {args.reason}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    summary = _session(args).run()
    print(summary.to_text())
    if args.json:
        print(json.dumps(summary.to_dict(), default=str))
    if not summary.report.passed:
        raise ValidationFailed(
            f"output failed validation: {len(summary.report.failures)} check(s) failed",
            hint="The output was written; see the failures above and revise the plan.",
        )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The bundled example client, end to end: draft, approve, run, validate."""
    mapping = Path(args.mapping or EXAMPLE_MAPPING)
    base = ["--client", args.client, "--mapping", str(mapping)]
    home = ["--home", args.home] if args.home else []
    steps = [
        ("1/3 draft", ["draft", *base, *home]),
        ("2/3 approve", ["approve", *base, *home, "--reviewer", args.reviewer]),
        ("3/3 run", ["run", *base, *home, "--output-dir", args.output_dir]),
    ]
    for title, argv in steps:
        print(f"\n=== {title}: dataeng-magics {' '.join(argv)}")
        sys.stdout.flush()
        code = main(argv)
        if code:
            return code
    return 0


def _param_value(text: str) -> Any:
    """``-p n 3`` is an int, ``-p x 0.5`` a float, ``-p flag true`` a bool, else text."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def cmd_replay(args: argparse.Namespace) -> int:
    """Run a notebook through papermill in replay mode, once per client."""
    import os

    from dataeng_magics.errors import MissingDependency

    try:
        import papermill
    except ImportError:
        raise MissingDependency("papermill", "notebook", "replaying notebooks") from None
    from dataeng_magics.display import SUMMARY_MIME

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise DataEngMagicsError("notebook does not exist", file=str(notebook))
    out_dir = Path(args.output_notebooks or "replayed")
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {name: _param_value(value) for name, value in args.parameter or []}
    os.environ["DATAENG_MAGICS_MODE"] = "replay"  # the kernel inherits it: no widgets, no LLM
    if args.home:
        os.environ["DATAENG_MAGICS_HOME"] = str(Path(args.home).resolve())
    worst = 0
    rows = []
    for client in args.client:
        output = out_dir / f"{notebook.stem}-{client}.ipynb"
        status, code = "succeeded", 0
        try:
            papermill.execute_notebook(
                str(notebook),
                str(output),
                parameters={"client": client, **extra},
                kernel_name=args.kernel,
                progress_bar=False,
                cwd=str(notebook.parent),
            )
        except Exception as exc:  # papermill's or nbclient's cell error: the notebook failed
            code, status = _failure(output, exc)
        summaries = _summaries(output, SUMMARY_MIME)
        rows.append(
            {
                "client": client,
                "result": status,
                "rows_in": sum(s["rows_in"] for s in summaries),
                "rows_out": sum(s["rows_out"] for s in summaries),
                "checks_failed": sum(s["checks_failed"] for s in summaries),
                "code": ", ".join(s["code_sha256"][:12] for s in summaries),
                "notebook": str(output),
            }
        )
        worst = max(worst, code)
    print(
        text_table(
            rows, ["client", "result", "rows_in", "rows_out", "checks_failed", "code", "notebook"]
        )
    )
    return worst


def _outputs(notebook: Path) -> list[dict[str, Any]]:
    if not notebook.is_file():
        return []
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    return [out for cell in cells for out in cell.get("outputs", [])]


def _failure(notebook: Path, exc: Exception) -> tuple[int, str]:
    """Exit code and one line for a failed replay, from what the notebook recorded."""
    texts = [str(exc)]
    for out in _outputs(notebook):
        texts.append(f"{out.get('ename', '')}: {out.get('evalue', '')}")
        texts.append(str(out.get("text", "")))
    ours = [
        line for t in texts for line in t.splitlines() if "Error: " in line or "Required" in line
    ]
    line = next((x for x in ours if "ApprovalRequired" in x or "ValidationFailed" in x), None)
    line = line or (ours[0] if ours else type(exc).__name__)
    code = 3 if "ApprovalRequired" in line else 4 if "ValidationFailed" in line else 5
    return code, " ".join(line.split())[:300]


def _summaries(notebook: Path, mime: str) -> list[dict[str, Any]]:
    """The run summaries an executed notebook recorded (one per transformation run)."""
    return [out["data"][mime] for out in _outputs(notebook) if mime in out.get("data", {})]


def cmd_cache(args: argparse.Namespace) -> int:
    from dataeng_magics.state.store import Store

    settings = _settings(args)
    store = Store(settings.store_path)
    if args.action == "list":
        print(entries_table(store.list(args.client), args.client))
        return 0
    if not args.key:
        raise DataEngMagicsError(f"cache {args.action} needs a KEY", hint="See `cache list`.")
    key = store.resolve(args.key)
    if args.action == "show":
        entry = store.get(key)
        assert entry is not None
        _print_entry(entry)
        print(f"plan sha256: {entry.plan_sha256}\ncode sha256: {entry.code_sha256 or '-'}")
        if args.code and entry.code:
            print("\n" + entry.code)
        return 0
    from dataeng_magics.workflow import revoke

    if args.action == "invalidate":
        print("note: `cache invalidate` is now `cache revoke`", file=sys.stderr)
    if not (args.reason or "").strip():
        raise DataEngMagicsError(
            f"cache {args.action} needs --reason", hint='Say why: --reason "mapping v4 arrived".'
        )
    entry = revoke(settings, key, reason=args.reason)
    print(f"revoked {entry.key}: replays now need a new approval")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from dataeng_magics.state.audit import AuditLog
    from dataeng_magics.state.stats import collect, to_text
    from dataeng_magics.state.store import Store

    settings = _settings(args)
    figures = collect(Store(settings.store_path), AuditLog(settings.audit_path), args.client)
    print(json.dumps(figures, default=str) if args.json else to_text(figures))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from dataeng_magics.state.audit import AuditLog
    from dataeng_magics.workflow import audit_events

    settings = _settings(args)
    log = AuditLog(settings.audit_path)
    if args.action == "verify":
        result = log.verify()
        if result.ok:
            print(f"audit log intact: {result.count} records ({log.path})")
            return 0
        print(
            f"audit log BROKEN at line {result.first_bad_line} (seq {result.first_bad_seq}): "
            f"{result.reason}",
            file=sys.stderr,
        )
        return 1
    events = audit_events(settings, client=args.client, key=args.key)
    print(audit_table(events[-args.limit :], args.client, args.key))
    return 0


class _HelpFormatter(argparse.HelpFormatter):
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


class _TopHelpFormatter(argparse.RawDescriptionHelpFormatter, _HelpFormatter):
    """The top-level help: its epilog (the exit codes) keeps its lines."""


def build_parser() -> argparse.ArgumentParser:
    from dataeng_magics.config import current_user

    parser = argparse.ArgumentParser(
        prog="dataeng-magics",
        description="Onboard client data: mapping -> approved plan -> PySpark.",
        epilog=EXIT_CODES,
        formatter_class=_TopHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help: str, description: str = ""
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name, help=help, description=description or help, formatter_class=_HelpFormatter
        )
        p.set_defaults(func=func)
        return p

    def home(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--home", help="state directory: store and audit log (default $DATAENG_MAGICS_HOME)"
        )

    def keyed(
        name: str, func: Callable[[argparse.Namespace], int], help: str, description: str = ""
    ) -> argparse.ArgumentParser:
        p = command(name, func, help, description)
        p.add_argument("--client", required=True, help="client id, part of the cache key")
        p.add_argument("--mapping", required=True, help="mapping workbook (.xlsx or .csv)")
        p.add_argument(
            "--source",
            action="append",
            type=_source_pair,
            metavar="NAME=PATH",
            help="read source NAME from PATH instead (repeatable); the key does not change",
        )
        home(p)
        return p

    planner_help = "offline, openai, azure, openai-compatible (default: setting 'planner')"
    p = keyed(
        "draft",
        cmd_draft,
        "draft a plan and print it with its cache key",
        "Draft a plan from the mapping and the first rows of each source, and print it as "
        "pseudocode with its cache key. An existing draft or approval is shown, not replaced.",
    )
    p.add_argument("--notes", default="", help="plain-English notes for the planner")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an existing draft or approval (an approval is revoked, and audited)",
    )
    p.add_argument("--planner", help=planner_help)
    p = keyed(
        "revise",
        cmd_revise,
        "revise the draft with feedback ('COL: rule', 'filter: cond')",
        "Revise the current plan with feedback, one instruction per line. Changing an "
        "approved plan revokes its approval: it must be approved again.",
    )
    p.add_argument("feedback", help="'COLUMN: rule', 'filter: condition' or 'drop filters'")
    p.add_argument("--planner", help=planner_help)
    p = keyed(
        "approve",
        cmd_approve,
        "approve the draft (recorded in the audit log)",
        "Approve the current plan and its compiled code (by hash), recorded in the audit "
        "log. A plan that is already approved stays as it is; nothing is recorded.",
    )
    p.add_argument("--reviewer", required=True, help="the name recorded on the approval")
    p = keyed("reject", cmd_reject, "reject the draft with a reason")
    p.add_argument("--reviewer", required=True, help="the name recorded on the rejection")
    p.add_argument("--reason", required=True, help="why, recorded in the audit log")
    p = keyed(
        "run",
        cmd_run,
        "run the approved plan, write and validate each target table",
        "Run the approved code (never re-planned) and write each target table to "
        "OUTPUT_DIR/<TABLE>/, then validate it. Exit 3 if there is no approval, 4 if the "
        "output fails validation, 5 if the run fails.",
    )
    p.add_argument("--output-dir", required=True, help="folder (or URL) for the target tables")
    p.add_argument(
        "--format",
        choices=["parquet", "csv", "delta"],
        help="output format (default: setting 'output_format', parquet)",
    )
    p.add_argument("--platform", help="where to run (default: setting 'platform', local)")
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")

    p = command(
        "demo",
        cmd_demo,
        "onboard the bundled example client end to end",
        "Draft, approve and run the bundled example client (example_notebooks/data/"
        "northwind/) on local Spark, printing each step's command.",
    )
    p.add_argument("--client", default="NORTHWIND", help="client id for the example")
    p.add_argument("--mapping", help=argparse.SUPPRESS)
    p.add_argument("--output-dir", default="out", help="folder for the target tables")
    p.add_argument("--reviewer", default=current_user(), help="the name recorded on the approval")
    home(p)

    p = command(
        "replay",
        cmd_replay,
        "run a notebook with papermill in replay mode, once per --client",
        "Batch re-runs: each client's approved plan runs with no LLM and no "
        "widgets; a client without an approved plan fails with exit code 3 and runs nothing.",
    )
    p.add_argument("notebook", help="the template notebook (with a 'parameters' cell)")
    p.add_argument(
        "--client",
        action="append",
        required=True,
        help="client id, passed as the 'client' parameter (repeat for a batch)",
    )
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="another notebook parameter (repeatable)",
    )
    p.add_argument("--output-notebooks", help="folder for executed notebooks (default replayed/)")
    p.add_argument("--kernel", help="kernel name (default: the notebook's)")
    home(p)

    p = command(
        "cache",
        cmd_cache,
        "list, show or revoke cached plans",
        "List the cached plans, show one (by key or a unique prefix of 8+ characters), or "
        "revoke one so replays need a new approval (recorded in the audit log).",
    )
    # `invalidate` is the old name of `revoke`: accepted, not offered.
    p.add_argument(
        "action",
        choices=["list", "show", "revoke", "invalidate"],
        metavar="{list,show,revoke}",
        help="what to do",
    )
    p.add_argument("key", nargs="?", help="with show, revoke: a key or a unique prefix (8+)")
    p.add_argument("--client", help="with list: only this client (any case)")
    p.add_argument("--code", action="store_true", help="with show: print the code too")
    p.add_argument("--reason", help="with revoke (required): why, recorded in the audit log")
    home(p)

    p = command(
        "audit",
        cmd_audit,
        "verify or show the audit log",
        "verify: check the audit log's hash chain and name the first edited line (exit 1). "
        "show: the latest records, optionally for one client or key.",
    )
    p.add_argument("action", choices=["verify", "show"], help="what to do")
    p.add_argument("--client", help="with show: only this client (any case)")
    p.add_argument("--key", help="with show: only this key, or a unique prefix (8+)")
    p.add_argument("--limit", type=int, default=50, help="with show: the latest N records")
    home(p)

    p = command(
        "stats",
        cmd_stats,
        "cache hit rate, tokens, time from draft to approval, runs and outcomes",
    )
    p.add_argument("--client", help="only this client (any case)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    home(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except DataEngMagicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
