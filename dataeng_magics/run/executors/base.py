"""The one interface every place that runs approved code implements.

Executors are found by name through the ``dataeng_magics.executors`` entry-point group
(the built-in ones too) and imported only when first used, so a missing platform SDK
costs nothing until someone asks for that platform. ``register`` is for tests and for
plugins that are not installed as distributions.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal

from dataeng_magics.errors import ConfigError, ExecutionError, MissingDependency

if TYPE_CHECKING:
    from dataeng_magics.config import Settings

ENTRY_POINT_GROUP = "dataeng_magics.executors"


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


@dataclass
class JobResult:
    platform: str
    metrics: dict[str, dict[str, int]]
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


class Executor(ABC):
    """Runs approved code somewhere. ``progress`` hears about long runs as they go."""

    name: ClassVar[str]
    progress: ProgressCallback | None = None

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **options: Any) -> Executor:
        """Build from the session's settings; executors with options override this."""
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


_registry: dict[str, type[Executor]] = {}


def register(name: str, cls: type[Executor]) -> None:
    _registry[name] = cls


def available() -> list[str]:
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names | set(_registry))


def resolve_platform(name: str) -> str:
    """``auto`` means the notebook's own Spark where there is one, else local Spark."""
    if name != "auto":
        return name
    from dataeng_magics.run.executors.notebook import detect

    return "notebook" if detect() is not None else "local"


def executor_class(name: str) -> type[Executor]:
    """The class registered as ``name``, imported now if it came from an entry point."""
    if name not in _registry:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not matches:
            raise ConfigError(
                f"unknown platform {name!r}", hint=f"Available: {', '.join(available())}."
            )
        if len({ep.value for ep in matches}) > 1:
            raise ConfigError(
                f"several executors are registered as {name!r}: "
                + ", ".join(ep.value for ep in matches)
            )
        try:
            _registry[name] = matches[0].load()
        except ImportError as exc:
            raise MissingDependency(exc.name or str(exc), name, f"the {name!r} platform") from None
    return _registry[name]


def get_executor(name: str, settings: Settings | None = None, **options: Any) -> Executor:
    """Load the executor called ``name``; clear errors for none, several or missing SDKs."""
    cls = executor_class(resolve_platform(name))
    if settings is None:
        return cls(**options)
    executor = cls.from_settings(settings, **options)
    if executor.progress is None and _shows_progress():
        executor.progress = TextProgress(executor.name)
    return executor


def _shows_progress() -> bool:
    """A person is watching: a terminal, or a Jupyter kernel (whose stderr is a cell's)."""
    return "ipykernel" in sys.modules or bool(getattr(sys.stderr, "isatty", lambda: False)())
