"""Databricks Connect (``DatabricksSession``) runs the example client against the local
Spark Connect server.

databricks-connect ships its own ``pyspark`` and cannot share an environment with the
``pyspark`` distribution this project depends on, so the client runs in a separate
virtual environment, built once and cached (``DATAENG_MAGICS_DBCONNECT_VENV``, default
``~/.cache/dataeng-magics/venv-dbconnect-16.1.7-<hash of its packages>``). Where it
cannot be built (no package index), the test is skipped and says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from spark_servers import Server

pytestmark = pytest.mark.connect

REPO = Path(__file__).resolve().parent.parent
VERSION = "16.1.7"  # the last line for Python 3.11; bundles a PySpark 3.5.2 client


def _own_dependencies() -> list[str]:
    """What dataeng_magics itself needs (pyproject.toml), without the pyspark it would
    pull in: databricks-connect brings its own."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [d.split("#")[0].strip() for d in project["dependencies"] if not d.startswith("pyspark")]


PACKAGES = [
    f"databricks-connect=={VERSION}", "numpy<2", "pyarrow<19", "pandas<3",
    *_own_dependencies(),
]  # fmt: skip

SCRIPT = """
import json, sys
from pathlib import Path
from dataeng_magics.config import load_settings
from dataeng_magics.run.executors.connect import ConnectExecutor
from dataeng_magics.workflow import TransformRequest, TransformSession

url, mapping, out = sys.argv[1:4]
import pyspark, databricks.connect
s = TransformSession(TransformRequest(client="NORTHWIND", mapping=Path(mapping)), load_settings())
s.draft()
s.approve("alice")
executor = ConnectExecutor(url, databricks=True)
summary = s.run(output_dir=out, executor=executor)
spark = executor.session()
print(json.dumps({**summary.to_dict(), "details": summary.details,
                  "session": type(spark).__module__, "pyspark": pyspark.__version__}))
"""


def venv_dir() -> Path:
    # Named by what it holds, so a new dependency builds a new environment.
    packages = hashlib.sha256("\n".join(PACKAGES).encode()).hexdigest()[:8]
    default = Path.home() / ".cache" / "dataeng-magics" / f"venv-dbconnect-{VERSION}-{packages}"
    return Path(os.environ.get("DATAENG_MAGICS_DBCONNECT_VENV", default))


def build_venv() -> Path:
    """The cached environment, built on first use (about a minute), else a skip."""
    target = venv_dir()
    python = target / "bin" / "python"
    if python.exists():
        return python
    staging = target.with_name(target.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(staging)],
        [str(staging / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", *PACKAGES],
    ]  # fmt: skip
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no output"])[-1]
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"cannot build the databricks-connect {VERSION} environment: {why}")
    staging.rename(target)  # complete environments only, never a half-built one
    return python


def test_databricks_session_runs_the_example_client(
    spark_connect_server: Server, example: Path, tmp_path: Path
) -> None:
    python = build_venv()
    env = {**os.environ, "PYTHONPATH": str(REPO), "DATAENG_MAGICS_HOME": str(tmp_path / "state")}
    for name in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "DATABRICKS_HOST",
                 "DATABRICKS_TOKEN", "SPARK_HOME"):  # fmt: skip
        env.pop(name, None)
    out = tmp_path / "out"
    done = subprocess.run(
        [str(python), "-c", SCRIPT, spark_connect_server.url, str(example), str(out)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["pyspark"].startswith("3.5")  # really the Databricks Connect client
    assert summary["session"].startswith(("databricks.connect", "pyspark.sql.connect"))
    assert summary["outcome"] == "succeeded" and summary["platform"] == "connect"
    assert summary["details"]["client"] == "databricks-connect"
    assert summary["rows_in"] > 5000
    assert pq.read_table(out / "TRADES").num_rows > 0
