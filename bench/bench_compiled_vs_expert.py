"""Compiled code vs a hand-written expert version of the same TRADES transformation.

Generates a ~1 GB trades CSV shaped like the example client, compiles the example
plan (TRADES only, so both sides do the same work), and runs compiled and expert code
alternately in ONE Spark session. Prints the median time ratio (target <= 1.05).

    python bench/bench_compiled_vs_expert.py [--rows 8500000] [--repeats 3]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=8_500_000, help="~1 GB at the default")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from dataeng_magics.compile.cell import render_parameters
    from dataeng_magics.compile.codegen import compile_plan
    from dataeng_magics.config import load_settings
    from dataeng_magics.run.executors.base import Job
    from dataeng_magics.run.executors.local import execute, spark_session
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
        paths = {n: s.path for n, s in session.mapping.sources.items()}
        spark = spark_session()
        timings: dict[str, list[float]] = {"compiled": [], "expert": []}
        for i in range(-1, args.repeats):  # round -1 warms up the JVM and is not counted
            for name in ("compiled", "expert"):
                out = work / f"out-{name}-{i}"
                started = time.perf_counter()
                if name == "compiled":
                    code = render_parameters(paths, str(out), "parquet") + compile_plan(plan)
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
        compiled, hand = (statistics.median(timings[k]) for k in ("compiled", "expert"))
        print(f"compiled_s={compiled:.1f} expert_s={hand:.1f} size_gb={size_gb:.2f} "
              f"ratio={compiled / hand:.3f} (target <= 1.05)")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
