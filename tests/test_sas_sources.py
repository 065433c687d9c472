"""A SAS token in a source URL is a credential, not a path: the run reads the data
through it, and it reaches no cell, parameters block, run code, store row, audit record,
evidence file, exported test, output or log. Against Azurite (the Blob emulator)."""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
from openpyxl import load_workbook
from spark_servers import Azurite

from dataeng_magics.cli import main
from dataeng_magics.compile.cell import render_parameters
from dataeng_magics.config import load_settings
from dataeng_magics.errors import ExecutionError, PlanError
from dataeng_magics.mapping.read import read_mapping
from dataeng_magics.redact import split_credential
from dataeng_magics.run.executors.base import Executor, Job, JobResult
from dataeng_magics.sources import credentials
from dataeng_magics.workflow import TransformRequest, TransformSession, run_cell

EXAMPLE = Path(__file__).resolve().parent.parent / "example_notebooks" / "data" / "northwind"
FILES = {"trades": "trades.csv", "counterparties": "counterparties.parquet"}


@pytest.fixture(scope="module")
def sas_lake(azurite: Azurite) -> tuple[str, str]:
    """The example client's files in container 'sasraw' and a read/list SAS for it:
    (the container's URL, the SAS query)."""
    from azure.storage.blob import (
        BlobServiceClient,
        ContainerSasPermissions,
        generate_container_sas,
    )

    service = BlobServiceClient.from_connection_string(azurite.connection_string())
    container = service.get_container_client("sasraw")
    if not container.exists():
        container.create_container()
        for name in FILES.values():
            container.upload_blob(f"northwind/{name}", (EXAMPLE / name).read_bytes())
    sas = generate_container_sas(
        azurite.account, "sasraw", account_key=azurite.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    return f"{azurite.endpoint}/sasraw/northwind", sas


@pytest.fixture(autouse=True)
def _fresh_credentials() -> None:
    credentials.forget()


def with_sas_sources(example: Path, root: str, sas: str) -> Path:
    """The example workbook with its Sources sheet naming the blobs, SAS included."""
    book = load_workbook(example)
    sheet = book["Sources"]
    for row in sheet.iter_rows(min_row=2):
        row[1].value = f"{root}/{FILES[str(row[0].value)]}?{sas}"
    path = example.with_name("northwind_sas.xlsx")
    book.save(path)
    return path


def test_a_secret_query_is_split_off_the_path() -> None:
    url = "https://acct.blob.core.windows.net/raw/t.csv?sv=2024-05-04&se=2030&sig=Zm9v%2Bbar%3D"
    assert split_credential(url) == (
        "https://acct.blob.core.windows.net/raw/t.csv",
        "sv=2024-05-04&se=2030&sig=Zm9v%2Bbar%3D",
    )
    assert split_credential("https://h/data.csv?version=3") == ("https://h/data.csv?version=3", "")
    assert split_credential("/data/t.csv") == ("/data/t.csv", "")
    params = render_parameters({"t": url}, "/out", "parquet")
    assert "sig=" not in params and "https://acct.blob.core.windows.net/raw/t.csv" in params


@pytest.mark.azurite
def test_a_sas_in_a_source_url_reaches_no_record_and_the_run_reads_through_it(
    sas_lake: tuple[str, str],
    example: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Drafted, approved, materialised, run, replayed from its cell (the credential from
    the workbook), run from the CLI with --source URL?SAS and exported with export-test:
    the signature is in none of what is written or printed, and every run reads the rows."""
    caplog.set_level(logging.DEBUG)
    root, sas = sas_lake
    signature = parse_qs(sas)["sig"][0]
    canaries = {signature, quote(signature, safe=""), sas}
    home = tmp_path / "home"
    monkeypatch.setenv("DATAENG_MAGICS_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    mapping = with_sas_sources(example, root, sas)
    settings = load_settings()
    session = TransformSession(TransformRequest(client="NORTHWIND", mapping=mapping), settings)
    assert session.mapping.sources["trades"].path == f"{root}/trades.csv"
    entry = session.draft()
    session.approve("alice")
    out = tmp_path / "out"
    cell = session.materialised_cell(output_dir=str(out))
    assert f'"trades": "{root}/trades.csv"' in cell

    first = session.run(output_dir=str(out))
    assert first.outcome == "succeeded" and first.rows_in > 0

    # The cell names the blob without its SAS; a new session (no credential remembered in
    # this process) takes it from the workbook, which names the same blob with it.
    credentials.forget()
    body = cell.split("\n", 1)[1]  # without its %%transform_run guard line
    replayed = run_cell(body, client="NORTHWIND", mapping=mapping, key=entry.key,
                        code_sha256=entry.code_sha256, settings=settings)  # fmt: skip
    assert replayed.outcome == "succeeded" and replayed.rows_in == first.rows_in

    # The CLI: the credential given on the command line, with the workbook's local files.
    credentials.forget()
    args = ["--client", "NORTHWIND", "--mapping", str(example)]
    for name, file in FILES.items():
        args += ["--source", f"{name}={root}/{file}?{sas}"]
    assert main(["run", *args, "--output-dir", str(tmp_path / "cli-out")]) == 0
    exported = tmp_path / "test_northwind.py"
    assert main(["export-test", entry.key, "--output", str(exported)]) == 0

    with pytest.raises(PlanError) as refused:
        session.run(output_dir=f"{root}/out?{sas}")
    assert "carries a credential" in str(refused.value)

    printed = capsys.readouterr()
    written = [p for p in [*home.rglob("*"), *out.rglob("*"), *(tmp_path / "cli-out").rglob("*")]
               if p.is_file()]  # fmt: skip
    assert any(p.suffix == ".html" and "_evidence" in p.parts for p in written)
    places = {
        "cell": cell,
        "stdout": printed.out,
        "stderr": printed.err,
        "logs": caplog.text,
        "summary": f"{first.to_dict()} {first.to_text()} {replayed.to_text()}",
        "evidence": str(first.evidence),
        "exported test": exported.read_text(),
        "error": str(refused.value),
        **{str(p): p.read_bytes().decode("latin-1") for p in written},
    }
    for where, text in places.items():
        for canary in canaries:
            assert canary not in text, f"the SAS signature leaked into {where}"
    assert f"{root}/trades.csv" in places["evidence"]


class LoneSpark(Executor):
    """A platform whose Spark does not read this machine's disk."""

    name = "elsewhere"

    def run(self, job: Job) -> JobResult:  # pragma: no cover - refused before
        raise AssertionError("an http(s) source must be refused before a run")


def test_a_remote_spark_is_refused_an_https_source_before_the_run(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENG_MAGICS_HOME", str(tmp_path / "home"))
    session = TransformSession(TransformRequest(client="NORTHWIND", mapping=example))
    session.draft()
    session.approve("alice")
    url = "https://acct.blob.core.windows.net/raw/trades.csv?sv=1&sig=c2VjcmV0LXNpZ25hdHVyZQ"
    remote = TransformSession(
        TransformRequest(client="NORTHWIND", mapping=example, sources={"trades": url})
    )
    assert remote.mapping.sources["trades"].credential  # read, never sampled
    with pytest.raises(ExecutionError) as info:
        remote._execute(session.require_approved(), str(tmp_path / "o"), "parquet",
                        LoneSpark(), None)  # fmt: skip
    assert "cannot read" in str(info.value) and "abfss://" in str(info.value)
    assert "c2VjcmV0" not in str(info.value)
    assert session.store.runs(session.key) == []


def test_a_cell_path_without_its_sas_gets_the_workbooks(example: Path, tmp_path: Path) -> None:
    """The workbook names a blob with its SAS; a cell (or --source) names it without: the
    reader gets the workbook's credential. Another blob gets none it was not given."""
    base = "https://acct.blob.core.windows.net/raw"
    book = load_workbook(example)
    book["Sources"]["B2"].value = f"{base}/trades.csv?sv=1&sig=d29ya2Jvb2stc2Fz"
    path = tmp_path / "remote.xlsx"
    book.save(path)
    shutil.copy(EXAMPLE / "counterparties.parquet", tmp_path / "counterparties.parquet")
    same = read_mapping(path, {"trades": f"{base}/trades.csv"}).sources["trades"]
    assert (same.path, same.credential) == (f"{base}/trades.csv", "sv=1&sig=d29ya2Jvb2stc2Fz")
    other = read_mapping(path, {"trades": f"{base}/other.csv"}).sources["trades"]
    assert other.credential == "" and other.url == f"{base}/other.csv"
    assert "d29ya2Jvb2st" not in repr(same) and "d29ya2Jvb2st" not in same.model_dump_json()
