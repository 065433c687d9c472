"""Many clients in one process on one Spark session: ``dataeng-magics batch --manifest``.

A manifest (CSV or YAML) names each client's mapping, output folder, optional new source
files (``source.NAME``) and control totals (``control.SOURCE.rows``,
``control.SOURCE.COLUMN``). Each row replays that client's approved plan exactly as
``run`` does (same code, checks, store and audit records), in a thread of its own on the
one session, so a client's bad file, failed check or Spark error stays that client's.
The batch has an id, recorded in the store and the audit log; ``resume`` re-runs only
the clients that did not succeed in it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dataeng_magics.display import Table
from dataeng_magics.errors import DataEngMagicsError, ExecutionError, MappingError

if TYPE_CHECKING:
    from dataeng_magics.config import Settings
    from dataeng_magics.run.executors import Executor
    from dataeng_magics.state.audit import AuditLog
    from dataeng_magics.state.store import Store

REQUIRED = ("client", "mapping", "output_dir")
_OPTIONAL = re.compile(r"^(source\.[^.]+|control\.[^.]+\.[^.]+)$")
COLUMNS = ["client", "result", "rows_in", "rows_out", "checks_failed", "seconds", "output"]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ManifestRow:
    """One client of a batch, its paths resolved against the manifest's folder."""

    file: str  # the manifest
    row: int  # the manifest's line (CSV, header = 1) or item number (YAML, from 1)
    client: str
    mapping: Path
    output_dir: str
    sources: dict[str, str] = field(default_factory=dict)
    controls: dict[str, str] = field(default_factory=dict)  # "SOURCE.rows" -> "1000"


@dataclass
class ClientResult:
    """How one client of a batch ended: a row of the end table and of the report."""

    client: str
    result: str  # succeeded, validation_failed, failed, approval_required, bad_input
    exit_code: int
    output: str
    rows_in: int | None = None
    rows_out: int | None = None
    checks_failed: int | None = None
    seconds: float = 0.0
    key: str = ""
    message: str = ""
    evidence: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": round(self.seconds, 2)}


@dataclass
class BatchResult:
    """A finished batch: its id, exit code (the worst client's) and one result per
    client. Shows as the end table in a terminal and in a notebook."""

    batch_id: str
    clients: list[ClientResult]
    seconds: float
    scheduling: str = ""

    @property
    def exit_code(self) -> int:
        return max((c.exit_code for c in self.clients), default=0)

    def table(self) -> Table:
        ok = sum(c.exit_code == 0 for c in self.clients)
        title = (
            f"batch {self.batch_id}: {ok}/{len(self.clients)} succeeded in "
            f"{self.seconds:.1f}s (exit {self.exit_code})"
        )
        return Table([c.to_dict() for c in self.clients], COLUMNS, title)

    def __repr__(self) -> str:
        failed = [f"{c.client}: {c.message}" for c in self.clients if c.exit_code and c.message]
        return "\n".join([repr(self.table()), *failed])

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 2),
            "scheduling": self.scheduling,
            "clients": [c.to_dict() for c in self.clients],
        }


# -- the manifest -----------------------------------------------------------------------


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """The manifest's rows, every error naming the file, row and column."""
    path = Path(path)
    if not path.is_file():
        raise MappingError("the manifest does not exist", file=str(path))
    if path.suffix.lower() in (".yaml", ".yml"):
        items = _yaml_items(path)
    elif path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            items = [(n, dict(r)) for n, r in enumerate(csv.DictReader(f), start=2)]
    else:
        raise MappingError(
            "a manifest is a .csv or .yaml file", file=str(path), hint="Rename or convert it."
        )
    rows = [_row(path, n, item) for n, item in items]
    if not rows:
        raise MappingError("the manifest lists no clients", file=str(path))
    _unique(path, rows, lambda r: r.client.casefold(), "client", "one row per client")
    _unique(path, rows, lambda r: r.output_dir, "output_dir", "each client its own folder")
    return rows


def _yaml_items(path: Path) -> list[tuple[int, dict[str, Any]]]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise MappingError(f"not valid YAML: {problem}", file=str(path)) from None
    if isinstance(data, dict) and "clients" in data:
        data = data["clients"]
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise MappingError(
            "expected a list of clients (mappings with client, mapping, output_dir)",
            file=str(path),
        )
    return [(n, _flatten(item)) for n, item in enumerate(data, start=1)]


def _flatten(item: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{source: {orders: x}}`` as ``{"source.orders": x}``: YAML may nest what CSV dots."""
    flat: dict[str, Any] = {}
    for name, value in item.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _row(path: Path, n: int, item: dict[str, Any]) -> ManifestRow:
    values = {str(k).strip(): "" if v is None else str(v).strip() for k, v in item.items() if k}
    for column in values:
        if column not in REQUIRED and not _OPTIONAL.match(column):
            raise MappingError(
                f"unknown manifest column {column!r}",
                file=str(path), row=n, column=column,
                hint="Columns: client, mapping, output_dir, source.NAME, "
                "control.SOURCE.rows, control.SOURCE.COLUMN.",
            )  # fmt: skip
    for column in REQUIRED:
        if not values.get(column):
            raise MappingError(
                f"{column} is empty" if column in values else f"no {column} column",
                file=str(path), row=n, column=column,
                hint="Every row needs client, mapping and output_dir.",
            )  # fmt: skip
    controls = {}
    for column, value in values.items():
        if column.startswith("control.") and value:
            try:
                Decimal(value.replace(",", ""))
            except InvalidOperation:
                raise MappingError(
                    f"control total {value!r} is not a number",
                    file=str(path), row=n, column=column,
                    hint="Write the expected row count or column sum, e.g. 1000 or 1234.50.",
                ) from None  # fmt: skip
            controls[column.removeprefix("control.")] = value.replace(",", "")
    return ManifestRow(
        file=str(path),
        row=n,
        client=values["client"],
        mapping=Path(_against(path, values["mapping"])),
        output_dir=_against(path, values["output_dir"]),
        sources={
            c.removeprefix("source."): _against(path, v)
            for c, v in values.items()
            if c.startswith("source.") and v
        },
        controls=controls,
    )


def _against(manifest: Path, value: str) -> str:
    """A path as written in the manifest, relative to the manifest's folder; URLs as is."""
    if "://" in value:
        return value
    return str((manifest.parent / Path(value).expanduser()).resolve())


def _unique(path: Path, rows: list[ManifestRow], key: Callable[[ManifestRow], str],
            column: str, rule: str) -> None:  # fmt: skip
    seen: dict[str, ManifestRow] = {}
    for row in rows:
        first = seen.setdefault(key(row), row)
        if first is not row:
            raise MappingError(
                f"{column} {getattr(row, column)!r} is also on row {first.row}",
                file=str(path), row=row.row, column=column, hint=f"A batch needs {rule}.",
            )  # fmt: skip


# -- running ----------------------------------------------------------------------------


def default_jobs(per_job_mb: int = 300) -> int:
    """What the machine can take: one per core, fewer if memory is short (Linux)."""
    cores = os.cpu_count() or 2
    try:
        free_mb = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    except (ValueError, OSError, AttributeError):
        return cores
    return max(1, min(cores, free_mb // per_job_mb))


def parallel(items: Sequence[T], work: Callable[[T], R], jobs: int) -> Iterator[R]:
    """``work`` on each item in up to ``jobs`` daemon threads; results as they finish.

    Daemon threads so Ctrl-C (``KeyboardInterrupt`` in the caller, between results)
    ends the process at once: ``concurrent.futures`` would wait for every running item.
    ``work`` should turn its item's failure into a result; what it raises anyway is
    raised here, in the caller.
    """
    import queue

    todo: queue.SimpleQueue[T] = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    done: queue.SimpleQueue[tuple[R | None, BaseException | None]] = queue.SimpleQueue()

    def worker() -> None:
        while True:
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((work(item), None))
            except BaseException as exc:  # handed to the caller, never lost in a thread
                done.put((None, exc))

    for n in range(max(1, min(jobs, len(items)))):
        threading.Thread(target=worker, name=f"dem-batch-{n}", daemon=True).start()
    for _ in items:
        while True:  # a timeout, so Ctrl-C is seen while waiting
            try:
                result, error = done.get(timeout=0.5)
            except queue.Empty:
                continue
            if error is not None:
                raise error
            yield result  # type: ignore[misc]
            break


class Progress:
    """Across clients: a bar (done, running, failed, ETA) on a terminal or in a notebook
    (tqdm), else one plain line per finished client."""

    def __init__(self, total: int, label: str = "clients", stream: Any = None) -> None:
        self.total, self.done, self.running, self.failed = total, 0, 0, 0
        self.stream = stream or sys.stdout
        self._lock = threading.Lock()
        self.bar: Any = None
        if _watched():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="client", desc=label, dynamic_ncols=True)

    def started(self) -> None:
        with self._lock:
            self.running += 1
            self._show()

    def finished(self, client: str, result: str, seconds: float, detail: str = "") -> None:
        with self._lock:
            self.running -= 1
            self.done += 1
            self.failed += result != "succeeded"
            if self.bar is not None:
                self.bar.update(1)
                self._show()
            else:
                line = f"[{self.done}/{self.total}] {client} {result} in {seconds:.1f}s"
                print(f"{line}{': ' + detail if detail else ''}", file=self.stream, flush=True)

    def _show(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix(running=self.running, failed=self.failed, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _watched() -> bool:
    """A person is watching: a terminal, or a running Jupyter kernel (merely importing
    ipykernel, as a test process may, is not one)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if getattr(shell, "kernel", None) is not None:
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def evidence_link(output_dir: str, run_id: str | None) -> str:
    """The page of a run's evidence record (run/evidence.py writes it beside the output:
    ``<output_dir>/_evidence/<run_id>.html``); none for a client that did not run."""
    if not run_id:
        return ""
    from dataeng_magics.run.evidence import EVIDENCE_DIR

    page = f"{output_dir.rstrip('/')}/{EVIDENCE_DIR}/{run_id}.html"
    return page if "://" in page else Path(page).as_uri()


def batch(
    manifest: str | Path | None = None,
    *,
    jobs: int | None = None,
    resume: str | None = None,
    report: str | Path | None = None,
    settings: Settings | None = None,
    home: str | Path | None = None,
    executor: Executor | None = None,
) -> BatchResult:
    """Run every client of ``manifest`` (or, with ``resume``, of that batch's manifest,
    only the clients that did not succeed in it) on one Spark session."""
    from dataeng_magics.config import load_settings
    from dataeng_magics.state.audit import AuditLog
    from dataeng_magics.state.store import Store

    settings = settings or load_settings(home=str(home) if home else None)
    if report:
        _check_report(Path(report))
    store = Store(settings.store_path)
    audit = AuditLog(settings.audit_path)
    if resume:  # an unknown id is an error before anything runs
        manifest = manifest or store.batch(resume).manifest
    if manifest is None:
        raise MappingError("no manifest", hint="Pass --manifest clients.csv (or --resume ID).")
    rows = read_manifest(manifest)
    batch_id = resume or uuid.uuid4().hex
    done_before = (
        {c.casefold(): run for c, run in store.batch_succeeded(batch_id).items()} if resume else {}
    )
    todo = [r for r in rows if r.client.casefold() not in done_before]
    executor = executor or _shared_executor(settings)
    scheduling = _scheduling(executor)
    manifest_text = str(Path(manifest).resolve())
    store.start_batch(batch_id, manifest_text, len(rows))
    audit.append(
        "batch_start",
        details={"batch_id": batch_id, "manifest": manifest_text, "clients": len(rows),
                 "to_run": len(todo), "resumed": bool(resume), "platform": executor.name,
                 "scheduling": scheduling},
    )  # fmt: skip
    print(f"batch {batch_id}: {len(todo)} of {len(rows)} client(s); {scheduling}", flush=True)
    started = time.perf_counter()
    progress = Progress(len(todo))
    results: dict[str, ClientResult] = {}

    def work(row: ManifestRow) -> ClientResult:
        progress.started()
        result = run_client(row, settings, executor, store, audit, batch_id)
        progress.finished(row.client, result.result, result.seconds, result.message)
        return result

    try:
        for result in parallel(todo, work, jobs or default_jobs()):
            results[result.client.casefold()] = result
    except KeyboardInterrupt:  # the unfinished clients are resumed with --resume
        _cancel(executor)
        audit.append("batch_end", details={"batch_id": batch_id, "interrupted": True})
        raise
    finally:
        progress.close()
    earlier = "succeeded earlier in this batch"
    ordered = [
        results.get(r.client.casefold())
        or ClientResult(r.client, "succeeded", 0, r.output_dir, message=earlier)
        for r in rows
    ]
    for r in ordered:
        r.evidence = r.evidence or evidence_link(r.output, done_before.get(r.client.casefold()))
    outcome = BatchResult(batch_id, ordered, time.perf_counter() - started, scheduling)
    store.end_batch(batch_id, outcome.exit_code)
    counts = Counter(r.result for r in ordered)
    audit.append(
        "batch_end",
        details={"batch_id": batch_id, "exit_code": outcome.exit_code, "results": counts,
                 "seconds": round(outcome.seconds, 2)},
    )  # fmt: skip
    if report:
        write_report(outcome, Path(report))
    return outcome


def _shared_executor(settings: Settings) -> Executor:
    """The one executor (and so the one Spark session) every client of the batch uses,
    started here, once, before the threads (a session must not be started twice)."""
    from dataeng_magics.run.executors import get_executor

    executor = get_executor(settings.platform, settings=settings)
    executor.progress = None  # the batch's progress bar speaks for all clients
    session = getattr(executor, "session", None)
    if callable(session):
        session()
    return executor


def _spark_context(executor: Executor) -> Any:
    """The SparkContext of an executor that has one (local Spark), else None."""
    from dataeng_magics.run.executors.local import LocalExecutor

    return executor.session().sparkContext if isinstance(executor, LocalExecutor) else None


def _scheduling(executor: Executor) -> str:
    context = _spark_context(executor)
    if context is not None and context.getConf().get("spark.scheduler.mode") == "FAIR":
        return "one local Spark session, a FAIR scheduler pool per client"
    if context is not None:  # a session started elsewhere, without FAIR scheduling
        return "one local Spark session, its jobs first come first served (FIFO)"
    if executor.name == "connect":
        return (
            "one Spark Connect session; its operations are tagged per client and share "
            "the server's scheduler (a Connect session has no SparkContext for pools)"
        )
    return f"one {executor.name} session shared by all clients"


@contextmanager
def _pool(executor: Executor, client: str) -> Iterator[None]:
    """Jobs of this thread in the client's own FAIR pool (pyspark pins each Python thread
    to a JVM thread, so the property is this thread's)."""
    context = _spark_context(executor)
    if context is not None:
        context.setLocalProperty("spark.scheduler.pool", f"client-{client}")
    try:
        yield
    finally:
        if context is not None:
            context.setLocalProperty("spark.scheduler.pool", None)


def _cancel(executor: Executor) -> None:
    """Ctrl-C: stop every Spark job of the batch (the threads die with the process)."""
    context = _spark_context(executor)
    if context is not None:
        context.cancelAllJobs()


def run_client(row: ManifestRow, settings: Settings, executor: Executor, store: Store,
               audit: AuditLog, batch_id: str) -> ClientResult:  # fmt: skip
    """One client, as ``run`` would; its failure, of any kind, is its result only."""
    from dataeng_magics.errors import ValidationFailed
    from dataeng_magics.workflow import TransformRequest, TransformSession

    started = time.perf_counter()
    result = ClientResult(row.client, "failed", ExecutionError.exit_code, row.output_dir)
    try:
        request = TransformRequest(
            client=row.client, mapping=row.mapping, sources=row.sources, output_dir=row.output_dir
        )
        session = TransformSession(request, settings, mode="replay", store=store, audit=audit)
        with _pool(executor, row.client):
            summary = session.run(executor=executor, batch_id=batch_id,
                                  controls=_controls(session, row))  # fmt: skip
        result.result, result.exit_code = "succeeded", 0
    except ValidationFailed as exc:
        summary = exc.summary
        result.result, result.exit_code, result.message = "validation_failed", 4, str(exc)
    except DataEngMagicsError as exc:
        summary = None
        result.exit_code, result.message = exc.exit_code, str(exc)
        result.result = {3: "approval_required", 2: "bad_input"}.get(exc.exit_code, "failed")
    except Exception as exc:  # isolation: a surprise fails this client only
        from dataeng_magics.redact import redact

        summary = None
        result.message = redact(f"{type(exc).__name__}: {' '.join(str(exc).split())}")[:300]
    if summary is not None:
        facts = summary.to_dict()
        result.rows_in, result.rows_out = facts["rows_in"], facts["rows_out"]
        result.checks_failed, result.key = facts["checks_failed"], summary.key
        result.evidence = evidence_link(row.output_dir, summary.run_id)
    result.seconds = time.perf_counter() - started
    return result


def _controls(session: Any, row: ManifestRow) -> dict[str, str]:
    """A row's control totals for ``TransformSession.run(controls=...)``, which checks
    them as ``run --control`` does; a source the mapping lacks is named by manifest row."""
    unknown = sorted({k.split(".")[0] for k in row.controls} - set(session.mapping.sources))
    if unknown:
        raise MappingError(
            f"control totals for unknown source(s) {', '.join(unknown)}",
            file=row.file, row=row.row, column=f"control.{unknown[0]}",
            hint=f"Sources of this mapping: {', '.join(session.mapping.sources)}.",
        )  # fmt: skip
    return dict(row.controls)


# -- the report -------------------------------------------------------------------------


def write_report(outcome: BatchResult, path: Path) -> None:
    """The end table as JSON, CSV or HTML (by the suffix), with each evidence link."""
    rows = [c.to_dict() for c in outcome.clients]
    columns = [*COLUMNS, "exit_code", "key", "message", "evidence"]
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        path.write_text(json.dumps(outcome.to_dict(), indent=2) + "\n", encoding="utf-8")
    elif suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    else:
        import html

        import pandas as pd

        table = pd.DataFrame(rows, columns=columns).to_html(index=False, render_links=True)
        title = repr(outcome.table()).splitlines()[0]
        path.write_text(
            f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<h1>{html.escape(title)}</h1>\n{table}\n",
            encoding="utf-8",
        )


def _check_report(path: Path) -> None:
    """A report's kind is its suffix; checked before anything runs."""
    if path.suffix.lower() not in (".json", ".csv", ".html", ".htm"):
        raise MappingError(
            "a report is a .json, .csv or .html file", file=str(path), hint="Change the suffix."
        )


# -- replay: one Spark for every notebook ------------------------------------------------


@contextmanager
def shared_spark(settings: Settings) -> Iterator[dict[str, str]]:
    """The environment that points every replayed kernel at one Spark, for the length
    of the ``with`` block: locally a Spark Connect server started here (and stopped
    however the block ends), remotely the configured endpoint, or one Livy session."""
    import importlib.util

    platform = settings.platform
    table, _ = settings.platform_table(platform)
    env = {"DATAENG_MAGICS_PLATFORM": platform}
    if platform == "local" and importlib.util.find_spec("grpc") is not None:
        from dataeng_magics.run import connect_server

        with connect_server.running() as server:
            print(f"one Spark for all notebooks: Spark Connect at {server.url} "
                  f"(pid {server.proc.pid})", file=sys.stderr, flush=True)  # fmt: skip
            yield {"DATAENG_MAGICS_PLATFORM": "connect",
                   "DATAENG_MAGICS_CONNECT": json.dumps({"url": server.url})}  # fmt: skip
        return
    if platform == "local":
        print("each notebook starts its own Spark: pip install \"dataeng-magics[connect]\" "
              "to share one", file=sys.stderr)  # fmt: skip
    elif platform == "fabric":
        from dataeng_magics.run.executors import get_executor

        fabric: Any = get_executor("fabric", settings=settings)
        session_id = fabric.ensure_session()
        print(f"one Livy session for all notebooks: {session_id}", file=sys.stderr, flush=True)
        shared = {**table, "session_id": session_id, "close_after_run": False}
        try:
            yield {**env, "DATAENG_MAGICS_FABRIC": json.dumps(shared)}
        finally:
            if table.get("close_after_run"):
                fabric.close()
        return
    elif table:
        env[f"DATAENG_MAGICS_{platform.upper()}"] = json.dumps(table)
    yield env
