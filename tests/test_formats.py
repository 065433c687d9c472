"""Client files as they arrive, end to end on real local Spark: each held-in example
(fixed-width with a layout, a glob of gzip parts, a JSON document, XML) through draft,
approve and run with the CLI to the expected output; what the sample saw is what the
run reads; malformed records fail the run, named."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from openpyxl import Workbook

from dataeng_magics.cli import main
from dataeng_magics.compile.cell import render_parameters
from dataeng_magics.config import load_settings
from dataeng_magics.errors import SourceError
from dataeng_magics.mapping.model import SourceSpec
from dataeng_magics.plan.model import SourceRead
from dataeng_magics.run.executors.base import Job, JobResult
from dataeng_magics.run.executors.local import LocalExecutor
from dataeng_magics.sources.readers import reader_for
from dataeng_magics.sources.sampling import sample
from dataeng_magics.workflow import TransformRequest, TransformSession

FORMATS = Path(__file__).resolve().parent / "data" / "formats"
EXAMPLES = ["fixed_width", "gzip_parts", "json_document", "xml"]

pytestmark = pytest.mark.spark  # and the connect tests below


@pytest.fixture
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A private copy of one held-in example; returns its mapping workbook."""
    target = tmp_path / request.param
    shutil.copytree(FORMATS / request.param, target)
    return target / "mapping.xlsx"


def session(mapping: Path, **settings: Any) -> TransformSession:
    request = TransformRequest(client="ACME", mapping=mapping)
    return TransformSession(request, load_settings(**settings))


def plain(value: Any) -> Any:
    """An output value as expected.json writes it."""
    if value is None or (not isinstance(value, str | list) and pd.isna(value)):
        return None
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


@pytest.mark.parametrize("client", EXAMPLES, indirect=True)
def test_example_drafts_approves_and_runs_to_the_expected_output(
    client: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--client", "ACME", "--mapping", str(client)]
    assert main(["draft", *base]) == 0
    assert main(["approve", *base, "--reviewer", "alice"]) == 0
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["run", *base, "--output-dir", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["outcome"] == "succeeded"
    expected = json.loads((client.parent / "expected.json").read_text())
    for table, rows in expected.items():
        frame = pd.read_parquet(out / table)
        got = [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]
        key = next(iter(rows[0]))
        assert sorted(got, key=lambda r: str(r[key])) == sorted(rows, key=lambda r: str(r[key]))
        checks = {c["kind"] for t in summary["validation"]["tables"] for c in t["checks"]}
        if client.parent.name != "json_document" and client.parent.name != "fixed_width":
            assert "malformed" in checks  # text sources count malformed records
    # a replay (no LLM, no widget) finds the approval
    capsys.readouterr()
    assert main(["run", *base, "--output-dir", str(out)]) == 0


def _same(sampled: Any, read: Any, kind: str) -> bool:
    """A sample value and the run's value of one field (text for text sources)."""
    if sampled is None or (not isinstance(sampled, str) and pd.isna(sampled)):
        return read is None
    if kind in ("bigint", "int", "double", "float") and isinstance(read, str):
        return Decimal(read.strip()) == Decimal(str(sampled))
    if kind == "boolean" and isinstance(read, str):
        return read.strip().lower() == str(sampled).lower()
    return str(read) == str(sampled) if isinstance(read, str) else read == sampled


@pytest.mark.parametrize("client", EXAMPLES, indirect=True)
def test_the_sample_is_what_the_run_reads(client: Path, spark: Any) -> None:
    """For every source of every example: the sample's rows are the first rows the
    compiled read gives for the same file, value for value, none missing or extra."""
    s = session(client)
    for name, whole in s.samples.items():
        for file in whole.files:  # each part of a many-file source, sampled on its own
            _run_reads_the_sample(spark, s.mapping.sources[name].model_copy(update={"path": file}))


def _run_reads_the_sample(spark: Any, spec: SourceSpec) -> None:
    smp = sample(spec)
    read = SourceRead(
        format=spec.format, delimiter=spec.delimiter, header=spec.header,
        encoding=spec.encoding, record_path=spec.record_path, row_tag=spec.row_tag,
        layout=spec.layout, columns=smp.schema,
    )  # fmt: skip
    code = reader_for(read).read_code("src", spec.name, read, list(smp.schema), lambda b: b)
    params = render_parameters({spec.name: spec.path}, "unused", "parquet")
    namespace: dict[str, Any] = {"spark": spark}
    head = ["from pyspark.sql import Observation", "from pyspark.sql import functions as F"]
    exec("\n".join([params, *head, *code.lines]), namespace)
    rows = namespace["src"].collect()
    assert len(rows) == len(smp.frame), spec.path
    for got, (_, want) in zip(rows, smp.frame.iterrows(), strict=True):
        for column, kind in smp.schema.items():
            assert _same(want[column], got[column], kind), (spec.path, column, got, want)


@pytest.mark.parametrize("sep", ["|", "\t", ";", "~|~"])
def test_delimiters_read_the_same_in_sample_and_run(tmp_path: Path, sep: str, spark: Any) -> None:
    rows = [["id", "note"], ["1", f"a {sep} b"], ["2", 'say "hi"\nnext line'], ["3", "plain"]]
    text = "".join(
        sep.join('"' + v.replace('"', '""') + '"' if i else v for i, v in enumerate(row)) + "\n"
        for row in rows
    )
    path = tmp_path / "d.txt"
    path.write_text(text)
    _run_reads_the_sample(spark, SourceSpec(name="d", path=str(path), format="csv", delimiter=sep))


def _csv_client(tmp_path: Path, lines: list[str]) -> Path:
    """A one-source client whose CSV holds ``lines``, and a filter dropping JUNK rows."""
    folder = tmp_path / "client"
    folder.mkdir(parents=True)
    (folder / "notes.csv").write_text("".join(lines), encoding="utf-8")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Mapping"
    for row in [
        ["Target Table", "Target Column", "Data Type", "Source", "Source Column",
         "Transformation Rule", "Required"],
        ["NOTES", "ID", "bigint", "notes", "id", "copy", "Y"],
        ["NOTES", "STATUS", "string", "notes", "status", "copy", "Y"],
        ["NOTES", "NOTE", "string", "notes", "note", "copy", "N"],
    ]:  # fmt: skip
        sheet.append(row)
    filters = book.create_sheet("Filters")
    filters.append(["Target Table", "Condition"])
    filters.append(["NOTES", "status <> 'JUNK'"])
    book.save(folder / "mapping.xlsx")
    return folder / "mapping.xlsx"


class Recording(LocalExecutor):
    """The local executor, keeping the jobs it ran (their code: parameters and body)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.jobs: list[Job] = []

    def run(self, job: Job) -> JobResult:
        self.jobs.append(job)
        return super().run(job)


def test_a_quoted_line_break_deep_in_a_csv_is_one_record(tmp_path: Path, spark: Any) -> None:
    """Row 3,000 holds a quoted line break the 100-row sample never sees: the run reads
    3,000 records, not 3,001 rows with half a record as data (issue 12), because the
    run's scan finds it and keeps the whole-record (multiLine) read."""
    lines = ["id,status,note\n"] + [f"{i},OK,plain\n" for i in range(1, 3001)]
    lines[3000] = '3000,OK,"two\nlines, one record"\n'
    mapping = _csv_client(tmp_path, lines)
    s = session(mapping)
    s.draft()
    s.approve("alice")
    executor = Recording()
    summary = s.run(output_dir=str(tmp_path / "out"), executor=executor)
    assert "\nmultiline = {}\n" in executor.jobs[0].code
    assert summary.outcome == "succeeded"
    assert summary.rows_in == summary.rows_out == 3000
    frame = pd.read_parquet(tmp_path / "out" / "NOTES")
    assert frame.loc[frame["ID"] == 3000, "NOTE"].tolist() == ["two\nlines, one record"]


def test_a_csv_without_records_spanning_lines_is_read_by_lines_to_the_same_output(
    tmp_path: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quoted fields with separators and doubled quotes but no quoted line break, \\r\\n
    line ends: the run reads the file by lines (split across tasks: 16 KB splits here)
    and writes exactly what the whole-record read writes, with the same counts."""
    notes = ['"a, b"', '"said ""hi"""', "plain", '""', "é ü"]
    lines = ["id,status,note\r\n"] + [
        f"{i},{'JUNK' if i % 97 == 0 else 'OK'},{notes[i % 5]}\r\n" for i in range(1, 5001)
    ]
    mapping = _csv_client(tmp_path, lines)
    assert (mapping.parent / "notes.csv").stat().st_size > 4 * (16 << 10)
    s = session(mapping)
    s.draft()
    s.approve("alice")
    split = {"spark.sql.files.maxPartitionBytes": str(16 << 10)}
    try:
        by_lines = Recording(spark_conf=split)
        fast = s.run(output_dir=str(tmp_path / "lines"), executor=by_lines)
        monkeypatch.setattr("dataeng_magics.run.inputs.line_reads", lambda *_: {})
        whole = Recording(spark_conf=split)
        safe = s.run(output_dir=str(tmp_path / "whole"), executor=whole)
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert '\nmultiline = {"notes": "false"}\n' in by_lines.jobs[0].code
    assert "\nmultiline = {}\n" in whole.jobs[0].code
    # One task per split by lines (a part file each), one for the file read whole.
    parts = {d: len(list((tmp_path / d / "NOTES").glob("*.parquet"))) for d in ("lines", "whole")}
    assert parts["lines"] > 1 and parts["whole"] == 1
    assert fast.outcome == safe.outcome == "succeeded"
    assert (fast.rows_in, fast.rows_out) == (safe.rows_in, safe.rows_out) == (5000, 4949)
    assert fast.report.to_dict() == safe.report.to_dict()
    read = pd.read_parquet(tmp_path / "lines" / "NOTES").sort_values("ID", ignore_index=True)
    expected = pd.read_parquet(tmp_path / "whole" / "NOTES").sort_values("ID", ignore_index=True)
    pd.testing.assert_frame_equal(read, expected)
    assert read.loc[read["ID"].isin([1, 4, 5]), "NOTE"].tolist() == ['said "hi"', "é ü", "a, b"]


def test_malformed_records_fail_the_run_naming_file_and_line(tmp_path: Path, spark: Any) -> None:
    """A junk row with too many fields (which the filter would remove) and a file cut
    off mid-record: both counted before the filter, the run fails, the first is named."""
    lines = ["id,status,note\n"] + [f"{i},OK,plain\n" for i in range(1, 201)]
    lines.insert(151, "150,JUNK,too,many,fields\n")
    lines.append("201,OK")  # cut off before its last field
    mapping = _csv_client(tmp_path, lines)
    s = session(mapping)
    s.draft()
    s.approve("alice")
    summary = s.run(output_dir=str(tmp_path / "out"))
    assert summary.outcome == "validation_failed"
    (check,) = [c for c in summary.report.failures if c.kind == "malformed"]
    assert check.failed == 2 and check.column == "notes"
    assert "notes.csv, line 152" in check.message and "JUNK" in check.message
    assert summary.rows_out == 200  # the malformed records never reach the output


def test_xml_is_refused_at_draft_where_spark_has_no_xml_reader(tmp_path: Path) -> None:
    shutil.copytree(FORMATS / "xml", tmp_path / "xml")
    mapping = tmp_path / "xml" / "mapping.xlsx"
    with pytest.raises(SourceError) as info:
        session(mapping, platform_spark_version="3.5").draft()
    text = str(info.value)
    assert "'positions' is XML" in text and "Spark 3.5" in text and "'local'" in text
    assert info.value.sheet == "Sources" and info.value.row == 2
    with pytest.raises(SourceError, match="platform_spark_version"):
        session(mapping, platform="fabric").draft()
    assert session(mapping, platform_spark_version="databricks 15.4").draft().code


@pytest.mark.connect
@pytest.mark.parametrize("client", EXAMPLES, indirect=True)
def test_example_runs_over_spark_connect(
    client: Path, tmp_path: Path, spark_connect_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same approved code on a Spark Connect server; for XML the draft asks the
    server its Spark version."""
    from dataeng_magics.run.executors.connect import ConnectExecutor

    monkeypatch.setenv("DATAENG_MAGICS_CONNECT", json.dumps({"url": spark_connect_server.url}))
    s = TransformSession(
        TransformRequest(client="ACME", mapping=client, platform="connect"), load_settings()
    )
    s.draft()
    s.approve("alice")
    executor = ConnectExecutor(spark_connect_server.url, poll_seconds=0.2)
    summary = s.run(output_dir=str(tmp_path / "out"), executor=executor)
    assert summary.outcome == "succeeded" and summary.platform == "connect"
    expected = json.loads((client.parent / "expected.json").read_text())
    for table, rows in expected.items():
        assert len(pd.read_parquet(tmp_path / "out" / table)) == len(rows)


def test_a_quoted_line_break_at_row_3_and_a_cut_off_file(tmp_path: Path, spark: Any) -> None:
    """Issue 12's two probes: three records with a quoted line break in the third are
    three rows, in the sample and in the run; the same file cut off inside its last
    record (past the rows the sample reads; Spark reads it to the end of the file without
    complaint) fails the run naming the file and that line."""
    lines = ["id,status,note\n", "1,OK,plain\n", "2,OK,plain\n", '3,OK,"two\nlines"\n']
    s = session(_csv_client(tmp_path / "whole", lines))
    assert len(s.samples["notes"].frame) == 3
    s.draft()
    s.approve("alice")
    summary = s.run(output_dir=str(tmp_path / "out"))
    assert summary.outcome == "succeeded" and summary.rows_in == summary.rows_out == 3
    good = [f"{i},OK,plain\n" for i in range(1, 201)]  # more than the sample reads
    cut = [lines[0], *good, '201,OK,"two\nli']  # the export stopped inside a quoted field
    s = session(_csv_client(tmp_path / "cut", cut))
    s.draft()
    s.approve("alice")
    summary = s.run(output_dir=str(tmp_path / "out2"))
    assert summary.outcome == "validation_failed"
    (check,) = [c for c in summary.report.failures if c.kind == "malformed"]
    assert check.failed == 1 and "notes.csv, line 202" in check.message
    assert "never closed" in check.message
