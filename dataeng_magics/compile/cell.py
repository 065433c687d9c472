"""The materialised cell's format: a parameters block of literals, then the approved body.

Paths and the output folder change from run to run; the approved body does not. So
the cell is split at ``CODE_MARKER`` (the compiled body's first line): the approval
hash covers the body, and the parameters are checked to hold literals and nothing else.
"""

from __future__ import annotations

import ast

from dataeng_magics.compile.safety import (
    PARAMETERS,
    RUN_PARAMETERS,
    check_generated,
    parse_python,
    py_str,
)
from dataeng_magics.errors import UnsafePlanError
from dataeng_magics.redact import split_credential

CODE_MARKER = "# dataeng-magics: plan "


def render_parameters(source_paths: dict[str, str], output_dir: str, output_format: str) -> str:
    """The per-run parameters block: literals only, checked like the body. It is written
    into cells and run code, so a credential in a URL (a SAS query) never reaches it: the
    reader gets that at run time (``sources.credentials``)."""
    paths = {k: split_credential(v)[0] for k, v in source_paths.items()}
    output_dir = split_credential(output_dir)[0]
    items = ", ".join(f"{py_str(k)}: {py_str(v)}" for k, v in sorted(paths.items()))
    code = (
        f"source_paths = {{{items}}}\n"
        f"output_dir = {py_str(output_dir.rstrip('/') or '/')}\n"
        f"output_format = {py_str(output_format)}\n"
    )
    return code + run_parameters()


def run_parameters(
    run_id: str = "",
    control_columns: dict[str, list[str]] | None = None,
    multiline: dict[str, str] | None = None,
) -> str:
    """The parameters a run sets (they follow, and so override, a cell's own): ``run_id``
    marks quarantined rows; ``control_columns`` (source -> columns) are what the run's
    control totals sum; ``multiline`` (CSV source -> "false") names the sources the run
    found no record spanning lines in, read by lines (any other: ``multiLine``).
    Literals only, by construction (``py_str``), like ``render_parameters``: not parsed
    to check, since a panel's background preview renders them beside the kernel, which
    parses each cell it runs (``safety.parse_python``)."""
    controls = ", ".join(
        f"{py_str(k)}: [{', '.join(py_str(c) for c in v)}]"
        for k, v in sorted((control_columns or {}).items())
    )
    lines = ", ".join(f"{py_str(k)}: {py_str(v)}" for k, v in sorted((multiline or {}).items()))
    return f"run_id = {py_str(run_id)}\ncontrol_columns = {{{controls}}}\nmultiline = {{{lines}}}\n"


def split_cell(body: str) -> tuple[str, str]:
    """A materialised cell's body -> (parameters block, approved code)."""
    index = body.find("\n" + CODE_MARKER)
    if body.startswith(CODE_MARKER):
        return "", body
    if index < 0:
        raise UnsafePlanError(
            "this cell has no approved code in it (its '# dataeng-magics: plan' line is gone)",
            hint="Materialise the approved plan again.",
        )
    return body[: index + 1], body[index + 1 :]


def parse_parameters(text: str) -> dict[str, object]:
    """The parameters block's values; it may hold literal assignments and nothing else."""
    check_generated(text, parameters=True)
    values: dict[str, object] = {}
    for node in parse_python(text).body:
        assert isinstance(node, ast.Assign)
        for target in node.targets:
            if isinstance(target, ast.Name):
                try:
                    values[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    raise UnsafePlanError(f"parameter {target.id!r} must be a literal") from None
    for name, default in RUN_PARAMETERS.items():
        values.setdefault(name, default)
    missing = [p for p in PARAMETERS if p not in values]
    if missing:
        raise UnsafePlanError(f"the parameters block does not set {', '.join(missing)}")
    return values
