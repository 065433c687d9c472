"""Asks the JupyterLab extension to insert an approved cell below the review panel.

The kernel cannot place a cell where it wants (``set_next_input`` lands below the cell
that ran, and only when a cell runs), so the panel holds this invisible anywidget.
``request(cell, key, code_sha256)`` sets a synced trait; its JS dispatches a bubbling
``dataeng-magics:materialise`` DOM event from the panel's output, which the lab
extension answers by inserting the cell below the ``%%transform`` cell, with metadata
naming the approval, unless one with that key and code hash is already there; an
earlier approved cell of the same client and mapping there is replaced. Where
nobody listens (no extension: Notebook 7 alone, VS Code, Databricks, Fabric) nothing
happens, and ``%transform materialise`` inserts it from the kernel instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import anywidget
import traitlets

Result = Literal["inserted", "exists", "replaced"]
RESULTS: tuple[Result, ...] = ("inserted", "exists", "replaced")


class CellInserter(anywidget.AnyWidget):
    _esm = Path(__file__).parent / "static" / "insert.js"

    #: ``{"cell": text, "key": K, "code_sha256": S, "nonce": n}``; each request has a new
    #: nonce, so asking twice for the same cell is still a change the front end sees.
    materialise = traitlets.Dict().tag(sync=True)

    def __init__(self, *, on_result: Callable[[Result], object] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._on_result = on_result
        self._nonce = 0
        #: What the front end did with each request (nonce -> result); absent: nobody did.
        self.results: dict[int, Result] = {}
        self.on_msg(self._handle_front_end)

    def request(self, cell: str, key: str, code_sha256: str) -> int:
        """Ask the front end to insert ``cell``; returns the request's nonce."""
        self._nonce += 1
        self.materialise = {
            "cell": cell,
            "key": key,
            "code_sha256": code_sha256,
            "nonce": self._nonce,
        }
        return self._nonce

    def _handle_front_end(self, _widget: object, content: object, _buffers: object) -> None:
        if not isinstance(content, dict) or content.get("type") != "materialised":
            return
        nonce, result = content.get("nonce"), content.get("result")
        # Several views of one panel each dispatch; the first answer is the one that counts.
        if not isinstance(nonce, int) or result not in RESULTS or nonce in self.results:
            return
        self.results[nonce] = result
        if self._on_result is not None:
            self._on_result(result)
