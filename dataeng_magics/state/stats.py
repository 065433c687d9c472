"""Usage figures from the store and the audit log: `dataeng-magics stats`, `%transform stats`.

Everything is derived from what is recorded anyway (entries, runs, audit events), so the
figures cover every path (CLI, notebook, papermill) and need no counters of their own.

- cache hit rate: of the times a transformation was needed, the share served by an
  approved cached plan with no planner (runs) rather than planned afresh (drafts);
- tokens: in and out, in total, per client, per LLM draft and revision, per model call;
- time from draft to approval: every approval, timed from the start of its cycle: the
  key's first draft, or first revision that changed the plan, after its last approval,
  rejection or revocation (so an approval after a ``revise`` counts too);
- runs: how many, their outcomes and how long they took.
"""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

from dataeng_magics.state.audit import AuditTrail
from dataeng_magics.state.store import Store

# "invalidation" is what logs written before the revoke vocabulary call a revocation.
_CYCLE_ENDS = {"approval", "rejection", "revocation", "invalidation"}


def _spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "mean": None, "max": None}
    return {
        "median": statistics.median(values),
        "mean": statistics.fmean(values),
        "max": max(values),
    }


def collect(store: Store, audit: AuditTrail, client: str | None = None) -> dict[str, Any]:
    """The figures, as plain data (``--json`` prints exactly this)."""
    entries = store.list(client)
    keys = {e.key for e in entries}
    runs = [r for r in store.runs() if client is None or r.key in keys]
    events = list(audit.events(client=client))
    drafts = [e for e in events if e.event == "draft"]
    revisions = [e for e in events if e.event == "revision"]

    by_status: dict[str, int] = {}
    for entry in entries:
        by_status[entry.status] = by_status.get(entry.status, 0) + 1
    needed = len(runs) + len(drafts)

    def tokens(items: list[Any]) -> dict[str, Any]:
        llm = [e for e in items if e.details.get("calls")]
        spent_in = [int(e.details.get("tokens_in", 0)) for e in llm]
        spent_out = [int(e.details.get("tokens_out", 0)) for e in llm]
        return {
            "count": len(llm),
            "calls": sum(int(e.details.get("calls", 0)) for e in llm),
            "tokens_in": sum(spent_in),
            "tokens_out": sum(spent_out),
            "mean_in": statistics.fmean(spent_in) if llm else None,
            "mean_out": statistics.fmean(spent_out) if llm else None,
            "repaired": sum(bool(e.details.get("repaired")) for e in llm),
            "refused": sum(bool(e.details.get("refused")) for e in llm),
        }

    per_client: dict[str, dict[str, int]] = {}
    for entry in entries:
        spent = per_client.setdefault(entry.client, {"tokens_in": 0, "tokens_out": 0})
        spent["tokens_in"] += entry.tokens_in
        spent["tokens_out"] += entry.tokens_out

    started: dict[str, datetime] = {}
    approvals = 0
    waits: list[float] = []
    for event in events:
        if event.key is None:
            continue
        if event.event == "draft" or (event.event == "revision" and event.details.get("changes")):
            started.setdefault(event.key, event.time)
        elif event.event in _CYCLE_ENDS:
            begun = started.pop(event.key, None)
            if event.event == "approval":
                approvals += 1
                if begun is not None:  # None only when the log starts mid-cycle
                    waits.append((event.time - begun).total_seconds())

    outcomes: dict[str, int] = {}
    for run in runs:
        outcomes[run.outcome] = outcomes.get(run.outcome, 0) + 1
    in_progress = list(store.run_states(entries).values())
    draft_tokens, revision_tokens = tokens(drafts), tokens(revisions)
    return {
        "client": client,
        "entries": len(entries),
        "by_status": by_status,
        "cache": {
            "hits": len(runs),
            "misses": len(drafts),
            "hit_rate": len(runs) / needed if needed else None,
        },
        "tokens": {
            "tokens_in": sum(e.tokens_in for e in entries),
            "tokens_out": sum(e.tokens_out for e in entries),
            "calls": draft_tokens["calls"] + revision_tokens["calls"],
            "drafts": draft_tokens,
            "revisions": revision_tokens,
            "per_client": per_client,
        },
        "draft_to_approval_seconds": {"count": approvals, **_spread(waits)},
        "runs": {
            "count": len(runs),
            "outcomes": outcomes,
            "seconds": _spread([r.seconds for r in runs]),
            "running": in_progress.count("running"),
            "interrupted": in_progress.count("interrupted"),
        },
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def to_text(stats: dict[str, Any]) -> str:
    """The figures for people, one topic per line."""
    cache, tok, wait, runs = (
        stats["cache"],
        stats["tokens"],
        stats["draft_to_approval_seconds"],
        stats["runs"],
    )
    status = ", ".join(f"{k} {v}" for k, v in sorted(stats["by_status"].items())) or "none"
    rate = "-" if cache["hit_rate"] is None else f"{cache['hit_rate']:.0%}"
    lines = [
        f"entries: {stats['entries']} ({status})"
        + (f" for client {stats['client']}" if stats["client"] else ""),
        f"cache hit rate: {rate} ({cache['hits']} run(s) served by an approved plan, "
        f"{cache['misses']} draft(s) planned)",
        f"tokens: {tok['tokens_in']:,} in / {tok['tokens_out']:,} out in {tok['calls']} "
        f"model call(s)",
    ]
    for label, part in (("LLM draft", tok["drafts"]), ("LLM revision", tok["revisions"])):
        if part["count"]:
            lines.append(
                f"  per {label}: {part['mean_in']:,.0f} in / {part['mean_out']:,.0f} out on "
                f"average over {part['count']} ({part['repaired']} repaired, "
                f"{part['refused']} refused)"
            )
    for name, spent in sorted(tok["per_client"].items()):
        if spent["tokens_in"] or spent["tokens_out"]:
            lines.append(
                f"  client {name}: {spent['tokens_in']:,} in / {spent['tokens_out']:,} out"
            )
    lines.append(
        f"draft to approval: {wait['count']} approval(s), median {_duration(wait['median'])}, "
        f"mean {_duration(wait['mean'])}, longest {_duration(wait['max'])}"
    )
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(runs["outcomes"].items())) or "none"
    seconds = runs["seconds"]
    lines.append(
        f"runs: {runs['count']} ({outcomes}); median {_duration(seconds['median'])}, "
        f"mean {_duration(seconds['mean'])}, longest {_duration(seconds['max'])}"
    )
    if runs["running"] or runs["interrupted"]:
        lines.append(
            f"  now: {runs['running']} running, {runs['interrupted']} interrupted "
            "(started and never finished)"
        )
    return "\n".join(lines)
