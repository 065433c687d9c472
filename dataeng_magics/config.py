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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dataeng_magics.connections import StorageConnection, validate_connections
from dataeng_magics.errors import ConfigError

ENV_PREFIX = "DATAENG_MAGICS_"
Mode = Literal["interactive", "replay"]


class ConnectOptions(BaseModel):
    """Spark Connect / Databricks Connect (``platform = "connect"``)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None  # sc://host:port; else SPARK_REMOTE; else Databricks settings
    databricks: bool | None = None  # None: DatabricksSession when installed and no url
    profile: str | None = None  # ~/.databrickscfg profile
    cluster_id: str | None = None
    serverless: bool = False
    retry_seconds: float = Field(default=20, gt=0, le=300)  # total retry budget per call
    timeout_seconds: float | None = Field(default=None, gt=0)  # whole-run deadline


class FabricOptions(BaseModel):
    """Microsoft Fabric through its Livy API (``platform = "fabric"``)."""

    model_config = ConfigDict(extra="forbid")

    workspace_id: str | None = None  # else FABRIC_WORKSPACE_ID
    lakehouse_id: str | None = None  # else FABRIC_LAKEHOUSE_ID
    api_url: str = "https://api.fabric.microsoft.com/v1"
    api_version: str = "2023-12-01"
    session_id: str | None = None  # reuse this Livy session
    session_name: str = "dataeng-magics"
    session_conf: dict[str, str] = {}
    poll_seconds: float = Field(default=2.0, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    close_after_run: bool = False  # else left for the next run (Fabric ends it when idle)
    idle_minutes: float = Field(default=15, gt=0)  # close our sessions idle longer than this


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
    storage: dict[str, StorageConnection] = {}
    connect: ConnectOptions = ConnectOptions()
    fabric: FabricOptions = FabricOptions()
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


_JSON_SETTINGS = ("storage", "connect", "fabric")


def env_settings(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw not in (None, ""):
            values[name] = raw
            if name in _JSON_SETTINGS:  # tables (storage, connect, fabric) come as JSON
                try:
                    values[name] = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise ConfigError(
                        f"{ENV_PREFIX}{name.upper()} is not valid JSON ({exc.msg})",
                        hint='Write it as a JSON object, e.g. {"url": "sc://host:15002"}.',
                    ) from None
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
    validate_connections(settings.storage)  # missing secrets fail now, not mid-run
    return settings


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
