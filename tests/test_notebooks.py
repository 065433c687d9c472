"""The committed example notebooks stay in step with the code that generates them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_materialised_cell_in_notebook_01_is_what_the_compiler_produces_now(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_notebooks", REPO / "scripts" / "make_notebooks.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.chdir(REPO)  # materialised_cell() changes into example_notebooks/
    expected = module.materialised_cell()
    notebook = json.loads((REPO / "example_notebooks" / "01_onboard_client.ipynb").read_text())
    cells = ["".join(c["source"]) for c in notebook["cells"]]
    committed = [c for c in cells if c.startswith("%%transform_run")]
    assert committed == [expected], "the compiler changed: run python scripts/make_notebooks.py"
