"""Settings, resolved in one place so the CLI, the magic and plain Python agree.

Precedence, lowest first: built-in defaults, ``[tool.dataeng_magics]`` in the nearest
pyproject.toml, ``DATAENG_MAGICS_*`` environment variables, then explicit overrides
(``%config TransformMagics.x``, CLI flags, keyword arguments).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dataeng_magics.errors import ConfigError

ENV_PREFIX = "DATAENG_MAGICS_"
Mode = Literal["interactive", "replay"]


class Settings(BaseModel):
    """Everything a session needs to know that is not in the request itself."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    home: Path = Field(default_factory=lambda: Path("~/.dataeng_magics").expanduser())
    sample_rows: int = Field(100, ge=1, le=10_000)
    planner: str = "offline"
    platform: str = "local"
    output_format: Literal["parquet", "csv", "delta"] = "parquet"
    ttl_days: float | None = Field(None, gt=0)
    mode: Mode = "interactive"

    @property
    def store_path(self) -> Path:
        return self.home / "store.sqlite"

    @property
    def audit_path(self) -> Path:
        return self.home / "audit.jsonl"


def _find_pyproject(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def pyproject_settings(start: Path | None = None) -> dict[str, Any]:
    """The ``[tool.dataeng_magics]`` table of the nearest pyproject.toml, if any."""
    path = _find_pyproject((start or Path.cwd()).resolve())
    if path is None:
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read settings: {exc}", file=str(path)) from exc
    table = data.get("tool", {}).get("dataeng_magics", {})
    if not isinstance(table, dict):
        raise ConfigError("[tool.dataeng_magics] must be a table", file=str(path))
    return {k.replace("-", "_"): v for k, v in table.items()}


def env_settings(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw not in (None, ""):
            values[name] = raw
    return values


def load_settings(**overrides: Any) -> Settings:
    """Merge every source of settings; a bad value is reported with where it came from."""
    merged: dict[str, Any] = {}
    layers = [
        ("[tool.dataeng_magics] in pyproject.toml", pyproject_settings()),
        (f"environment ({ENV_PREFIX}*)", env_settings()),
        ("explicit settings", {k: v for k, v in overrides.items() if v is not None}),
    ]
    for origin, layer in layers:
        unknown = sorted(set(layer) - set(Settings.model_fields))
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]!r} in {origin}",
                hint=f"Known settings: {', '.join(Settings.model_fields)}",
            )
        merged.update(layer)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"setting {field!r}: {first['msg']}") from None
    settings.home = Path(settings.home).expanduser()
    return settings
