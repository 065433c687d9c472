"""Safe publishing: a run writes to a staging folder; readers see its tables only once the
whole run (every table, every ``fail`` check) succeeded, and never a half-written table.

The compiled cell writes to its ``output_dir`` parameter, which sits outside the approved
body, so the workflow points it at ``<output_dir>/_runs/<run_id>/`` and publishes from there:

- local folders (``LocalPublisher``): ``<output_dir>/_current`` is a symlink to the published
  run's folder and each ``<output_dir>/<TABLE>`` a fixed symlink to ``_current/<TABLE>``.
  Publishing renames a new ``_current`` over the old one: one atomic ``rename(2)`` switches
  every table at once. The previous run's folder is kept, so a reader that resolved the
  path before the swap reads on; older ones are removed.
- ADLS and other fsspec stores (``FsspecPublisher``): per table, the published folder is
  renamed away into its run's folder and the staged folder renamed into place. Each rename
  is atomic (hierarchical namespace); between the two a reader finds the table missing,
  never half written; across tables the switch is not atomic.
- Delta on Databricks and Fabric (``DeltaPublisher``): each staged table is overwritten into
  the published path by one Delta transaction, run on the platform; the previous version
  stays readable by time travel; across tables the switch is not atomic. Then each
  column the approved plan refuses nulls in (``refused_nulls``) gets a NOT NULL
  constraint, which Delta enforces on every later write.

A killed run leaves only its staging folder, which the next successful publish removes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from dataeng_magics.errors import ExecutionError

if TYPE_CHECKING:
    from dataeng_magics.run.executors.base import Executor, Job

#: The folder of staged and published runs, under the output folder.
RUNS = "_runs"
#: Locally: the symlink naming the published run.
CURRENT = "_current"
#: On fsspec stores: the file naming the published run (for cleanup and for people).
PUBLISHED = "_published"
#: ``DATAENG_MAGICS_TEST_PAUSE=<point>`` stops a run at that point until it is killed.
PAUSE_ENV = "DATAENG_MAGICS_TEST_PAUSE"


def pause_point(name: str) -> None:
    """Wait forever at ``name`` when the test hook asks: a test kills the run at a known
    point. Says so on stderr first, so the test knows when to kill."""
    if os.environ.get(PAUSE_ENV) != name:
        return
    print(f"dataeng-magics: paused at {name} (pid {os.getpid()})", file=sys.stderr, flush=True)
    while True:  # pragma: no cover - ends with the process
        time.sleep(3600)


def staging_dir(output_dir: str, run_id: str) -> str:
    """Where run ``run_id`` writes its tables before they are published."""
    return f"{output_dir.rstrip('/')}/{RUNS}/{run_id}"


class Publisher(ABC):
    """Moves a staged run's tables to where readers open them, or throws them away."""

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir.rstrip("/")

    def staged(self, run_id: str) -> str:
        return staging_dir(self.output_dir, run_id)

    @contextlib.contextmanager
    def running(self, run_id: str) -> Iterator[None]:
        """While the run lives (staging, publishing): nothing to hold by default."""
        yield

    @abstractmethod
    def publish(self, run_id: str, tables: Sequence[str]) -> None:
        """Make the staged ``tables`` of ``run_id`` the published output."""

    @abstractmethod
    def discard(self, run_id: str) -> None:
        """Remove a run's staging folder (a failed run): the published output is untouched."""


class LocalPublisher(Publisher):
    """Versioned run folders and one symlink swapped atomically (POSIX ``rename``)."""

    @property
    def root(self) -> Path:
        return Path(self.output_dir)

    @contextlib.contextmanager
    def running(self, run_id: str) -> Iterator[None]:
        """Hold ``_runs/<run_id>.lock`` while the run lives, so another run's cleanup
        leaves its staging folder alone; the OS releases it when a run is killed."""
        (self.root / RUNS).mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / RUNS / f"{run_id}.lock"):
            yield
        (self.root / RUNS / f"{run_id}.lock").unlink(missing_ok=True)

    def current(self) -> str | None:
        """The published run's id, or None."""
        link = self.root / CURRENT
        return link.readlink().name if link.is_symlink() else None

    def publish(self, run_id: str, tables: Sequence[str]) -> None:
        root, staged = self.root, Path(self.staged(run_id))
        missing = [t for t in tables if not (staged / t).is_dir()]
        if missing:
            raise ExecutionError(
                f"cannot publish run {run_id[:12]}: table(s) {', '.join(missing)} were not "
                f"written to {staged}; the previous output is untouched",
                hint="Run it again; if it keeps failing, the platform dropped the write.",
            )
        previous = self.current() or f"before-{run_id}"
        names = sorted({*tables, *(p.name for p in staged.iterdir() if p.is_dir())})
        # A table that is a plain folder (written before safe publishing) becomes part of
        # the published run (or of a run of its own), once; then each table's fixed link.
        legacy = root / RUNS / previous
        for table in names:
            if not (root / table).is_symlink() and (root / table).exists():
                legacy.mkdir(parents=True, exist_ok=True)
                (root / table).rename(legacy / table)
        if not (root / CURRENT).is_symlink() and legacy.is_dir():
            _symlink(f"{RUNS}/{previous}", root / CURRENT)
        for table in names:
            if not (root / table).is_symlink():
                _symlink(f"{CURRENT}/{table}", root / table)
        pause_point("publish")  # from here on, a kill leaves the previous output published
        _symlink(f"{RUNS}/{run_id}", root / CURRENT)  # the one atomic switch
        self._cleanup(keep={run_id, previous}, tables=names)

    def _cleanup(self, keep: set[str], tables: Sequence[str]) -> None:
        """Remove the runs no reader can reach (failed, killed, or older than the
        previous), and links to tables the published run no longer has."""
        for folder in (self.root / RUNS).iterdir():
            name = folder.name.removesuffix(".lock")
            if name in keep:
                continue
            lock = FileLock(folder.with_name(f"{name}.lock"), timeout=0)
            try:
                with lock:  # taken: the run is over (failed or killed), not running
                    shutil.rmtree(folder.with_name(name), ignore_errors=True)
                folder.with_name(f"{name}.lock").unlink(missing_ok=True)
            except Timeout:
                continue  # another run is staging there now
        for entry in self.root.iterdir():
            if (
                entry.is_symlink()
                and entry.name not in (CURRENT, *tables)
                and str(entry.readlink()).startswith(f"{CURRENT}/")
            ):
                entry.unlink()

    def discard(self, run_id: str) -> None:
        shutil.rmtree(self.staged(run_id), ignore_errors=True)


def _symlink(target: str, link: Path) -> None:
    """Point ``link`` at ``target`` atomically: a new link renamed over the old one."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    temporary.symlink_to(target)
    temporary.replace(link)


class FsspecPublisher(Publisher):
    """Renames within one fsspec store (ADLS: one container, hierarchical namespace)."""

    def __init__(self, output_dir: str, fs: Any) -> None:
        super().__init__(output_dir)
        self.fs = fs

    def current(self) -> str | None:
        marker = f"{self.output_dir}/{PUBLISHED}"
        if not self.fs.exists(marker):
            return None
        return str(self.fs.cat_file(marker).decode().strip()) or None

    def publish(self, run_id: str, tables: Sequence[str]) -> None:
        fs, base, staged = self.fs, self.output_dir, self.staged(run_id)
        previous = self.current() or f"before-{run_id}"
        written = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(staged, detail=False)}
        pause_point("publish")
        for table in sorted({*tables, *written}):
            if fs.exists(f"{base}/{table}"):
                fs.mv(f"{base}/{table}", f"{base}/{RUNS}/{previous}/{table}", recursive=True)
            fs.mv(f"{staged}/{table}", f"{base}/{table}", recursive=True)
        fs.pipe_file(f"{base}/{PUBLISHED}", run_id.encode())
        for folder in fs.ls(f"{base}/{RUNS}", detail=False):
            if folder.rstrip("/").rsplit("/", 1)[-1] != previous:
                fs.rm(folder, recursive=True)

    def discard(self, run_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.staged(run_id), recursive=True)


def delta_publish_code(
    staged: str,
    output_dir: str,
    tables: Sequence[str],
    fmt: str = "delta",
    not_null: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The cell that publishes staged Delta tables on the platform: per table, one
    overwrite transaction (readers see the old version until it commits), then a NOT
    NULL constraint on each column the approved plan refuses nulls in (``not_null``,
    from ``refused_nulls``), which Delta checks against the table and enforces on every
    later write.

    No ``DROP NOT NULL`` is needed, and a first publish and a re-run take the same path:
    Delta writes a DataFrame's schema as nullable, and ``overwriteSchema`` makes that the
    table's schema, so the overwrite drops every earlier NOT NULL (a column no longer
    refused stays nullable). Between the two commits readers see the new rows with a
    nullable schema: a weaker claim, never a false one. Every name is a quoted literal
    and the code passes the AST allow-list before it runs."""
    from dataeng_magics.compile.safety import check_generated, not_null_sql, py_str

    base = output_dir.rstrip("/")
    lines: list[str] = []
    for table in tables:
        target = f"{base}/{table}"
        lines.extend([
            f"(spark.read.format({py_str(fmt)}).load({py_str(f'{staged}/{table}')})",
            f"    .write.format({py_str(fmt)}).mode(\"overwrite\")",
            '    .option("overwriteSchema", "true")',
            f"    .save({py_str(target)}))",
        ])  # fmt: skip
        if fmt == "delta":
            lines.extend(
                f"spark.sql({py_str(not_null_sql(target, column))})"
                for column in (not_null or {}).get(table, ())
            )
    lines.append("run_metrics = {}")
    code = "\n".join(lines) + "\n"
    check_generated(code, publish=True)
    return code


class DeltaPublisher(Publisher):
    """One Delta transaction per table, run by the executor that ran the job."""

    def __init__(
        self,
        output_dir: str,
        executor: Executor,
        job: Job,
        fs: Any = None,
        fmt: str = "delta",
        not_null: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__(output_dir)
        self.executor, self.job, self.fs, self.fmt = executor, job, fs, fmt
        self.not_null = dict(not_null or {})

    def publish(self, run_id: str, tables: Sequence[str]) -> None:
        from dataclasses import replace

        pause_point("publish")
        code = delta_publish_code(
            self.staged(run_id), self.output_dir, tables, self.fmt, self.not_null
        )
        self.executor.run(replace(self.job, name=f"{self.job.name} publish", code=code))
        self.discard(run_id)

    def discard(self, run_id: str) -> None:
        if self.fs is not None:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(self.staged(run_id), recursive=True)


def publisher_for(
    output_dir: str,
    output_format: str,
    *,
    storage_options: dict[str, Any] | None = None,
    executor: Executor | None = None,
    job: Job | None = None,
    not_null: Mapping[str, Sequence[str]] | None = None,
) -> Publisher:
    """The publisher for this output: local folders, an fsspec store, or Delta tables
    (which declare NOT NULL on ``not_null``: table -> the columns the plan refuses nulls
    in; files have no such declaration)."""
    if "://" not in output_dir or output_dir.startswith("file://"):
        return LocalPublisher(output_dir.removeprefix("file://"))
    from dataeng_magics.sources.files import filesystem

    fs, _ = filesystem(output_dir, storage_options or {})  # a missing adlfs: one line
    if output_format == "delta" and executor is not None and job is not None:
        return DeltaPublisher(output_dir, executor, job, fs, not_null=not_null)
    return FsspecPublisher(output_dir, fs)
