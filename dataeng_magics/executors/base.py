"""The one interface every place that runs approved code implements.

Executors are found by name through the ``dataeng_magics.executors`` entry-point group
(the built-in ones too) and imported only when first used, so a missing platform SDK
costs nothing until someone asks for that platform. ``register`` is for tests and for
plugins that are not installed as distributions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from dataeng_magics.errors import ConfigError, MissingDependency

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


class Executor(ABC):
    name: ClassVar[str]

    @abstractmethod
    def run(self, job: Job) -> JobResult:
        """Run the job to completion; raise ExecutionError on failure."""


_registry: dict[str, type[Executor]] = {}


def register(name: str, cls: type[Executor]) -> None:
    _registry[name] = cls


def available() -> list[str]:
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names | set(_registry))


def get_executor(name: str, **options: Any) -> Executor:
    """Load the executor called ``name``; clear errors for none, several or missing SDKs."""
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
    return _registry[name](**options)
