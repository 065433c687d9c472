"""The panels' side of the lab extension's cell insertion (``CellInserter``), driven from
Python as the front end drives it; the browser tests cover the extension's side."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from dataeng_magics.widgets import ApprovedPanel, CellInserter, ReviewPanel
from dataeng_magics.widgets.review import MATERIALISE_NOTE
from dataeng_magics.workflow import TransformRequest, TransformSession

REPO = Path(__file__).resolve().parent.parent
INSERT_JS = REPO / "dataeng_magics" / "widgets" / "static" / "insert.js"
CONSTANTS_TS = REPO / "labextension" / "src" / "constants.ts"


def reply(inserter: CellInserter, nonce: object, result: object) -> None:
    """Deliver what insert.js sends once the extension has handled the event."""
    content = {"type": "materialised", "nonce": nonce, "result": result}
    inserter._handle_msg(
        {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    )


def session_for(mapping: Path, output_dir: str | None = None) -> TransformSession:
    request = TransformRequest(client="NORTHWIND", mapping=mapping, output_dir=output_dir)
    return TransformSession(request)


def status_text(panel: Any) -> str:
    return str(panel.status.value)


def test_approval_asks_the_front_end_for_the_cell(example: Path, tmp_path: Path) -> None:
    session = session_for(example, str(tmp_path / "out"))
    panel = ReviewPanel(session, reviewer="alice")
    assert panel.inserter in panel.children and panel.inserter.materialise == {}
    entry = panel.approve()
    assert entry is not None
    request = panel.inserter.materialise
    assert request == {
        "cell": session.materialised_cell(entry, str(tmp_path / "out")),
        "key": entry.key,
        "code_sha256": entry.code_sha256,
        "nonce": 1,
    }
    assert request["cell"].startswith("%%transform_run --client NORTHWIND")
    assert "Approved by alice." in status_text(panel)  # until (unless) the front end answers

    reply(panel.inserter, 1, "inserted")
    assert "inserted as a cell below" in status_text(panel)
    assert panel.inserter.results == {1: "inserted"}
    # a second view of the same panel answers too; the first answer stands
    reply(panel.inserter, 1, "exists")
    assert panel.inserter.results == {1: "inserted"}
    assert "inserted as a cell below" in status_text(panel)


def test_materialise_asks_again_with_a_new_nonce(example: Path) -> None:
    session = session_for(example)
    session.draft()
    entry = session.approve("dave").entry
    cells: list[str] = []
    panel = ApprovedPanel(session, entry, on_materialise=cells.append)
    assert panel.inserter in panel.children
    panel.materialise_button.click()
    panel.materialise_button.click()
    assert panel.inserter.materialise["nonce"] == 2
    assert panel.inserter.materialise["cell"] == cells[-1]
    assert panel.inserter.materialise["key"] == entry.key
    # no extension: nobody answers, and the note names the kernel-side way
    assert MATERIALISE_NOTE in panel.result_html.value
    assert "%transform materialise" in MATERIALISE_NOTE
    reply(panel.inserter, 2, "exists")
    assert "already in this notebook" in status_text(panel)


@pytest.mark.parametrize(
    "content",
    [
        {"type": "user", "text": "hi"},
        {"type": "materialised", "nonce": "1", "result": "inserted"},
        {"type": "materialised", "nonce": 1, "result": "exploded"},
        "not a dict",
    ],
)
def test_other_messages_are_ignored(content: object) -> None:
    seen: list[str] = []
    inserter = CellInserter(on_result=seen.append)
    inserter.request("cell", "k", "s")
    inserter._handle_msg(
        {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    )
    assert seen == [] and inserter.results == {}


def test_the_event_and_metadata_names_match_the_extension() -> None:
    """insert.js dispatches what the extension listens for (two languages, one contract)."""
    ts = CONSTANTS_TS.read_text()
    js = INSERT_JS.read_text()
    event = re.search(r"MATERIALISE_EVENT = '([^']+)'", ts)
    assert event and f'const EVENT = "{event.group(1)}";' in js
    assert "METADATA_KEY = 'dataeng_magics'" in ts
    assert "cancelable: true" in js and "bubbles: true" in js


@pytest.fixture
def shell(state_home: Path) -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "dataeng_magics")
    yield ip
    ip.run_line_magic("unload_ext", "dataeng_magics")
    InteractiveShell.clear_instance()


def test_approved_panel_never_uses_set_next_input(shell: InteractiveShell, example: Path) -> None:
    """From a button click, set_next_input would ride on the next cell's execute reply and
    land below that cell; the approved panel asks the extension instead."""
    session = session_for(example)
    session.draft()
    session.approve("erin")
    shell.rl_next_input = None
    shell.run_cell(f"%%transform --client NORTHWIND --mapping {example}\n")
    magics = next(c for c in shell.configurables if type(c).__name__ == "TransformMagics")
    panel = magics.panel
    assert isinstance(panel, ApprovedPanel)
    panel.materialise_button.click()
    assert shell.rl_next_input is None
    assert shell.payload_manager.read_payload() == []
    assert panel.inserter.materialise["key"] == session.key
    # the kernel-side fallback still inserts through set_next_input
    shell.run_line_magic("transform", "materialise")
    assert str(shell.rl_next_input).startswith("%%transform_run --client NORTHWIND")
