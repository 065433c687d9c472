"""Planners: they draft and revise plans, never code.

The offline planner is always available; the LLM planner (langchain) is imported
only when configured.
"""

from __future__ import annotations

from typing import Protocol

from dataeng_magics.agent.offline import OfflinePlanner, Revision, Schemas
from dataeng_magics.models import Mapping
from dataeng_magics.plan import Plan

__all__ = ["OfflinePlanner", "Planner", "Revision", "Schemas"]


class Planner(Protocol):
    name: str

    def draft(self, client: str, mapping: Mapping, schemas: Schemas, notes: str = "") -> Plan: ...

    def revise(self, plan: Plan, feedback: str, schemas: Schemas) -> Revision: ...
