"""What every planner is given and gives back: the ``Planner`` protocol and its types.

Plain dataclasses, no langchain: the workflow, the widgets and the offline planner use
them without loading a model. Both planners take a ``PlanningContext`` (the offline one
ignores it) and answer with a ``PlanResult``, so the workflow records every draft and
revision the same way, whichever planner made it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from dataeng_magics.mapping.model import Mapping
from dataeng_magics.plan.model import Plan

if TYPE_CHECKING:
    from dataeng_magics.state.store import Revoked

Schemas = dict[str, dict[str, str]]


@dataclass
class PlanningContext:
    """What a planner may use beyond the plan: the sample rows (pandas frames or lists
    of row dicts), the chat so far and the last run's failed checks, in words."""

    samples: dict[str, Any] = field(default_factory=dict)
    conversation: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# --- token accounting -----------------------------------------------------------------


@dataclass(frozen=True)
class CallUsage:
    """One model call: what it cost and how long it took."""

    input_tokens: int
    output_tokens: int
    seconds: float = 0.0
    model: str = ""
    estimated: bool = False  # the server reported no usage; counted with our estimator

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "seconds": round(self.seconds, 3),
            "model": self.model,
            "estimated": self.estimated,
        }


@dataclass
class Usage:
    """The calls one draft or revision made, so cost is visible per call and in total."""

    calls: list[CallUsage] = field(default_factory=list)

    @property
    def input_tokens(self) -> int:
        return sum(c.input_tokens for c in self.calls)

    @property
    def output_tokens(self) -> int:
        return sum(c.output_tokens for c in self.calls)

    @property
    def estimated(self) -> bool:
        return any(c.estimated for c in self.calls)

    @property
    def model(self) -> str:
        return next((c.model for c in reversed(self.calls) if c.model), "")

    def add(self, call: CallUsage) -> None:
        self.calls.append(call)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "calls": len(self.calls),
            "tokens_in": self.input_tokens,
            "tokens_out": self.output_tokens,
            "estimated": self.estimated,
            "per_call": [c.to_dict() for c in self.calls],
        }

    def to_text(self) -> str:
        """One line for the chat: totals, then the split per call when there were several."""
        if not self.calls:
            return "Tokens: none counted."
        approx = "~" if self.estimated else ""
        calls = len(self.calls)
        text = (
            f"Tokens: {approx}{self.input_tokens:,} in / {approx}{self.output_tokens:,} out "
            f"in {calls} call{'s' if calls > 1 else ''}"
        )
        if calls > 1:
            split = ", ".join(f"{c.input_tokens:,}/{c.output_tokens:,}" for c in self.calls)
            text += f" ({split})"
        return text + (f", model {self.model}." if self.model else ".")


# --- the answer -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanResult:
    """A planner's draft or revision: the plan and its account of it.

    ``reply`` is what the chat shows (empty: nothing to say, as for an offline draft).
    ``usage`` is None when no model was involved (the offline planner) and counts the
    calls otherwise (none, when the draft needed no call). ``refused`` says why a model's
    answer was not applied; the plan is then the one the planner was given.
    """

    plan: Plan
    reply: str = ""
    understood: list[str] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)
    usage: Usage | None = None
    explanation: str = ""  # the model's own words, cleaned
    refused: list[str] = field(default_factory=list)
    repaired: bool = False  # the repair round was used
    prompt: dict[str, Any] = field(default_factory=dict)  # sizes of the first prompt
    revoked: Revoked | None = None  # set by the workflow when applying it took an approval


class Planner(Protocol):
    """Drafts a plan from a mapping and revises it from feedback; never writes code."""

    name: str

    def draft(
        self,
        client: str,
        mapping: Mapping,
        schemas: Schemas,
        notes: str = "",
        *,
        context: PlanningContext | None = None,
    ) -> PlanResult: ...

    def revise(
        self,
        plan: Plan,
        feedback: str,
        schemas: Schemas,
        *,
        context: PlanningContext | None = None,
    ) -> PlanResult: ...
