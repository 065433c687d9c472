"""Settings, resolved in one place so the CLI, the magic and plain Python agree.

Precedence, lowest first: built-in defaults, ``[tool.dataeng_magics]`` in the nearest
pyproject.toml, ``DATAENG_MAGICS_*`` environment variables, then explicit overrides
(``%config TransformMagics.x``, CLI flags, keyword arguments).
"""

from __future__ import annotations

import getpass
import json
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from dataeng_magics.connections import StorageConnection, validate_connections
from dataeng_magics.errors import ConfigError

ENV_PREFIX = "DATAENG_MAGICS_"
ENV_ORIGIN = f"environment ({ENV_PREFIX}*)"
Mode = Literal["interactive", "replay"]


class Settings(BaseModel):
    """Everything a session needs to know that is not in the request itself."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    home: Path = Field(default_factory=lambda: Path("~/.dataeng_magics").expanduser())
    sample_rows: int = Field(100, ge=1, le=10_000)
    planner: str = "offline"
    platform: str = "local"
    # The Spark of the platform (4.0, 3.5, "databricks 15.4"), when it cannot be asked
    # at draft time (Fabric); decides whether formats such as XML can run there.
    platform_spark_version: str | None = None
    output_format: Literal["parquet", "csv", "delta"] = "parquet"
    ttl_days: float | None = Field(None, gt=0)
    # Team state: the store and audit log on PostgreSQL (postgresql://user@host/db); unset,
    # the SQLite file and JSONL log in ``home``. Entra ID: the token is the password.
    store_url: str | None = None
    store_auth: Literal["password", "entra_id"] = "password"
    mode: Mode = "interactive"
    verbose: bool = False  # local Spark's start-up lines and warnings too (CLI --verbose)
    storage: dict[str, StorageConnection] = {}
    # Each platform's own table ([tool.dataeng_magics.connect], DATAENG_MAGICS_CONNECT),
    # checked by that executor's Options model when it is loaded, so a plug-in executor
    # has settings too and reading settings never imports a platform SDK.
    platforms: dict[str, dict[str, Any]] = {}
    # The LLM planner (planner = openai | azure | openai-compatible | a registered name).
    # API keys are never settings: they stay in the provider's environment variables.
    llm_model: str | None = None  # model name; for azure, the deployment
    llm_base_url: str | None = None  # an OpenAI-compatible server, or the Azure endpoint
    llm_api_version: str | None = None  # azure; else OPENAI_API_VERSION
    llm_auth: Literal["auto", "api_key", "entra_id"] = "auto"  # azure: key, or Entra ID
    llm_api_key_env: str | None = None  # name of the variable holding the key
    llm_temperature: float = Field(0.0, ge=0, le=2)
    llm_timeout: float = Field(60.0, gt=0, le=3600)  # seconds per request
    llm_max_retries: int = Field(2, ge=0, le=10)
    llm_requests_per_second: float = Field(1.0, ge=0)  # 0: no rate limiter
    llm_max_output_tokens: int = Field(4096, ge=256, le=100_000)
    llm_sample_rows: int = Field(20, ge=0, le=1000)  # sample rows sent per source
    llm_privacy: Literal["sample", "schema"] = "sample"  # schema: names and types only
    llm_token_budget: int = Field(8000, ge=1000, le=1_000_000)  # input tokens per call
    # Bad input: informational workbook headers beyond the built-in list (a list, or
    # comma-separated in DATAENG_MAGICS_IGNORE_HEADERS); hidden sheets; remote storage's
    # total deadline (connect, read and retries together).
    ignore_headers: list[str] = []
    read_hidden_sheets: bool = False
    network_timeout_seconds: float = Field(60.0, gt=0, le=3600)

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("ignore_headers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):  # an environment variable: comma-separated
            return [h.strip() for h in value.split(",") if h.strip()]
        return value

    def platform_table(self, name: str) -> tuple[dict[str, Any], str]:
        """A platform's settings table and where it came from (for error messages)."""
        return self.platforms.get(name, {}), self._origins.get(name, "explicit settings")

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


#: The keys a settings layer may hold besides platform tables.
FIELDS = tuple(name for name in Settings.model_fields if name != "platforms")


def _json_table(variable: str, raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{variable} is not valid JSON ({exc.msg})",
            hint='Write it as a JSON object, e.g. {"url": "sc://host:15002"}.',
        ) from None


def env_settings(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``DATAENG_MAGICS_<SETTING>``; tables (storage, a platform's) come as JSON."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    others: dict[str, str] = {}
    for variable, raw in env.items():
        suffix = variable[len(ENV_PREFIX) :]
        if not variable.startswith(ENV_PREFIX) or suffix != suffix.upper() or raw == "":
            continue
        name = suffix.lower()
        if name == "storage":
            values[name] = _json_table(variable, raw)
        elif name in FIELDS:
            values[name] = raw
        else:
            others[name] = variable
    if others:  # a platform's table, or a variable that is not a setting (left alone)
        platforms = _platform_names()
        for name, variable in others.items():
            if name in platforms:
                values[platforms[name]] = _json_table(variable, env[variable])
    return values


def _platform_names() -> dict[str, str]:
    """Platform names as keys are written (``my_exec`` for ``my-exec``) -> the name."""
    from dataeng_magics.run.executors.registry import available

    return {name.replace("-", "_").lower(): name for name in available()}


def _split(layer: dict[str, Any], origin: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A layer's settings, and its platform tables by platform name."""
    others = {k: v for k, v in layer.items() if k not in FIELDS}
    if not others:
        return layer, {}
    platforms = _platform_names()
    tables: dict[str, Any] = {}
    for key, table in others.items():
        name = platforms.get(key.replace("-", "_").lower())
        if name is None:
            raise ConfigError(
                f"unknown setting {key!r} in {origin}",
                hint=f"Known settings: {', '.join(FIELDS)}; platform tables: "
                f"{', '.join(sorted(platforms.values()))}.",
            )
        if not isinstance(table, dict):
            raise ConfigError(
                f"setting {key!r} in {origin} must be a table of the {name!r} platform's settings",
                hint=f"Write [tool.dataeng_magics.{name}], or a JSON object in "
                f"{ENV_PREFIX}{key.upper()}.",
            )
        tables[name] = table
    return {k: v for k, v in layer.items() if k in FIELDS}, tables


def load_settings(**overrides: Any) -> Settings:
    """Merge every source of settings; a bad value is reported with where it came from."""
    merged: dict[str, Any] = {}
    layers = [
        ("[tool.dataeng_magics] in pyproject.toml", pyproject_settings()),
        (ENV_ORIGIN, env_settings()),
        ("explicit settings", {k: v for k, v in overrides.items() if v is not None}),
    ]
    tables: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, layer in layers:
        values, platform_tables = _split(layer, origin)
        merged.update(values)
        tables.update(platform_tables)  # a later layer's table replaces the whole table
        for name in platform_tables:
            origins[name] = f"{ENV_PREFIX}{name.upper()}" if origin == ENV_ORIGIN else origin
    try:
        settings = Settings(**merged, platforms=tables)
    except ValidationError as exc:
        raise _config_error(exc) from None
    settings._origins = origins
    settings.home = Path(settings.home).expanduser()
    validate_connections(settings.storage)  # missing secrets fail now, not mid-run
    return settings


def resolve(settings: Settings, **choices: Any) -> Settings:
    """``settings`` with one request's explicit choices on top (``None``: not chosen).

    A session resolves its request once (platform, output format), so no caller
    decides ``request.x or settings.x`` again; the settings passed in are not changed.
    """
    resolved = settings.model_copy()
    try:
        for name, value in choices.items():
            if value is not None:
                setattr(resolved, name, value)  # validated: validate_assignment
    except ValidationError as exc:
        raise _config_error(exc) from None
    return resolved


def _config_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    return ConfigError(f"setting {field!r}: {first['msg']}")


#: Account names that are not a person: shared container and service users.
NOT_A_PERSON = frozenset({"", "root", "jovyan", "nobody", "unknown"})


def current_user() -> str:
    """Who is acting, by the one scheme every front end uses: the JupyterHub user (a
    hub-spawned server, its kernels and terminals), else the OS user; "unknown" when
    neither is known (a container without a passwd entry)."""
    hub_user = os.environ.get("JUPYTERHUB_USER", "").strip()
    if hub_user:
        return hub_user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
