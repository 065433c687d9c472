"""The magics in a real IPython shell: load, flags, errors, review, approval, replay."""

from __future__ import annotations

import argparse
import getpass
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from dataeng_magics._magics import line_parser
from dataeng_magics.cli import build_parser, main
from dataeng_magics.commands import SHORTHANDS, commands
from dataeng_magics.state.store import Store

HEAVY = (
    "pyspark",
    "pandas",
    "pyarrow",
    "langchain",
    "langchain_core",
    "openpyxl",
    "sqlglot",
    "ipywidgets",
    "anywidget",
    "papermill",
)


class Shell(InteractiveShell):
    """An IPython shell whose cells raise their errors, so tests see them."""

    def run_cell(self, raw_cell: str, *args: Any, **kwargs: Any) -> Any:
        result = super().run_cell(raw_cell, *args, **kwargs)
        result.raise_error()
        return result


@pytest.fixture(scope="module")
def shell() -> Iterator[Shell]:
    ip = Shell.instance()
    ip.run_line_magic("load_ext", "dataeng_magics")
    yield ip
    Shell.clear_instance()


@pytest.fixture
def ip(shell: Shell, monkeypatch: pytest.MonkeyPatch) -> Shell:
    magics = magics_of(shell)
    magics.current = None
    magics._ran.clear()
    for name in magics.SETTINGS:
        monkeypatch.setattr(magics, name, None)
    shell.rl_next_input = None
    return shell


def magics_of(ip: Shell) -> Any:
    return next(c for c in ip.configurables if type(c).__name__ == "TransformMagics")


def store_of(ip: Shell) -> Store:
    return Store(magics_of(ip).settings().store_path)


def transform(example: Path, *flags: str, notes: str = "") -> str:
    return f"%%transform --client NORTHWIND --mapping {example} {' '.join(flags)}\n{notes}"


def test_load_ext_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "ip = InteractiveShell.instance()\n"
        "ip.run_line_magic('load_ext', 'dataeng_magics')\n"
        "assert 'transform' in ip.magics_manager.magics['cell']\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {HEAVY!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_usage_and_bad_flags_are_one_line(ip: Shell, example: Path) -> None:
    doc = ip.find_cell_magic("transform").__doc__
    assert "--client" in doc and "--replay" in doc and "--source NAME=PATH" in doc
    with pytest.raises(UsageError) as err:
        ip.run_cell(transform(example, "--colour red"))
    assert "unrecognized arguments: --colour red" in str(err.value)
    with pytest.raises(UsageError) as err:
        ip.run_cell("%%transform --client X --mapping nowhere.xlsx\n")
    assert "MappingError" in str(err.value) and "nowhere.xlsx" in str(err.value)
    assert "\n" not in str(err.value)


def test_user_mistake_shows_no_traceback(
    example: Path, capsys: pytest.CaptureFixture[str], ip: Shell
) -> None:
    InteractiveShell.run_cell(ip, "%%transform --client X --mapping nowhere.xlsx\n")
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "UsageError: MappingError" in text and "Traceback" not in text


@pytest.mark.spark
def test_review_approve_materialise_run(
    ip: Shell, example: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    ip.run_cell(transform(example, f"--output-dir {out}", notes="Amounts in thousands."))
    shown = capsys.readouterr().out
    assert "TABLE TRADES" in shown  # the panel's text fallback: readable without widgets
    ip.run_line_magic("transform", "approve --reviewer alice")
    cell = ip.rl_next_input
    assert cell.startswith("%%transform_run --client NORTHWIND")
    assert "spark.read" in cell and "run_metrics" in cell
    ip.run_cell(cell)
    assert "SUCCEEDED on local" in capsys.readouterr().out
    assert (out / "TRADES").is_dir()
    entry = store_of(ip).list()[0]
    assert entry.status == "approved" and entry.reviewer == "alice" and entry.runs == 1
    # The CLI honours the notebook's approval.
    assert (
        main(
            [
                "run",
                "--client",
                "NORTHWIND",
                "--mapping",
                str(example),
                "--output-dir",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )


def test_edited_materialised_cell_runs_nothing(ip: Shell, example: Path, tmp_path: Path) -> None:
    ip.run_cell(transform(example, f"--output-dir {tmp_path / 'out'}"))
    ip.run_line_magic("transform", "approve --reviewer alice")
    edited = ip.rl_next_input.replace("F.round(", "F.floor(", 1)
    with pytest.raises(UsageError, match="edited after approval; nothing ran"):
        ip.run_cell(edited)
    assert not (tmp_path / "out").exists()
    assert store_of(ip).list()[0].runs == 0


def test_quoted_paths_with_spaces(ip: Shell, example: Path, tmp_path: Path) -> None:
    """A path in quotes is one word without its quotes, in %%transform and in the guard
    line of its materialised cell (which quotes it)."""
    spaced = tmp_path / "client files"
    shutil.copytree(example.parent, spaced)
    ip.run_cell(f'%%transform --client NORTHWIND --mapping "{spaced / example.name}"\n')
    ip.run_line_magic("transform", "approve --reviewer alice")
    cell = ip.rl_next_input
    assert f"--mapping '{spaced / example.name}'" in cell.splitlines()[0]
    with pytest.raises(UsageError, match="edited after approval; nothing ran"):
        ip.run_cell(cell.replace("F.round(", "F.floor(", 1))


def test_materialised_cell_refuses_when_inputs_changed(ip: Shell, example: Path) -> None:
    from openpyxl import load_workbook

    ip.run_cell(transform(example, "--output-dir out"))
    ip.run_line_magic("transform", "approve --reviewer alice")
    cell = ip.rl_next_input
    book = load_workbook(example)
    book["Mapping"]["F9"] = "first 3 characters"
    book.save(example)
    with pytest.raises(UsageError, match="no longer match the approved key"):
        ip.run_cell(cell)


def test_revoked_materialised_cell_says_to_rerun_the_transform_cell(
    ip: Shell, example: Path, tmp_path: Path
) -> None:
    ip.run_cell(transform(example, f"--output-dir {tmp_path / 'out'}"))
    ip.run_line_magic("transform", "approve --reviewer alice")
    cell = ip.rl_next_input
    key = store_of(ip).list()[0].key
    with pytest.raises(UsageError, match="a revocation needs a reason"):
        ip.run_line_magic("transform", f"revoke {key}")
    ip.run_line_magic("transform", f"revoke {key} mapping v5 arrived")
    with pytest.raises(UsageError) as raised:
        ip.run_cell(cell)
    message = str(raised.value)
    assert "revoked by" in message and "mapping v5 arrived" in message
    assert "Re-run the %%transform cell above" in message and "dataeng-magics" not in message
    assert not (tmp_path / "out").exists()


def test_cli_approval_is_honoured_by_the_notebook(
    ip: Shell, example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--client", "NORTHWIND", "--mapping", str(example)]
    assert main(["draft", *base]) == 0
    assert main(["approve", *base, "--reviewer", "carol"]) == 0
    capsys.readouterr()
    ip.run_cell(transform(example))
    shown = capsys.readouterr().out
    assert "approved" in shown and "carol" in shown


def test_replay_without_approval_fails_and_runs_nothing(
    ip: Shell,
    example: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATAENG_MAGICS_MODE", "replay")
    with pytest.raises(UsageError) as err:
        ip.run_cell(transform(example, f"--output-dir {tmp_path / 'out'}"))
    text = str(err.value)
    assert "approval required" in text and "NORTHWIND" in text
    assert not (tmp_path / "out").exists()
    assert "TABLE TRADES" not in capsys.readouterr().out  # no panel, no draft shown
    assert store_of(ip).list() == []  # no planner ran


def test_a_failed_cell_records_its_error_as_data(
    ip: Shell, example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error's type, exit code and fields go into the cell's output, the one-line
    message into its error; a replay cell never builds a planner."""
    from IPython.utils.capture import capture_output

    from dataeng_magics.display import ERROR_MIME

    def no_planner(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a planner was built")

    monkeypatch.setattr("dataeng_magics.agent.get_planner", no_planner)
    magics_of(ip).planner = "openai"
    with capture_output() as captured, pytest.raises(UsageError) as err:
        ip.run_cell(transform(example, "--replay", f"--output-dir {tmp_path / 'out'}"))
    assert str(err.value).startswith("ApprovalRequired: approval required")
    [bundle] = [out.data for out in captured.outputs if ERROR_MIME in out.data]
    assert list(bundle) == [ERROR_MIME]  # no text form: the message shows once
    record = bundle[ERROR_MIME]
    assert record["error"] == "ApprovalRequired" and record["exit_code"] == 3
    assert record["client"] == "NORTHWIND" and len(record["key"]) == 64
    assert magics_of(ip).current.mode == "replay" and store_of(ip).list() == []


@pytest.mark.spark
def test_replay_runs_once_with_the_materialised_cell(
    ip: Shell,
    example: Path,
    tmp_path: Path,
    spark: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    ip.run_cell(transform(example, f"--output-dir {out}"))
    ip.run_line_magic("transform", "approve --reviewer alice")
    cell = ip.rl_next_input
    monkeypatch.setenv("DATAENG_MAGICS_MODE", "replay")
    ip.run_cell(transform(example, f"--output-dir {out}"))
    ip.run_cell(cell)
    shown = capsys.readouterr().out
    assert shown.count("SUCCEEDED on local") == 2 and "Already ran in this kernel" in shown
    entry = store_of(ip).list()[0]
    assert entry.runs == 1


def test_store_and_audit_line_magics(ip: Shell, example: Path) -> None:
    ip.run_cell(transform(example))
    ip.run_line_magic("transform", "approve --reviewer alice")
    listing = ip.run_line_magic("transform", "list")
    assert listing.rows[0]["status"] == "approved" and "<table" in listing._repr_html_()
    key = listing.rows[0]["key"]
    shown = ip.run_line_magic("transform", f"show {key}")
    assert "TABLE TRADES" in repr(shown) and "spark.read" in repr(shown)
    assert "intact: 2 records" in repr(ip.run_line_magic("transform", "verify"))
    info = repr(ip.run_line_magic("transform", "store info"))
    assert "(sqlite)" in info and "entries: 1" in info and "audit.jsonl: 2 records" in info
    revoked = ip.run_line_magic("transform", f"revoke {key} mapping v4")
    assert repr(revoked) == f"Revoked {key}: replays now need a new approval."
    assert ip.run_line_magic("transform", "list").rows[0]["status"] == "revoked"
    events = [r["event"] for r in ip.run_line_magic("transform", f"audit --key {key}").rows]
    assert events == ["draft", "approval", "revocation"]
    assert ip.run_line_magic("transform", "audit --client northwind").rows  # any case
    nobody = ip.run_line_magic("transform", "audit --client NOBODY")
    assert repr(nobody) == "no audit records for client NOBODY"
    assert "no audit records" in nobody._repr_html_()
    assert repr(ip.run_line_magic("transform", "list --client NOBODY")) == (
        "no cached plans for client NOBODY"
    )
    ip.run_line_magic("transform", "revise DESK: first 3 characters, upper")
    ip.run_line_magic("transform", f"invalidate {key} the old name still works")
    assert ip.run_line_magic("transform", "list").rows[0]["status"] == "revoked"
    with pytest.raises(UsageError, match="unknown command"):
        ip.run_line_magic("transform", "frobnicate")


def test_line_commands_refuse_what_they_do_not_take_in_one_line(ip: Shell) -> None:
    """Each %transform command parses its words like the CLI: a misspelt flag or a bad
    value is refused with the usage, not ignored and not a traceback."""
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("transform", "list --clinet X")
    text = str(err.value)
    assert "unrecognized arguments: --clinet" in text and "did you mean --client?" in text
    assert "usage: %transform cache" in text and "\n" not in text
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("transform", "audit --limit abc")
    text = str(err.value)
    assert "argument --limit: invalid int value: 'abc'" in text and "\n" not in text
    assert "usage: %transform audit" in text
    with pytest.raises(UsageError, match="cache show needs a KEY"):
        ip.run_line_magic("transform", "show")
    with pytest.raises(UsageError, match="a rejection needs a reason"):
        ip.run_line_magic("transform", "reject --reviewer alice")
    with pytest.raises(UsageError, match="No closing quotation"):
        ip.run_line_magic("transform", "revise 'DESK: upper")
    with pytest.raises(UsageError) as err:
        ip.run_line_magic("transform", "")
    assert "one of: revise, approve, " in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UsageError, match="--replya; did you mean --replay"):
        ip.run_cell("%%transform --client X --mapping m.xlsx --replya\n")


def test_every_line_command_has_a_handler_and_help(ip: Shell) -> None:
    for name in [*commands("kernel"), *SHORTHANDS]:
        shown = repr(ip.run_line_magic("transform", f"{name} -h"))
        assert shown.startswith("usage: %transform "), name
    assert "with list: only this client" in repr(ip.run_line_magic("transform", "list -h"))
    doc = ip.find_line_magic("transform").__doc__
    assert all(f"  {name} " in doc for name in [*commands("kernel"), *SHORTHANDS])


#: What a keyed CLI command names and a kernel takes from its last %%transform (the
#: inputs) or its settings (%config: home, planner), and the terminal's --json output.
TERMINAL_ONLY = {"--client", "--mapping", "--source", "--home", "--planner", "--json"}


def arguments(parser: argparse.ArgumentParser) -> dict[str, tuple[Any, ...]]:
    """Each argument of a parser, by its longest name, with all that defines it."""
    return {
        max(a.option_strings, key=len) if a.option_strings else a.dest: (
            type(a), a.help, a.choices, a.nargs, a.type, a.default, a.metavar, a.required
        )
        for a in parser._actions
    }  # fmt: skip


def test_every_cli_command_in_a_kernel_takes_the_same_arguments() -> None:
    [cli] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    both = set(cli.choices) & set(commands("kernel"))
    assert both == {
        "revise", "approve", "reject", "run", "cache", "audit", "stats", "store", "evidence",
        "export-test",
    }  # fmt: skip
    for name in both:
        terminal, kernel = arguments(cli.choices[name]), arguments(line_parser(name))
        assert set(kernel) <= set(terminal), name
        assert set(terminal) - set(kernel) <= TERMINAL_ONLY, name
        for flag, spec in kernel.items():
            assert terminal[flag] == spec, f"{name} {flag}"


def test_approve_reject_run_and_show_take_the_cli_arguments(
    ip: Shell, example: Path, tmp_path: Path
) -> None:
    ip.run_cell(transform(example))
    ip.run_line_magic("transform", "approve")  # the OS user, as in the CLI
    assert store_of(ip).list()[0].reviewer == getpass.getuser()
    ip.run_line_magic("transform", "revise DESK: first 3 characters, upper")
    rejected = ip.run_line_magic("transform", "reject --reason 'too vague' --reviewer dan")
    assert repr(rejected).endswith(": too vague")
    events = ip.run_line_magic("transform", "audit").rows
    assert [(e["event"], e["actor"]) for e in events][-1] == ("rejection", "dan")
    with pytest.raises(UsageError, match="unknown platform 'nowhere'"):
        ip.run_line_magic("transform", f"run --output-dir {tmp_path / 'o'} --platform nowhere")
    assert not (tmp_path / "o").exists()
    key = store_of(ip).list()[0].key
    shown = repr(ip.run_line_magic("transform", f"cache show {key[:12]}"))
    assert "status rejected" in shown and "spark.read" not in shown  # code only with --code
    assert "spark.read" in repr(ip.run_line_magic("transform", f"cache show --code {key[:12]}"))


@pytest.mark.spark
def test_line_run_takes_the_cli_run_flags(
    ip: Shell, example: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_cell(transform(example))
    ip.run_line_magic("transform", "approve --reviewer alice")
    ip.run_line_magic("transform", f"run --output-dir {tmp_path / 'out'} --format csv")
    assert "SUCCEEDED on local" in capsys.readouterr().out
    assert list((tmp_path / "out" / "TRADES").glob("*.csv"))
    shown = ip.run_line_magic("transform", "evidence")  # the current key's latest run
    page = shown._repr_html_()
    assert "<script" not in page and "run_start_hash" in page and "closing_record_hash" in page
    assert "published" in repr(shown) and "closed by audit record" in repr(shown)
    wrote = ip.run_line_magic("transform", f"export-test --output {tmp_path / 'test_nw.py'}")
    assert repr(wrote) == f"wrote {tmp_path / 'test_nw.py'}"
    assert "CODE_SHA256 = " in (tmp_path / "test_nw.py").read_text()


def test_approve_twice_and_revise_say_what_happened_to_the_approval(
    ip: Shell, example: Path
) -> None:
    ip.run_cell(transform(example))
    approved = ip.run_line_magic("transform", "approve --reviewer alice")
    assert repr(approved).startswith("Approved by alice")
    ip.rl_next_input = None
    again = ip.run_line_magic("transform", "approve --reviewer bob")
    assert repr(again).startswith("already approved by alice at ")
    assert "nothing changed" in repr(again) and "bob was not recorded" in repr(again)
    assert ip.rl_next_input is None  # no second cell inserted
    revised = ip.run_line_magic("transform", "revise DESK: first 3 characters, upper")
    assert "approval by alice revoked: the plan changed" in repr(revised)
    events = [r["event"] for r in ip.run_line_magic("transform", "audit").rows]
    assert events == ["draft", "approval", "revocation", "revision"]


def test_settings_from_config_pyproject_and_env(
    ip: Shell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    magics = magics_of(ip)
    (tmp_path / "pyproject.toml").write_text(
        "[tool.dataeng_magics]\nsample_rows = 7\nttl_days = 30\n"
    )
    monkeypatch.chdir(tmp_path)
    assert magics.settings().sample_rows == 7
    monkeypatch.setenv("DATAENG_MAGICS_SAMPLE_ROWS", "9")
    assert magics.settings().sample_rows == 9
    ip.run_line_magic("config", "TransformMagics.sample_rows = 11")
    assert magics.settings().sample_rows == 11 and magics.settings().ttl_days == 30
    table = ip.run_line_magic("transform_config", "platform=local")
    assert {r["setting"]: r["value"] for r in table.rows}["platform"] == "local"
    with pytest.raises(UsageError, match="expected name=value"):
        ip.run_line_magic("transform_config", "colour=red")
    url = "postgresql://dem:Secret-Pw-1234@db.example.com/team"
    table = ip.run_line_magic("transform_config", f"store_url={url}")
    assert magics.settings().store_url == url
    assert {r["setting"]: r["value"] for r in table.rows}["store_url"] == (
        "postgresql://dem:***@db.example.com/team"
    )
    assert "Secret-Pw-1234" not in repr(table) + table._repr_html_()


TEMPLATE = Path(__file__).resolve().parents[1] / "example_notebooks" / "02_batch_replay.ipynb"


def replay_template(
    client: str, example: Path, tmp_path: Path, notebook: Path = TEMPLATE, out: str = "out"
) -> int:
    """``dataeng-magics replay`` of the batch template for one client."""
    return main(
        [
            "replay",
            str(notebook),
            "--client",
            client,
            "-p",
            "mapping",
            str(example),
            "-p",
            "output_dir",
            str(tmp_path / out),
            "--output-notebooks",
            str(tmp_path / "nb"),
        ]
    )


def test_replay_cli_marks_missing_approval(example: Path, tmp_path: Path) -> None:
    """papermill replay, miss: exit 3 and the executed notebook records the error."""
    code = replay_template("NOBODY", example, tmp_path)
    assert code == 3
    executed = json.loads((tmp_path / "nb" / "02_batch_replay-NOBODY.ipynb").read_text())
    outputs = json.dumps([c.get("outputs", []) for c in executed["cells"]])
    assert "ApprovalRequired: approval required" in outputs and "NOBODY" in outputs
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_replay_cli_runs_approved_clients(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """papermill replay, hit: the summary is recorded in the executed notebook."""
    base = ["--client", "NORTHWIND", "--mapping", str(example)]
    main(["draft", *base])
    main(["approve", *base, "--reviewer", "alice"])
    code = replay_template("NORTHWIND", example, tmp_path)
    assert code == 0, capsys.readouterr()
    assert (tmp_path / "out" / "TRADES").is_dir()
    executed = (tmp_path / "nb" / "02_batch_replay-NORTHWIND.ipynb").read_text()
    assert "application/vnd.dataeng-magics.run-summary+json" in executed
    assert "NORTHWIND" in capsys.readouterr().out


#: A cell that rewords every error of ours as if it were a missing approval.
REWORD = (
    "from dataeng_magics.errors import DataEngMagicsError\n"
    "DataEngMagicsError.__str__ = lambda self: 'ApprovalRequired: reworded'"
)


@pytest.mark.slow
def test_replay_exit_codes_come_from_the_error_not_its_wording(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """papermill replay: a failed validation exits 4, a failed run 5, whatever the text."""
    from openpyxl import load_workbook

    template = json.loads(TEMPLATE.read_text())
    at = next(i for i, c in enumerate(template["cells"]) if "load_ext" in "".join(c["source"]))
    template["cells"].insert(
        at + 1,
        {"cell_type": "code", "id": "reword", "metadata": {}, "outputs": [],
         "execution_count": None, "source": REWORD},
    )  # fmt: skip
    notebook = tmp_path / "reworded.ipynb"
    notebook.write_text(json.dumps(template))
    book = load_workbook(example)
    book["Mapping"]["F5"] = "parse date DD/MM/YYYY"  # wrong: the data is MM/DD/YYYY
    book.save(example)
    base = ["--client", "NORTHWIND", "--mapping", str(example)]
    assert main(["draft", *base]) == 0 and main(["approve", *base, "--reviewer", "alice"]) == 0
    capsys.readouterr()

    assert replay_template("NORTHWIND", example, tmp_path, notebook) == 4
    assert "ValidationFailed: the output of client 'NORTHWIND' failed" in capsys.readouterr().out
    executed = (tmp_path / "nb" / "reworded-NORTHWIND.ipynb").read_text()
    assert "UsageError: ValidationFailed: ApprovalRequired: reworded" in executed
    (tmp_path / "blocked").write_text("a file where the output folder should be")
    assert replay_template("NORTHWIND", example, tmp_path, notebook, out="blocked") == 5
    assert "ExecutionError: " in capsys.readouterr().out
