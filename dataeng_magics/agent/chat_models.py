"""Chat models for the LLM planner: one factory behind the ``planner`` setting.

``planner`` names a provider (``openai``, ``azure``, ``openai-compatible``), a model
registered from Python (``register_model``), or ``offline`` (no model at all). LangChain
and the Azure SDK are imported only here, inside functions, so ``%load_ext`` stays
light and a missing package is reported with the extra that installs it.

API keys are never settings: they stay in the provider's environment variables (or in
a model object built by the user), and ``redact`` scrubs them from any text we show,
log or store.
"""

from __future__ import annotations

import os
from importlib import import_module
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dataeng_magics.errors import ConfigError, MissingDependency

if TYPE_CHECKING:
    from dataeng_magics.config import Settings

PROVIDERS = ("openai", "azure", "openai-compatible")
AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"

_REGISTERED: dict[str, Any] = {}


# --- the registry ----------------------------------------------------------------------


def register_model(name: str, model: Any) -> None:
    """Make a langchain chat model built in Python usable by name:
    ``register_model("claude", ChatAnthropic(...))`` then ``planner = "claude"``."""
    if name == "offline" or name in PROVIDERS:
        raise ConfigError(f"{name!r} is a built-in planner name; register under another name")
    if not hasattr(model, "invoke") or not hasattr(model, "with_structured_output"):
        raise ConfigError(
            f"register_model({name!r}, ...) needs a langchain chat model "
            f"(with invoke and with_structured_output), not {type(model).__name__}"
        )
    _REGISTERED[name] = model


def unregister_model(name: str) -> None:
    _REGISTERED.pop(name, None)


def registered_model(name: str) -> Any | None:
    return _REGISTERED.get(name)


def model_label(model: Any) -> str:
    """A readable name for a model object (never its settings: those may hold keys)."""
    for attr in ("deployment_name", "model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


# --- the factory -----------------------------------------------------------------------


def _require(module: str, package: str, extra: str, purpose: str) -> ModuleType:
    try:
        return import_module(module)
    except ImportError:
        raise MissingDependency(package, extra, purpose) from None


def _rate_limiter(settings: Settings) -> Any:
    if settings.llm_requests_per_second <= 0:
        return None
    limiters = _require("langchain_core.rate_limiters", "langchain-core", "llm", "The LLM planner")
    return limiters.InMemoryRateLimiter(
        requests_per_second=settings.llm_requests_per_second,
        check_every_n_seconds=0.05,
        max_bucket_size=max(1.0, settings.llm_requests_per_second),
    )


def _common(settings: Settings) -> dict[str, Any]:
    """What every provider gets: deterministic, bounded and rate-limited."""
    return {
        "temperature": settings.llm_temperature,
        "timeout": settings.llm_timeout,
        "max_retries": settings.llm_max_retries,
        "max_tokens": settings.llm_max_output_tokens,
        "rate_limiter": _rate_limiter(settings),
    }


def _env(name: str | None) -> str | None:
    return (os.environ.get(name) or None) if name else None


def make_model(settings: Settings) -> Any:
    """The langchain chat model ``settings.planner`` names; a missing setting or package is
    a one-line error that says what to set or install."""
    provider = settings.planner
    registered = registered_model(provider)
    if registered is not None:
        return registered
    if provider not in PROVIDERS:
        known = ", ".join(("offline", *PROVIDERS, *sorted(_REGISTERED)))
        raise ConfigError(
            f"unknown planner {provider!r}",
            hint=f"Use one of: {known}; or register_model(NAME, model) from Python.",
        )
    purpose = f"The {provider!r} planner"
    if provider == "azure":
        return _azure(settings, purpose)
    openai = _require("langchain_openai", "langchain-openai", "llm", purpose)
    key_env = settings.llm_api_key_env or "OPENAI_API_KEY"
    key = _env(key_env)
    if provider == "openai":
        if key is None:
            raise ConfigError(
                f"the openai planner needs an API key in ${key_env}",
                hint=f"Set {key_env} (never in pyproject.toml), or choose planner = 'offline'.",
            )
        where = {"base_url": settings.llm_base_url} if settings.llm_base_url else {}
        return openai.ChatOpenAI(
            model=settings.llm_model or "gpt-4o-mini",
            api_key=key,
            **where,  # else the SDK's own OPENAI_BASE_URL / OPENAI_API_BASE
            **_common(settings),
        )
    if not settings.llm_base_url:
        raise ConfigError(
            "the openai-compatible planner needs llm_base_url (e.g. http://localhost:8000/v1)",
            hint="Set it with %config TransformMagics.llm_base_url, [tool.dataeng_magics] or "
            "DATAENG_MAGICS_LLM_BASE_URL.",
        )
    if not settings.llm_model:
        raise ConfigError(
            "the openai-compatible planner needs llm_model (the name the server serves)",
            hint="Set llm_model, e.g. 'llama3.1' or 'Qwen/Qwen2.5-7B-Instruct'.",
        )
    extra: dict[str, Any] = {}
    if "use_responses_api" in openai.ChatOpenAI.model_fields:
        extra["use_responses_api"] = False  # compatible servers speak chat completions
    return openai.ChatOpenAI(
        model=settings.llm_model,
        base_url=settings.llm_base_url,
        api_key=key or "not-needed",  # local servers (vLLM, Ollama) take any key
        **extra,
        **_common(settings),
    )


def _azure(settings: Settings, purpose: str) -> Any:
    openai = _require("langchain_openai", "langchain-openai", "llm", purpose)
    endpoint = settings.llm_base_url or _env("AZURE_OPENAI_ENDPOINT")
    deployment = settings.llm_model or _env("AZURE_OPENAI_DEPLOYMENT")
    version = settings.llm_api_version or _env("OPENAI_API_VERSION")
    missing = [
        name
        for name, value in (
            ("AZURE_OPENAI_ENDPOINT (or llm_base_url)", endpoint),
            ("llm_model (the deployment name)", deployment),
            ("OPENAI_API_VERSION (or llm_api_version)", version),
        )
        if not value
    ]
    if missing:
        raise ConfigError(
            f"the azure planner needs {', '.join(missing)}",
            hint="Set them in the environment, [tool.dataeng_magics] or %config.",
        )
    key_env = settings.llm_api_key_env or "AZURE_OPENAI_API_KEY"
    key = _env(key_env)
    auth = settings.llm_auth
    if auth == "api_key" and key is None:
        raise ConfigError(f"llm_auth = 'api_key' but ${key_env} is not set")
    credentials: dict[str, Any]
    if auth == "api_key" or (auth == "auto" and key is not None):
        credentials = {"api_key": key}
    else:
        identity = _require("azure.identity", "azure-identity", "azure", "Entra ID sign-in")
        provider = identity.get_bearer_token_provider(
            identity.DefaultAzureCredential(), AZURE_SCOPE
        )
        # api_key=None stops langchain falling back to OPENAI_API_KEY from the environment
        credentials = {"azure_ad_token_provider": provider, "api_key": None}
    return openai.AzureChatOpenAI(
        azure_endpoint=endpoint,
        azure_deployment=deployment,
        api_version=version,
        **credentials,
        **_common(settings),
    )
