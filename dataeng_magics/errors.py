"""One exception hierarchy, so callers (the CLI, the magic, papermill) can tell a user's
mistake from a bug and show it as one line.

Every error carries structured location fields (file, sheet, row, column) and a hint
that says what to do; ``str(error)`` renders them as a single line. ``exit_code`` is the
CLI's exit status for that class of failure; it travels in ``to_dict()`` (an executed
notebook records it), so no caller ever reads it back from the wording.
"""

from __future__ import annotations

from typing import Any, ClassVar

from dataeng_magics.redact import redact


class DataEngMagicsWarning(UserWarning):
    """Our own warnings; the test suite turns them into errors."""


class DataEngMagicsError(Exception):
    """Root of every error this package raises on purpose."""

    exit_code: ClassVar[int] = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        sheet: str | None = None,
        row: int | None = None,
        column: str | None = None,
        hint: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.sheet = sheet
        self.row = row
        self.column = column
        self.hint = hint
        self.fields = fields

    @property
    def location(self) -> str:
        parts = []
        if self.file:
            parts.append(str(self.file))
        if self.sheet:
            parts.append(f"sheet {self.sheet!r}")
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column:
            parts.append(f"column {self.column!r}")
        return ", ".join(parts)

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text = f"{text.rstrip('.')}. {self.hint}"
        return redact(" ".join(text.split()))  # always one line, never a secret

    def to_dict(self) -> dict[str, Any]:
        """The error as a record (an executed notebook, the audit log), secrets masked."""
        return {
            key: redact(value) if isinstance(value, str) else value
            for key, value in self._fields().items()
        }

    def _fields(self) -> dict[str, Any]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "file": self.file,
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "hint": self.hint,
            "exit_code": self.exit_code,
            **{k: v for k, v in self.fields.items() if isinstance(v, str | int | float | bool)},
        }


#: Longest value echoed in a message; a workbook cell can hold tens of kilobytes.
ECHO_CHARS = 100


def clip(value: object) -> str:
    """``value`` quoted for a message, cut to ``ECHO_CHARS`` characters."""
    text = str(value)
    if len(text) <= ECHO_CHARS:
        return repr(text)
    return repr(text[:ECHO_CHARS]) + f"... ({len(text):,} characters)"


class ConfigError(DataEngMagicsError, ValueError):
    """A setting is missing or malformed."""


class MappingError(DataEngMagicsError, ValueError):
    """The mapping workbook cannot be used as it is."""


class SourceError(DataEngMagicsError, ValueError):
    """A source file is missing, unreadable, or does not have the columns the mapping names."""


class PlanError(DataEngMagicsError, ValueError):
    """A plan is invalid or cannot be approved (for example, unresolved steps)."""


class UnsafePlanError(PlanError):
    """A plan or generated source failed a safety check; nothing was compiled or run."""


class StoreError(DataEngMagicsError, RuntimeError):
    """The cache store refused an operation (unknown key, wrong status)."""


class AuditError(DataEngMagicsError, RuntimeError):
    """The audit log is broken or has been edited."""


class ApprovalRequired(DataEngMagicsError):
    """No approved plan matches these inputs, so nothing ran."""

    exit_code = 3


class ModeError(DataEngMagicsError, RuntimeError):
    """A replay session was asked to plan or review: replays only run approved plans."""


class ValidationFailed(DataEngMagicsError):
    """The output was written but failed the mapping's checks. ``summary`` is the run's
    summary (``workflow.RunSummary``), so a front end can still show what ran."""

    exit_code = 4

    def __init__(self, message: str, *, summary: Any = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.summary = summary


class ExecutionError(DataEngMagicsError, RuntimeError):
    """Spark (or a remote platform) failed while running approved code."""

    exit_code = 5


class MissingDependency(DataEngMagicsError, ImportError):
    """An optional dependency is not installed; the message names the extra (or, with
    ``install``, the command that installs it)."""

    def __init__(
        self, package: str, extra: str | None, purpose: str, *, install: str | None = None
    ) -> None:
        command = install or f'pip install "dataeng-magics[{extra}]"'
        super().__init__(
            f"{purpose} needs the {package!r} package, which is not installed",
            hint=f"Install it with: {command}",
            package=package,
            extra=extra,
        )
