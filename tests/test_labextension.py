"""The lab extension's copy of the ``%%transform`` flags matches the magic's parser.

The editor underlines a flag it does not know and the completer offers only the flags
and values it lists, so ``labextension/src/constants.ts`` must say exactly what the
magic accepts: its flags, their help, which repeat, and the values of ``--format`` and
``--platform``.
"""

from __future__ import annotations

import argparse
import ast
import re
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

from dataeng_magics._magics import TransformMagics
from dataeng_magics.run.executors.base import ENTRY_POINT_GROUP

CONSTANTS = Path(__file__).parents[1] / "labextension" / "src" / "constants.ts"

# A TypeScript object literal, token by token: strings stay (JavaScript's single-quoted
# strings are Python's), keys get quoted, ``true`` becomes ``True``.
_TOKEN = re.compile(r"('(?:[^'\\]|\\.)*')|\b([A-Za-z_]\w*)(\s*:)|\btrue\b")


def _python_literal(match: re.Match[str]) -> str:
    string, key, colon = match.groups()
    if string:
        return string
    if key:
        return f"'{key}'{colon}"
    return "True"


def ts_flags() -> dict[str, dict[str, Any]]:
    """``TRANSFORM_FLAGS`` as written in constants.ts, by flag."""
    found = re.search(
        r"TRANSFORM_FLAGS: readonly IFlag\[\] = (\[.*?\n\]);", CONSTANTS.read_text(), re.S
    )
    assert found, "TRANSFORM_FLAGS not found in constants.ts"
    flags = ast.literal_eval(_TOKEN.sub(_python_literal, found.group(1)))
    return {f["flag"]: f for f in flags}


def parser_flags() -> dict[str, dict[str, Any]]:
    """What the magic's own parser accepts, in the shape constants.ts writes it."""
    parser: argparse.ArgumentParser = TransformMagics.transform.parser  # type: ignore[attr-defined]
    flags: dict[str, dict[str, Any]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = max(action.option_strings, key=len)
        doc = f"{action.metavar}: {action.help}" if action.metavar else str(action.help)
        flags[flag] = {"flag": flag, "doc": doc}
        if action.choices:
            flags[flag]["values"] = list(action.choices)
        if isinstance(action, argparse._AppendAction):
            flags[flag]["repeatable"] = True
    return flags


def test_the_extension_knows_every_flag_of_the_magic_and_no_other() -> None:
    known = ts_flags()
    expected = parser_flags()
    assert list(known) == list(expected)
    for flag, spec in expected.items():
        written = {k: v for k, v in known[flag].items() if flag != "--platform" or k != "values"}
        assert written == spec, flag


def test_the_platform_values_are_the_executors_this_package_registers() -> None:
    ours = {
        ep.name
        for ep in distribution("dataeng_magics").entry_points
        if ep.group == ENTRY_POINT_GROUP
    }
    assert set(ts_flags()["--platform"]["values"]) == ours
