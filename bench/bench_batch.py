"""Benchmark: the busy season, N approved clients re-run (goal on a 2-core machine, 100
clients: under 3 minutes through papermill, under 90 s through a manifest).

Run: ``python bench/bench_batch.py [--clients 100] [--jobs auto]``. N copies of the
bundled example client, each approved under its own client id, in a fresh state folder;
then, each as its own command in a subprocess (as a user runs them, Spark start-up
included):

- ``replay``: the batch template notebook through papermill, ``--jobs``, one shared
  Spark Connect server;
- ``batch``: a manifest of the N clients, one process, one Spark session;
- ``run``: one client alone, the unit the other two are compared with.

The figures are printed on the last line as ``name=value`` pairs: seconds, seconds per
client, and each way's seconds per client over the single run's seconds.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "example_notebooks"
MAPPING = "data/northwind/northwind.xlsx"


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "dataeng_magics", *argv],
        cwd=cwd, env=env, capture_output=True, text=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(
            f"{argv[0]} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--jobs", default="auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="dem-bench-batch-") as tmp:
        root = Path(tmp)
        work = root / "nb"
        shutil.copytree(EXAMPLES, work, ignore=shutil.ignore_patterns("out", "replayed"))
        env = {**os.environ, "DATAENG_MAGICS_HOME": str(root / "state")}
        env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.update(env)
        from dataeng_magics.config import load_settings
        from dataeng_magics.workflow import TransformRequest, TransformSession

        clients = [f"BENCH-{n:04d}" for n in range(args.clients)]
        settings = load_settings()
        for client in clients:
            request = TransformRequest(client=client, mapping=work / MAPPING)
            session = TransformSession(request, settings)
            session.draft()
            session.approve("bench")

        manifest = work / "clients.csv"
        with manifest.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["client", "mapping", "output_dir"])
            writer.writerows([c, MAPPING, f"out/batch/{c}"] for c in clients)

        jobs = ["--jobs", args.jobs]
        replay_s = timed(
            ["replay", "02_batch_replay.ipynb", *(a for c in clients for a in ("--client", c)),
             *jobs, "--output-notebooks", str(root / "replayed")],
            work, env,
        )  # fmt: skip
        batch_s = timed(["batch", "--manifest", str(manifest), *jobs], work, env)
        single_s = timed(
            ["run", "--client", clients[0], "--mapping", MAPPING, "--output-dir", "out/single"],
            work, env,
        )  # fmt: skip

    n = args.clients
    print(
        f"clients={n} jobs={args.jobs} replay_s={replay_s:.1f} "
        f"replay_s_per_client={replay_s / n:.2f} batch_s={batch_s:.1f} "
        f"batch_s_per_client={batch_s / n:.2f} single_run_s={single_s:.1f} "
        f"replay_per_client/single={replay_s / n / single_s:.3f} "
        f"batch_per_client/single={batch_s / n / single_s:.3f}"
    )


if __name__ == "__main__":
    main()
