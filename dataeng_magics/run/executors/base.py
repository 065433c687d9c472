"""The one interface every place that runs approved code implements.

An executor is a class with a ``name``, a ``run`` (or, for remote platforms, ``submit``,
``status``, ``cancel``, ``logs``, ``result``) and its own settings model ``Options``,
the ``[tool.dataeng_magics.<name>]`` table. The helpers every executor shares live
here too: the progress line, the first line of an error, the metrics a run reports.
Finding executors by name is ``registry``'s job.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from dataeng_magics.errors import ExecutionError

if TYPE_CHECKING:
    from dataeng_magics.config import Settings

#: Where distributions declare executors, the built-in ones too (see ``registry``).
ENTRY_POINT_GROUP = "dataeng_magics.executors"

Metrics = dict[str, dict[str, int | str]]


@dataclass(frozen=True)
class Job:
    """What to run: the full cell (parameters + approved body) and where it came from."""

    name: str
    client: str
    key: str
    code: str
    inputs: dict[str, str] = field(default_factory=dict)
    output_dir: str = ""
    output_format: str = "parquet"
    tables: tuple[str, ...] = ()  # the output tables, in the order the code writes them


@dataclass
class JobResult:
    platform: str
    metrics: Metrics
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


JobState = Literal["pending", "running", "succeeded", "failed", "cancelled"]
FINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class JobStatus:
    """Where a job is, in the same words on every platform, so one progress line fits all."""

    state: JobState
    progress: float | None = None  # 0..1 where the platform tells, else None
    message: str = ""  # the platform's own words: "stage 3/5, 12/40 tasks", "session busy"

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    def to_text(self) -> str:
        pct = f" {self.progress:4.0%}" if self.progress is not None else ""
        return f"{self.state}{pct}{': ' + self.message if self.message else ''}"


ProgressCallback = Callable[[JobStatus], None]


class TextProgress:
    """A one-line progress display rewritten in place (``\\r``), at most once a second.

    Jupyter and terminals both honour the carriage return, so a long run shows one
    changing line instead of pages of log.
    """

    def __init__(self, label: str = "", stream: IO[str] | None = None, every: float = 1.0) -> None:
        self.label = label
        self.stream = stream
        self.every = every
        self._last = ""
        self._at = 0.0

    def __call__(self, status: JobStatus) -> None:
        text = f"[{self.label}] {status.to_text()}" if self.label else status.to_text()
        now = time.monotonic()
        if text == self._last or (not status.done and now - self._at < self.every):
            return
        stream = self.stream or sys.stderr
        pad = " " * max(0, len(self._last) - len(text))
        stream.write(f"\r{text}{pad}" + ("\n" if status.done else ""))
        stream.flush()
        self._last, self._at = text, now


class HtmlProgress:
    """A run's progress in a notebook: a bar on a neutral background, updated in place
    (a display handle), where ``TextProgress`` on stderr would sit on the error colour."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self._handle: Any = None
        self._last = ""

    def __call__(self, status: JobStatus) -> None:
        import html

        from IPython.display import display

        text = f"[{self.label}] {status.to_text()}" if self.label else status.to_text()
        if text == self._last:
            return
        self._last = text
        value = "" if status.progress is None else f" value='{status.progress:.3f}'"
        bar = "" if status.done else f"<progress max='1'{value} style='width:240px'></progress> "
        page = {
            "text/plain": text,
            "text/html": f"<div class='dem-progress' style='font-size:12px'>{bar}"
            f"{html.escape(text)}</div>",
        }
        if self._handle is None:
            self._handle = display(page, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self._handle.update(page, raw=True)


class NoOptions(BaseModel):
    """The settings of an executor that has none: any key in its table is a mistake."""

    model_config = ConfigDict(extra="forbid")


class Executor(ABC):
    """Runs approved code somewhere. ``progress`` hears about long runs as they go.

    ``Options`` is the executor's settings table (``[tool.dataeng_magics.<name>]``, or
    the JSON in ``DATAENG_MAGICS_<NAME>``); its fields are keyword arguments of the
    constructor. The table is checked against it when the executor is loaded, so a
    plug-in declares its own settings and loading settings never imports its SDK.
    """

    name: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: Runs Spark that reads and writes the storage connections: it gets their Spark
    #: settings (secrets included) as ``spark_conf``, never inside the code.
    takes_spark_conf: ClassVar[bool] = False
    #: Its Spark reads this machine's files: an http(s) source is copied here for a run
    #: (``run.inputs``) rather than refused.
    local_files: ClassVar[bool] = False
    progress: ProgressCallback | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Executor:
        """Build from the session's settings; ``options`` are the executor's validated
        table with the caller's keywords on top."""
        if cls.takes_spark_conf and settings.storage and "spark_conf" not in options:
            from dataeng_magics.connections import spark_conf

            options["spark_conf"] = spark_conf(settings.storage)
        return cls(**options)

    def location(self) -> dict[str, str]:
        """Where runs happen (host, workspace, cluster) for run records; never secrets."""
        return {}

    def report(self, status: JobStatus) -> None:
        """Tell the progress callback, if any; a broken display never breaks a run."""
        if self.progress is not None:
            with contextlib.suppress(Exception):
                self.progress(status)

    @abstractmethod
    def run(self, job: Job) -> JobResult:
        """Run the job to completion; raise ExecutionError on failure."""


class RemoteExecutor(Executor):
    """A platform that runs jobs elsewhere: submit, then poll ``status`` until done.

    ``run`` is written once here: it polls, reports progress, enforces the deadline,
    and turns Ctrl-C (KeyboardInterrupt) into a cancel of the remote job, so a user
    interrupting the notebook never leaves a cluster busy with an abandoned run.
    """

    poll_seconds: float = 1.0
    timeout_seconds: float | None = None

    @abstractmethod
    def submit(self, job: Job) -> str:
        """Start the job; return a handle for status/cancel/logs/result."""

    @abstractmethod
    def status(self, handle: str) -> JobStatus:
        """The job's state now (cheap: called every ``poll_seconds``)."""

    @abstractmethod
    def cancel(self, handle: str) -> None:
        """Ask the platform to stop the job; returns without waiting for it."""

    @abstractmethod
    def logs(self, handle: str) -> str:
        """What the job printed or the platform logged, secrets redacted."""

    @abstractmethod
    def result(self, handle: str, job: Job) -> JobResult:
        """The finished job's metrics; raises ExecutionError if it did not succeed."""

    def run(self, job: Job) -> JobResult:
        handle = self.submit(job)
        deadline = (
            time.monotonic() + self.timeout_seconds if self.timeout_seconds is not None else None
        )
        wake = threading.Event()
        try:
            while True:
                state = self.status(handle)
                self.report(state)
                if state.done:
                    return self.result(handle, job)
                if deadline is not None and time.monotonic() > deadline:
                    self.cancel(handle)
                    raise ExecutionError(
                        f"{job.name} did not finish within {self.timeout_seconds:.0f}s on "
                        f"{self.name}; it was cancelled",
                        hint="Raise the platform's timeout_seconds setting for larger inputs.",
                        state="cancelled",
                    )
                wake.wait(self.poll_seconds)
        except KeyboardInterrupt:
            self.cancel(handle)
            self.report(JobStatus("cancelled", message="interrupted by the user"))
            raise interrupted(job, f"the {self.name} job was") from None


def interrupted(job: Job, what: str) -> ExecutionError:
    """The error for Ctrl-C: the job was cancelled where it ran, nothing counts as success."""
    return ExecutionError(
        f"{job.name} was interrupted; {what} cancelled",
        hint="Nothing was recorded as a success; run it again when ready.",
        state="cancelled",
    )


def first_line(exc: BaseException) -> str:
    """Spark errors carry pages of JVM stack; users need the first meaningful line."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def table_fraction(written: float, tables: int) -> float | None:
    """How far a run is, as the share of its output tables written (None: not known).

    Platforms submit work as the code runs, so a share of the tasks seen so far falls
    whenever more work appears; the number of tables is known before the run starts.
    """
    return min(1.0, written / tables) if tables else None


def run_metrics(raw: Any) -> Metrics:
    """The cell's ``run_metrics`` as whole numbers: ``Observation`` gives None for an
    aggregate over no rows, and some platforms give numpy or Decimal numbers."""
    return {str(t): {str(k): _metric(k, v) for k, v in m.items()} for t, m in raw.items()}


def _metric(name: Any, value: Any) -> int | str:
    """Counts as whole numbers; sums and example values (sent as text, so a decimal
    total keeps its digits on every platform) as text, "" for none."""
    if str(name).startswith(("sum:", "total_", "example_", "examples:")):
        return "" if value is None else str(value)
    return int(value or 0)
