"""Compiled code vs a hand-written expert version of the same TRADES transformation.

Generates a ~1 GB trades CSV shaped like the example client, compiles the example
plan (TRADES only, so both sides do the same work) with its default checks (required
columns not null, duplicated lookup keys, row accounting), and runs compiled and expert
code (no checks) alternately in ONE Spark session. Prints the median time ratio
(target <= 1.05). With ``--per-check`` it then adds one check of each kind in turn and
prints each kind's cost over the plan with default checks.

    python bench/bench_compiled_vs_expert.py [--rows 8500000] [--repeats 3] [--per-check]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "example_notebooks" / "data"


def _load(path: Path, name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: One check of each kind on the example's TRADES table (its target columns).
PER_CHECK: dict[str, tuple[list[str], str, str]] = {
    "not_null": (["SETTLE_DATE"], "not null", "warn"),
    "unique": (["TRADE_ID"], "unique", "warn"),
    "one_of": (["CURRENCY"], "one of USD, EUR, GBP, JPY, CHF", "warn"),
    "between": (["QUANTITY"], "between 1 and 1000000", "warn"),
    "compare": (["AMOUNT"], "> 0", "warn"),
    "matches": (["TRADE_ID"], "matches 'T[0-9]{6}'", "warn"),
    "sql": ([], "sql: SIGNED_AMOUNT <= AMOUNT OR SIDE = 'BUY'", "warn"),
    "total": (["AMOUNT"], "total equals source Amount x 1000", "warn"),
    "quarantine": (["AMOUNT"], "> 0", "quarantine"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=8_500_000, help="~1 GB at the default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--per-check", action="store_true", help="also time each check kind")
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from dataeng_magics.compile.cell import render_parameters, run_parameters
    from dataeng_magics.compile.codegen import compile_plan
    from dataeng_magics.config import load_settings
    from dataeng_magics.plan.checks import parse_check
    from dataeng_magics.run.executors.base import Job
    from dataeng_magics.run.executors.local import execute, spark_session
    from dataeng_magics.run.inputs import line_reads
    from dataeng_magics.workflow import TransformRequest, TransformSession

    generate = _load(EXAMPLE / "generate.py", "generate")
    expert = _load(REPO / "bench" / "bench_expert.py", "bench_expert")
    work = Path(tempfile.mkdtemp(prefix="dem-bench-"))
    try:
        shutil.copytree(EXAMPLE / "northwind", work / "northwind")
        trades = work / "northwind" / "trades.csv"
        started = time.perf_counter()
        generate.write_trades_csv(trades, args.rows)
        size_gb = trades.stat().st_size / 1e9
        took = time.perf_counter() - started
        print(f"generated {args.rows:,} rows, {size_gb:.2f} GB in {took:.0f}s")

        settings = load_settings(home=work / "state")
        session = TransformSession(
            TransformRequest(client="NORTHWIND", mapping=work / "northwind" / "northwind.xlsx"),
            settings,
        )
        plan = session.baseline
        plan = plan.model_copy(update={"tables": [plan.table("TRADES")]})
        plans = {"compiled": plan}
        if args.per_check:
            for name, (columns, phrase, action) in PER_CHECK.items():
                check = parse_check(phrase, columns, action)  # type: ignore[arg-type]
                table = plan.tables[0].model_copy(update={"checks": [check]})
                plans[name] = plan.model_copy(update={"tables": [table]})
        paths = {n: s.path for n, s in session.mapping.sources.items()}
        spark = spark_session()
        timings: dict[str, list[float]] = {name: [] for name in [*plans, "expert"]}
        for i in range(-1, args.repeats):  # round -1 warms up the JVM and is not counted
            for name in timings:
                out = work / f"out-{name}-{i}"
                started = time.perf_counter()
                if name != "expert":
                    # as a run does: scan the CSV, read it by lines when no record spans lines
                    lines = run_parameters(multiline=line_reads(session.mapping, True))
                    params = render_parameters(paths, str(out), "parquet") + lines
                    code = params + compile_plan(plans[name])
                    execute(
                        code, spark, Job(name="bench", client="NORTHWIND", key="bench", code=code)
                    )
                else:
                    expert.expert_trades(spark, paths["trades"], paths["counterparties"],
                                         str(out / "TRADES"))  # fmt: skip
                elapsed = time.perf_counter() - started
                if i >= 0:
                    timings[name].append(elapsed)
                print(f"run {i + 1 or 'warm-up'} {name}: {elapsed:.1f}s", flush=True)
                shutil.rmtree(out, ignore_errors=True)
        for name, runs in timings.items():  # the spread, so a noisy machine shows
            print(f"{name}: median {statistics.median(runs):.1f}s, "
                  f"min {min(runs):.1f}s, max {max(runs):.1f}s")  # fmt: skip
        compiled, hand = (statistics.median(timings[k]) for k in ("compiled", "expert"))
        print(f"compiled_s={compiled:.1f} expert_s={hand:.1f} size_gb={size_gb:.2f} "
              f"ratio={compiled / hand:.3f} (target <= 1.05)")  # fmt: skip
        for name in PER_CHECK if args.per_check else ():
            took = statistics.median(timings[name])
            print(f"check {name}: {took:.1f}s, cost {took / compiled - 1:+.1%} over default checks")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
