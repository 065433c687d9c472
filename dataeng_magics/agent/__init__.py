"""Planners: they draft and revise plans, never code.

The offline planner is always available; the LLM planner (langchain) is imported
only when configured. Both follow ``Planner`` (``agent.protocol``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataeng_magics.agent.offline import OfflinePlanner
from dataeng_magics.agent.protocol import (
    Planner,
    PlanningContext,
    PlanResult,
    Schemas,
    Usage,
)

if TYPE_CHECKING:
    from dataeng_magics.agent.chat_models import register_model
    from dataeng_magics.agent.llm import LLMPlanner
    from dataeng_magics.config import Settings

__all__ = [
    "LLMPlanner",
    "OfflinePlanner",
    "PlanResult",
    "Planner",
    "PlanningContext",
    "Schemas",
    "Usage",
    "get_planner",
    "register_model",
]
_LAZY = {
    "LLMPlanner": "dataeng_magics.agent.llm",
    "register_model": "dataeng_magics.agent.chat_models",
}


def __getattr__(name: str) -> Any:
    """The LLM planner's names, imported on first use (``%load_ext`` stays light)."""
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_planner(settings: Settings, model: Any = None) -> Planner:
    """The planner ``settings.planner`` names (offline by default); ``model``, a langchain
    chat model passed from Python, wins over the settings."""
    if model is None and settings.planner == "offline":
        return OfflinePlanner()
    from dataeng_magics.agent.llm import LLMPlanner

    return LLMPlanner.from_settings(settings, model=model)
