"""``dataeng-magics``: the whole workflow from a terminal, on the same store and audit log
as the notebook. ``dataeng-magics --help`` lists the commands and the exit codes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataeng_magics import __version__
from dataeng_magics.commands import HelpFormatter, Parser, commands, reason
from dataeng_magics.display import audit_table, entries_table, outdated_report, text_table
from dataeng_magics.errors import DataEngMagicsError, ExecutionError, ValidationFailed

if TYPE_CHECKING:
    from dataeng_magics.config import Mode

EXIT_CODES = """\
exit codes:
  0  success (also a step that changed nothing, such as approving an approved plan)
  1  audit verify: the audit log is broken (the first bad line is named)
  2  bad input, or a plan that cannot be approved (one line naming file, sheet, row, column)
  3  approval required: no approved plan for these inputs; nothing ran
  4  validation failed, the previous output is untouched
  5  execution failed (nothing recorded as a success)
  130  interrupted (Ctrl-C): what the command started (a Spark Connect server) is stopped
"""

EXAMPLE_MAPPING = (
    Path(__file__).resolve().parent.parent
    / "example_notebooks"
    / "data"
    / "northwind"
    / "northwind.xlsx"
)


def _settings(args: argparse.Namespace) -> Any:
    from dataeng_magics.config import load_settings

    return load_settings(home=getattr(args, "home", None), planner=getattr(args, "planner", None))


def _session(args: argparse.Namespace, mode: Mode) -> Any:
    """A session for a keyed command: ``replay`` runs, ``interactive`` reviews."""
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
    return TransformSession(request, _settings(args), mode=mode)


def _print_entry(entry: Any) -> None:
    print(entry.pseudocode.rstrip())
    print()
    status = entry.status
    if entry.status == "approved":
        status += f" by {entry.reviewer} at {entry.approved_at:%Y-%m-%d %H:%M} UTC"
    print(f"key: {entry.key}")
    print(f"status: {status}; runs: {entry.runs}")


def _reviewer(args: argparse.Namespace) -> str:
    from dataeng_magics.config import current_user

    return str(args.reviewer or current_user())


def cmd_draft(args: argparse.Namespace) -> int:
    session = _session(args, "interactive")
    entry = session.draft(force=args.force)
    reopened = session.reopened(entry)
    if reopened is not None:
        print(f"{reopened['text']} (draft --force starts again from the workbook)\n")
    _print_entry(entry)
    unresolved = session.plan_of(entry).unresolved()
    if unresolved:
        print(f"{len(unresolved)} unresolved step(s): revise before approving.")
    failures = session.last_failures(entry.key)
    if failures:  # what the last run found, to answer with `revise`
        print("\nthe last run's checks:\n" + "\n".join(f"  {line}" for line in failures))
    return 0


def cmd_revise(args: argparse.Namespace) -> int:
    entry, revision = _session(args, "interactive").revise(" ".join(args.feedback))
    print(revision.reply)
    if revision.revoked:
        print(revision.revoked)
    print()
    _print_entry(entry)
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    session = _session(args, "interactive")
    print(session.approve(_reviewer(args), despite=args.anyway).to_text())
    return 0


def cmd_reject(args: argparse.Namespace) -> int:
    why = reason(args)
    entry = _session(args, "interactive").reject(_reviewer(args), why)
    print(f"rejected key {entry.key}: {why}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        summary = _session(args, "replay").run(controls=dict(args.control or []))
    except ValidationFailed as exc:  # exit 4, after the summary of what was written
        _print_run(exc.summary, args.json)
        raise
    _print_run(summary, args.json)
    return 0


def _print_run(summary: Any, as_json: bool) -> None:
    print(summary.to_text())
    if as_json:
        print(json.dumps(summary.to_dict(), default=str))


def cmd_demo(args: argparse.Namespace) -> int:
    """The bundled example client, end to end: draft, approve, run, validate."""
    mapping = Path(args.mapping or EXAMPLE_MAPPING)
    base = ["--client", args.client, "--mapping", str(mapping)]
    home = ["--home", args.home] if args.home else []
    steps = [
        ("1/3 draft", ["draft", *base, *home]),
        ("2/3 approve", ["approve", *base, *home, "--reviewer", _reviewer(args)]),
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
    from dataeng_magics.errors import MissingDependency

    try:
        import papermill
    except ImportError:
        raise MissingDependency("papermill", "notebook", "replaying notebooks") from None
    from dataeng_magics.batches import Progress, default_jobs, parallel, shared_spark
    from dataeng_magics.display import SUMMARY_MIME

    notebook = Path(args.notebook)
    if not notebook.is_file():
        raise DataEngMagicsError("notebook does not exist", file=str(notebook))
    out_dir = Path(args.output_notebooks or "replayed")
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {name: _param_value(value) for name, value in args.parameter or []}
    # The kernels inherit these: replay mode (no widgets, no planner) and the state folder.
    env = {"DATAENG_MAGICS_MODE": "replay"}
    if args.home:
        env["DATAENG_MAGICS_HOME"] = str(Path(args.home).resolve())
    progress = Progress(len(args.client), "notebooks")

    def replay_one(client: str) -> dict[str, Any]:
        output = out_dir / f"{notebook.stem}-{client}.ipynb"
        status, code = "succeeded", 0
        progress.started()
        started = time.perf_counter()
        try:
            papermill.execute_notebook(
                str(notebook.resolve()),
                str(output.resolve()),
                parameters={"client": client, **extra},
                kernel_name=args.kernel,
                progress_bar=False,
                # The kernel's folder, given to nbclient: papermill's cwd= is os.chdir,
                # one folder for the whole process, which threads would fight over.
                resources={"metadata": {"path": str(notebook.resolve().parent)}},
            )
        except Exception as exc:  # papermill's or nbclient's cell error: the notebook failed
            code, status = _failure(output, exc)
        summaries = _records(output, SUMMARY_MIME)
        progress.finished(client, status if code == 0 else f"failed (exit {code})",
                          time.perf_counter() - started, "" if code == 0 else status)  # fmt: skip
        return {
            "client": client,
            "result": status,
            "rows_in": sum(s["rows_in"] for s in summaries),
            "rows_out": sum(s["rows_out"] for s in summaries),
            "checks_failed": sum(s["checks_failed"] for s in summaries),
            "code": ", ".join(s["code_sha256"][:12] for s in summaries),
            "notebook": str(output),
            "exit": code,
        }

    # One Spark for every kernel, stopped however the replay ends (Ctrl-C too).
    jobs = args.jobs or default_jobs(per_job_mb=500)  # a kernel each
    with (
        _sigterm_as_interrupt(),
        shared_spark(_settings(args)) as spark_env,
        _environ({**env, **spark_env}),
    ):
        try:
            done = {r["client"]: r for r in parallel(args.client, replay_one, jobs)}
        finally:
            progress.close()
    rows = [done[client] for client in args.client]
    print(
        text_table(
            rows, ["client", "result", "rows_in", "rows_out", "checks_failed", "code", "notebook"]
        )
    )
    return int(max(r["exit"] for r in rows))


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a replay the way Ctrl-C does, so what it started is stopped."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_batch(args: argparse.Namespace) -> int:
    from dataeng_magics.batches import batch

    outcome = batch(args.manifest, jobs=args.jobs or None, resume=args.resume,
                    report=args.report, settings=_settings(args))  # fmt: skip
    print(repr(outcome))
    return outcome.exit_code


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` while a kernel starts; restored after, so a program
    calling ``main()`` is not left in replay mode."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _outputs(notebook: Path) -> list[dict[str, Any]]:
    if not notebook.is_file():
        return []
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    return [out for cell in cells for out in cell.get("outputs", [])]


def _failure(notebook: Path, exc: Exception) -> tuple[int, str]:
    """Exit code and one line for a failed replay, from the error the notebook recorded
    as data (type, exit code, fields), never from its wording. A failure that recorded
    none (not one of ours, or the kernel died) counts as an execution failure."""
    from dataeng_magics.display import ERROR_MIME

    errors = _records(notebook, ERROR_MIME)
    if errors:
        error = errors[-1]
        code, line = int(error["exit_code"]), f"{error['error']}: {error['message']}"
    else:
        shown = [f"{o['ename']}: {o['evalue']}" for o in _outputs(notebook) if "ename" in o]
        code, line = ExecutionError.exit_code, (shown[-1] if shown else type(exc).__name__)
    return code, " ".join(line.split())[:300]


def _records(notebook: Path, mime: str) -> list[dict[str, Any]]:
    """The records of one kind an executed notebook holds (run summaries, errors)."""
    return [out["data"][mime] for out in _outputs(notebook) if mime in out.get("data", {})]


def cmd_cache(args: argparse.Namespace) -> int:
    from dataeng_magics.state.backend import open_store

    settings = _settings(args)
    store = open_store(settings)
    if args.action == "list" and args.outdated:
        from dataeng_magics.workflow import outdated

        print(outdated_report(outdated(store, args.client)))
        return 0
    if args.action == "list":
        found = store.list(args.client)
        print(entries_table(found, args.client, store.run_states(found)))
        return 0
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
    entry = revoke(settings, key, reason=reason(args))
    print(f"revoked {entry.key}: replays now need a new approval")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from dataeng_magics.state.backend import audit_of, open_store
    from dataeng_magics.state.stats import collect, to_text

    store = open_store(_settings(args))
    figures = collect(store, audit_of(store), args.client)
    print(json.dumps(figures, default=str) if args.json else to_text(figures))
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    from dataeng_magics.state.backend import store_command

    print(store_command(_settings(args), args.action, args.url, args.to, args.role))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from dataeng_magics.state.backend import open_audit
    from dataeng_magics.workflow import audit_events

    settings = _settings(args)
    if args.action == "verify":
        log = open_audit(settings)
        result = log.verify()
        print(result.describe(log.where), file=sys.stdout if result.ok else sys.stderr)
        return 0 if result.ok else 1
    events = audit_events(settings, client=args.client, key=args.key)
    print(audit_table(events[-args.limit :], args.client, args.key))
    return 0


def cmd_evidence(args: argparse.Namespace) -> int:
    from dataeng_magics.run import evidence as ev
    from dataeng_magics.workflow import find_evidence

    if not args.target:
        raise DataEngMagicsError("evidence needs a RUN_ID or a KEY (8+ characters)")
    record, closing = find_evidence(_settings(args), args.target)
    if args.html:
        ev.write_page(args.html, record, closing)
        print(f"wrote {args.html}")
    print(json.dumps(record, indent=2) if args.json else ev.to_text(record, closing))
    return 0


def cmd_export_test(args: argparse.Namespace) -> int:
    from dataeng_magics.workflow import session_for_key

    if not args.target:
        raise DataEngMagicsError("export-test needs the approved KEY (8+ characters)")
    session = session_for_key(_settings(args), args.target, dict(args.source or []))
    print(f"wrote {session.export_test(args.output)}")
    return 0


class _TopHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """The top-level help: its epilog (the exit codes) keeps its lines."""


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "draft": cmd_draft,
    "revise": cmd_revise,
    "approve": cmd_approve,
    "reject": cmd_reject,
    "run": cmd_run,
    "demo": cmd_demo,
    "replay": cmd_replay,
    "batch": cmd_batch,
    "cache": cmd_cache,
    "audit": cmd_audit,
    "stats": cmd_stats,
    "store": cmd_store,
    "evidence": cmd_evidence,
    "export-test": cmd_export_test,
}


def build_parser() -> Parser:
    """The CLI's parser: each command as ``commands`` defines it, bound to its handler."""
    parser = Parser(
        prog="dataeng-magics",
        description="Onboard client data: mapping -> approved plan -> PySpark.",
        epilog=EXIT_CODES,
        formatter_class=_TopHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show local Spark's start-up lines and warnings (setting 'verbose')",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in commands("cli").items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.description or command.help,
            formatter_class=HelpFormatter,
        )
        p.add_command(command, "cli")
        p.set_defaults(func=HANDLERS[name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse(argv)
    if args.verbose:  # the setting, for every step of this command and the kernels it starts
        import os

        os.environ["DATAENG_MAGICS_VERBOSE"] = "true"
    try:
        return int(args.func(args))
    except DataEngMagicsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # what the command started is stopped by now (replay, batch)
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
