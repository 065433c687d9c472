"""Which executor a platform name means, and building it from the settings.

Executors are found by name through the ``dataeng_magics.executors`` entry-point group
(the built-in ones too) and imported only when first used, so a missing platform SDK
costs nothing until someone asks for that platform (as ibis finds its backends).
``register`` is for tests and for plug-ins that are not installed as distributions.
``auto`` is decided here: the notebook's own Spark where there is one, else local.
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import Distribution, EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from dataeng_magics.errors import ConfigError, MissingDependency
from dataeng_magics.run.executors.base import (
    ENTRY_POINT_GROUP,
    Executor,
    HtmlProgress,
    TextProgress,
)

if TYPE_CHECKING:
    from dataeng_magics.config import Settings

_registry: dict[str, type[Executor]] = {}


def register(name: str, cls: type[Executor]) -> None:
    _registry[name] = cls


def available() -> list[str]:
    """Every platform name: registered, or declared by an installed distribution."""
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
                f"unknown platform {name!r}",
                hint=f"Available: auto, {', '.join(available())}.",
            )
        if len({ep.value for ep in matches}) > 1:
            claims = ", ".join(f"{ep.value} (from {_dist_name(ep.dist)})" for ep in matches)
            raise ConfigError(
                f"several executors are registered as {name!r}: {claims}",
                hint="Uninstall all but one of those distributions.",
            )
        try:
            _registry[name] = matches[0].load()
        except ImportError as exc:
            raise missing_dependency(matches[0], exc) from None
    return _registry[name]


def missing_dependency(ep: EntryPoint, exc: ImportError) -> MissingDependency:
    """The error for an executor whose module imports a package that is not installed,
    naming what to install: the distribution's extra that requires that package (the
    one named after the platform first), else the requirement itself."""
    module = exc.name or str(exc)
    dist = ep.dist
    name = _dist_name(dist)
    wanted = {_normal(module), _normal(module.split(".")[0])}
    found: dict[str | None, str] = {}  # extra (None: a core requirement) -> requirement
    for requirement in (dist.requires if dist is not None else None) or []:
        spec, _, marker = requirement.partition(";")
        match = re.match(r"[A-Za-z0-9._-]+", spec.strip())
        if match and _normal(match.group()) in wanted:
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            found.setdefault(extra.group(1) if extra else None, spec.strip())
    extras = (dist.metadata.get_all("Provides-Extra") or []) if dist is not None else []
    if ep.name in found or (not found and ep.name in extras):
        install = f'pip install "{name}[{ep.name}]"'
    elif None in found:
        install = f'pip install "{found[None]}"'  # a core requirement went missing
    elif found:
        install = f'pip install "{name}[{next(iter(found))}]"'
    else:
        install = f"pip install {module.split('.')[0]}"
    return MissingDependency(module, None, f"the {ep.name!r} platform", install=install)


def _dist_name(dist: Distribution | None) -> str:
    return str(dist.metadata["Name"]) if dist is not None else "an unknown distribution"


def _normal(name: str) -> str:
    """Distribution and module names compared the way packaging normalises them."""
    return re.sub(r"[-_.]+", "_", name).lower()


def executor_options(name: str, cls: type[Executor], settings: Settings) -> dict[str, Any]:
    """The platform's settings table checked by the executor's own ``Options`` model;
    a bad value names the setting and where it came from."""
    table, origin = settings.platform_table(name)
    try:
        options = cls.Options.model_validate(table)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in (name, *first["loc"]))
        known = ", ".join(cls.Options.model_fields) or "none"
        raise ConfigError(
            f"setting {field!r} in {origin}: {first['msg']}",
            hint=f"The {name!r} platform's settings: {known}.",
        ) from None
    return options.model_dump(exclude_none=True)


def get_executor(name: str, settings: Settings | None = None, **options: Any) -> Executor:
    """Load the executor called ``name``; clear errors for none, several or missing SDKs."""
    platform = resolve_platform(name)
    cls = executor_class(platform)
    if settings is None:
        return cls(**options)
    executor = cls.from_settings(
        settings, **{**executor_options(platform, cls, settings), **options}
    )
    if executor.progress is None and _in_kernel():  # a neutral bar, not a cell's stderr
        executor.progress = HtmlProgress(executor.name)
    elif executor.progress is None and _shows_progress():
        executor.progress = TextProgress(executor.name)
    return executor


def _in_kernel() -> bool:
    """A running Jupyter kernel (merely importing ipykernel, as a test may, is not one)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def _shows_progress() -> bool:
    """A person is watching: a terminal, or a Jupyter kernel (whose stderr is a cell's)."""
    return "ipykernel" in sys.modules or bool(getattr(sys.stderr, "isatty", lambda: False)())
