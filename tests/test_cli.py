"""The CLI contract: commands, one-line errors and exit codes (0, 2, 3, 4, 5)."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from dataeng_magics.cli import build_parser, main
from dataeng_magics.errors import DataEngMagicsWarning
from dataeng_magics.workflow import TransformRequest, TransformSession


def args(mapping: Path, *extra: str) -> list[str]:
    return ["--client", "NORTHWIND", "--mapping", str(mapping), *extra]


def test_draft_prints_pseudocode_and_key(example: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["draft", *args(example)]) == 0
    out = capsys.readouterr().out
    assert 'TRADE_DATE (date) [required] <- "Trade Date": parse date MM/DD/YYYY' in out
    assert "SOURCE_SYSTEM (string) [required] <- (no source): constant 'NORTHWIND-OMS'" in out
    key = next(line.split()[1] for line in out.splitlines() if line.startswith("key:"))
    assert len(key) == 64
    assert main(["cache", "show", key[:12]]) == 0
    assert key in capsys.readouterr().out


def test_bad_input_exits_2_with_one_line(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = load_workbook(example)
    book["Mapping"]["C5"] = "datetme"
    book.save(example)
    assert main(["draft", *args(example)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "northwind.xlsx" in err and "'Mapping'" in err and "row 5" in err
    assert "DATA TYPE" in err and "datetime" in err  # the closest type is suggested
    assert main(["draft", *args(tmp_path / "missing.xlsx")]) == 2
    assert "mapping file does not exist" in capsys.readouterr().err


def test_unknown_source_override_suggests(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["draft", *args(example), "--source", "trade=x.csv"]) == 2
    assert "Did you mean 'trades'" in capsys.readouterr().err


def test_approve_refuses_unresolved_and_run_needs_approval(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    book = load_workbook(example)
    book["Mapping"]["F9"] = "make it pretty"
    book.save(example)
    main(["draft", *args(example)])
    assert main(["approve", *args(example), "--reviewer", "alice"]) == 2
    assert "TRADES.DESK" in capsys.readouterr().err
    assert main(["run", *args(example), "--output-dir", str(tmp_path / "out")]) == 3
    assert "approval required" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["revise", *args(example), "DESK: first 4 characters, upper"]) == 0
    assert main(["approve", *args(example), "--reviewer", "alice"]) == 0


def test_run_is_a_replay_and_draft_is_interactive(
    example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    def no_planner(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a planner was built")

    monkeypatch.setattr("dataeng_magics.agent.get_planner", no_planner)
    assert main(["run", *args(example), "--output-dir", str(tmp_path / "out")]) == 3
    assert "approval required" in capsys.readouterr().err
    with pytest.raises(AssertionError, match="a planner was built"):
        main(["draft", *args(example), "--planner", "openai"])  # a review may ask the model
    monkeypatch.setenv("DATAENG_MAGICS_MODE", "replay")  # this environment never plans
    assert main(["draft", *args(example), "--planner", "openai"]) == 2
    assert "cannot draft in replay mode" in capsys.readouterr().err


@pytest.mark.spark
def test_run_exit_codes_for_validation_and_execution(
    example: Path, tmp_path: Path, spark: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    book = load_workbook(example)
    book["Mapping"]["F5"] = "parse date DD/MM/YYYY"  # wrong: the data is MM/DD/YYYY
    book.save(example)
    main(["draft", *args(example)])
    main(["approve", *args(example), "--reviewer", "alice"])
    code = main(["run", *args(example), "--output-dir", str(tmp_path / "out"), "--json"])
    assert code == 4
    captured = capsys.readouterr()
    assert "FAIL TRADE_DATE [conversion]" in captured.out
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["outcome"] == "validation_failed" and summary["checks_failed"] >= 1
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    with pytest.warns(DataEngMagicsWarning, match="evidence could not be written"):
        assert main(["run", *args(example), "--output-dir", str(blocker)]) == 5


def test_audit_verify_detects_an_edit(
    example: Path, state_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["draft", *args(example)])
    main(["approve", *args(example), "--reviewer", "alice"])
    assert main(["audit", "verify"]) == 0
    log = state_home / "audit.jsonl"
    lines = log.read_text().splitlines()
    lines[1] = lines[1].replace('"alice"', '"mallory"')
    log.write_text("\n".join(lines) + "\n")
    assert main(["audit", "verify"]) == 1
    assert "line 2" in capsys.readouterr().err


def key_of(out: str) -> str:
    """The cache key the last command printed."""
    return [line.split()[1] for line in out.splitlines() if line.startswith("key:")][-1]


def test_cache_revoke_requires_a_new_approval(
    example: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["draft", *args(example)])
    main(["approve", *args(example), "--reviewer", "alice"])
    key = key_of(capsys.readouterr().out)
    assert main(["cache", "revoke", key[:10]]) == 2  # a revocation needs a reason
    assert "a revocation needs a reason" in capsys.readouterr().err
    assert main(["cache", "revoke", key[:10], "--reason", "mapping v4"]) == 0
    assert capsys.readouterr().out == f"revoked {key}: replays now need a new approval\n"
    assert main(["run", *args(example), "--output-dir", str(tmp_path / "o")]) == 3
    assert main(["cache", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["audit", "show"]) == 0
    assert "revocation" in capsys.readouterr().out
    # the old name still works, says the same, and is not offered
    main(["draft", *args(example), "--force"])
    capsys.readouterr()
    assert main(["cache", "invalidate", key[:10], "--reason", "again"]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"revoked {key}: replays now need a new approval\n"
    assert "now `cache revoke`" in captured.err
    assert main(["cache", "show", key[:10]]) == 0
    assert "status: revoked" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["cache", "--help"])
    assert "invalidate" not in capsys.readouterr().out


@pytest.mark.spark
def test_approve_after_a_failing_preview_needs_anyway_reason(
    example: Path, capsys: pytest.CaptureFixture[str], spark: Any
) -> None:
    main(["draft", *args(example)])
    main(["revise", *args(example), "SETTLE_DATE: parse date MM/DD/YYYY"])
    session = TransformSession(TransformRequest(client="NORTHWIND", mapping=example))
    session.preview()  # in a kernel: the failure is kept with the plan
    capsys.readouterr()
    assert main(["approve", *args(example), "--reviewer", "alice"]) == 4
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "the preview failed 1 check" in err
    assert "--anyway REASON" in err
    reason = ["--anyway", "known: fixed upstream"]
    assert main(["approve", *args(example), "--reviewer", "alice", *reason]) == 0
    assert capsys.readouterr().out.startswith("approved key ")
    [record] = [e for e in session.audit.events(key=session.key) if e.event == "approval"]
    assert record.details["despite"] == "known: fixed upstream"


def test_approve_twice_says_nothing_changed_and_records_nothing(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["draft", *args(example)])
    capsys.readouterr()
    assert main(["approve", *args(example), "--reviewer", "alice"]) == 0
    assert capsys.readouterr().out.startswith("approved key ")
    assert main(["approve", *args(example), "--reviewer", "alice"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("already approved by alice at ") and "UTC; nothing changed" in out
    assert main(["approve", *args(example), "--reviewer", "bob"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("already approved by alice at ") and "bob was not recorded" in out
    assert main(["audit", "show"]) == 0
    assert capsys.readouterr().out.count("approval") == 1


def test_revise_and_forced_draft_of_an_approval_say_it_is_revoked(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["draft", *args(example)])
    main(["approve", *args(example), "--reviewer", "alice"])
    capsys.readouterr()
    assert main(["revise", *args(example), "DESK: first 3 characters, upper"]) == 0
    out = capsys.readouterr().out
    assert "approval by alice revoked: the plan changed" in out and "status: draft" in out
    main(["approve", *args(example), "--reviewer", "bob"])
    assert main(["draft", *args(example), "--force"]) == 0
    capsys.readouterr()
    assert main(["audit", "show"]) == 0
    events = [line.split()[3] for line in capsys.readouterr().out.splitlines()[3:]]
    assert events == [
        "draft", "approval", "revocation", "revision", "approval", "revocation", "draft"
    ]  # fmt: skip


def test_audit_show_takes_key_prefixes_and_any_case_of_client(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["draft", *args(example)])
    main(["draft", "--client", "ACME", "--mapping", str(example)])
    key = key_of(capsys.readouterr().out)  # ACME's, the last one printed
    assert main(["audit", "show", "--key", key[:8]]) == 0
    rows = capsys.readouterr().out.splitlines()[3:]
    assert len(rows) == 1 and "ACME" in rows[0] and key[:16] in rows[0]
    assert main(["audit", "show", "--key", key[:7]]) == 2
    assert "too short" in capsys.readouterr().err
    assert main(["audit", "show", "--client", "acme"]) == 0
    rows = capsys.readouterr().out.splitlines()[3:]
    assert len(rows) == 1 and "ACME" in rows[0]
    assert main(["cache", "list", "--client", "Acme"]) == 0
    assert "ACME" in capsys.readouterr().out
    assert main(["stats", "--client", "acme"]) == 0
    assert "entries: 1 (draft 1)" in capsys.readouterr().out
    # a filter that matches nothing says so
    assert main(["audit", "show", "--client", "NOBODY"]) == 0
    assert capsys.readouterr().out == "no audit records for client NOBODY\n"
    assert main(["cache", "list", "--client", "NOBODY"]) == 0
    assert capsys.readouterr().out == "no cached plans for client NOBODY\n"


def test_every_command_and_option_has_help_and_the_exit_codes_are_listed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = build_parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(commands.choices) >= {"draft", "revise", "approve", "run", "cache", "audit"}
    for name, sub in commands.choices.items():
        assert sub.description, f"{name} has no description"
        for action in sub._actions:
            assert action.help, f"{name} {action.dest} has no help"
        with pytest.raises(SystemExit):
            main([name, "--help"])
        text = capsys.readouterr().out
        assert "(default: None)" not in text and "(default: False)" not in text
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    assert "the latest N records (default: 50)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    for code in ("0", "1", "2", "3", "4", "5"):
        assert f"\n  {code}  " in top, f"exit code {code} is not listed"
    assert "approval required" in top


def test_a_misspelt_flag_names_the_closest_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["cache", "list", "--clinet", "X"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "usage: dataeng-magics cache" in err
    assert "unrecognized arguments: --clinet X; did you mean --client?" in err
    with pytest.raises(SystemExit):
        main(["cache", "show"])
    assert "cache show needs a KEY" in capsys.readouterr().err


def test_reviewer_defaults_to_the_os_user_and_reasons_may_be_words(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same arguments as %transform: --reviewer as in the notebook, a reason as
    words after the command or as --reason."""
    main(["draft", *args(example)])
    assert main(["approve", *args(example)]) == 0
    main(["revise", *args(example), "DESK: first 3 characters, upper"])
    capsys.readouterr()
    assert main(["reject", *args(example), "too", "vague"]) == 0
    assert capsys.readouterr().out.endswith(": too vague\n")
    assert main(["audit", "show"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[3:]]
    assert [(row[3], row[4]) for row in rows if row[3] in ("approval", "rejection")] == [
        ("approval", getpass.getuser()), ("rejection", getpass.getuser())
    ]  # fmt: skip
    with pytest.raises(SystemExit):
        main(["reject", *args(example), "--reviewer", "alice"])
    assert "a rejection needs a reason" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_start_demo_in_a_fresh_process(tmp_path: Path, state_home: Path) -> None:
    """The README's first command, as a user runs it: the console script, its own Spark."""
    env = {**os.environ, "DATAENG_MAGICS_HOME": str(state_home)}
    bin_dir = Path(sys.executable).parent
    exe = bin_dir / "dataeng-magics"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dataeng_magics.cli"]
    done = subprocess.run(
        [*cmd, "demo", "--output-dir", str(tmp_path / "out"), "--reviewer", "ci"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCEEDED on local" in done.stdout
    assert (tmp_path / "out" / "TRADES").is_dir() and (tmp_path / "out" / "COUNTERPARTIES").is_dir()
    events = [
        json.loads(line)["event"] for line in (state_home / "audit.jsonl").read_text().splitlines()
    ]
    assert events == ["draft", "approval", "run_start", "run_end"]


def test_stats_counts_every_approval_including_those_after_a_revise(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["draft", *args(example)])
    main(["approve", *args(example), "--reviewer", "alice"])
    main(["revise", *args(example), "DESK: first 3 characters, upper"])
    main(["approve", *args(example), "--reviewer", "bob"])
    main(["revise", *args(example), "DESK: first 4 characters, upper"])
    main(["approve", *args(example), "--reviewer", "carol"])
    capsys.readouterr()
    assert main(["audit", "show"]) == 0
    assert capsys.readouterr().out.count("approval") == 3
    assert main(["stats"]) == 0
    assert "draft to approval: 3 approval(s)" in capsys.readouterr().out
