"""``export-test``: the approved transformation as a self-contained pytest module.

The module holds the samples (the files the preview writes, base64), the approved code
(one line of it per line of the module, so a changed line shows in a diff), its sha256,
and the output that code computed from those samples when exported. A client's CI runs
it with local PySpark alone: it fails when the code or Spark's behaviour changes.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataeng_magics import __version__
from dataeng_magics.compile.cell import render_parameters
from dataeng_magics.compile.safety import RUN_PARAMETERS

if TYPE_CHECKING:
    from dataeng_magics.state.store import Entry
    from dataeng_magics.workflow import TransformSession


def rows_of(frame: Any) -> list[str]:
    """A table's rows in one comparable form: each row as JSON text of its values'
    ``str``, sorted (the module has the same function)."""
    return sorted(
        json.dumps([None if v is None else str(v) for v in row]) for row in frame.collect()
    )


_TEMPLATE = '''\
"""The approved transformation of client {client} (key {key}), as a regression test.

Exported by dataeng-magics {version}. Needs only pytest and pyspark (local Spark, Java 17):
    pytest {name}
It fails if the approved code (code sha256 {code_sha256}) or Spark's behaviour changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

CLIENT = {client!r}
KEY = {key!r}
CODE_SHA256 = {code_sha256!r}
CODE = "".join([
{code_lines}])
#: source -> (the path to read, relative to the test's folder; its files, base64)
SAMPLES: dict[str, tuple[str, dict[str, str]]] = {samples}
#: table -> (schema, rows) as the approved code wrote them from SAMPLES when exported
EXPECTED: dict[str, tuple[str, list[str]]] = {expected}
#: the run's own parameters, at their defaults (no controls; CSV read whole-record)
RUN_DEFAULTS = {run_defaults!r}


@pytest.fixture(scope="module")
def spark() -> Any:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[1]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )


def rows_of(frame: Any) -> list[str]:
    rows = frame.collect()
    return sorted(json.dumps([None if v is None else str(v) for v in row]) for row in rows)


def test_the_code_is_the_approved_code() -> None:
    assert hashlib.sha256(CODE.encode("utf-8")).hexdigest() == CODE_SHA256


def test_the_approved_code_gives_the_approved_output(spark: Any, tmp_path: Path) -> None:
    paths = {{}}
    for source, (path, files) in SAMPLES.items():
        for name, data in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(base64.b64decode(data))
        paths[source] = str(tmp_path / path)
    out = tmp_path / "out"
    scope = {{"spark": spark, "source_paths": paths, "output_dir": str(out),
              "output_format": "parquet", **RUN_DEFAULTS}}
    exec(compile(CODE, "<approved code>", "exec"), scope)
    for table, (schema, rows) in EXPECTED.items():
        frame = spark.read.parquet(str(out / table))
        assert frame.schema.simpleString() == schema, table
        assert rows_of(frame) == rows, table
'''


def export_test(session: TransformSession, entry: Entry, name: str) -> str:
    """The pytest module's text for ``entry`` (approved), computed on local Spark."""
    from dataeng_magics.run.executors.base import Job
    from dataeng_magics.run.executors.local import execute, spark_session
    from dataeng_magics.workflow import write_samples

    spark = spark_session()
    with tempfile.TemporaryDirectory(prefix="dem-export-") as tmp:
        folder = Path(tmp)
        written = write_samples(session.samples, session.mapping, folder)
        samples: dict[str, tuple[str, dict[str, str]]] = {}
        for source, path in written.items():
            root = Path(path)
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            samples[source] = (
                root.relative_to(folder).as_posix(),
                {f.relative_to(folder).as_posix(): base64.b64encode(f.read_bytes()).decode()
                 for f in files},
            )  # fmt: skip
        out = folder / "out"
        params = render_parameters(written, str(out), "parquet")
        job = Job(name=f"export-test {entry.client}", client=entry.client, key=entry.key, code="")
        execute(f"{params}\n{entry.code}", spark, job)
        expected = {}
        for table in session.plan_of(entry).tables:
            frame = spark.read.parquet(str(out / table.name))
            expected[table.name] = (frame.schema.simpleString(), rows_of(frame))
    code_lines = "".join(f"    {line!r},\n" for line in entry.code.splitlines(keepends=True))
    return _TEMPLATE.format(
        client=entry.client,
        key=entry.key,
        version=__version__,
        name=name,
        code_sha256=entry.code_sha256,
        code_lines=code_lines,
        samples=json.dumps(samples, indent=1),
        expected=json.dumps(expected, indent=1),
        run_defaults=RUN_PARAMETERS,
    )
