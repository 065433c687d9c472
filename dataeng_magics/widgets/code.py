"""The Code tab: read-only, highlighted code with a Copy button.

An anywidget, because copying needs the browser's clipboard. Python says where the code
comes from (``note``) and highlights it (Pygments, in ``_render``) once the tab is shown
(``active``): highlighting costs a few hundred milliseconds the panel's first paint
should not wait for; until then the front end shows the plain text. The code is never
editable, and Copy copies ``code`` exactly as compiled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets

from dataeng_magics.widgets import _render as render


class CodeView(anywidget.AnyWidget):
    _esm = Path(__file__).parent / "static" / "code.js"
    _css = Path(__file__).parent / "static" / "code.css"

    #: The text Copy puts on the clipboard (and the view shows until ``html`` is set).
    code = traitlets.Unicode("").tag(sync=True)
    #: ``code`` highlighted: markup built by ``_render.highlight_python`` (escaped).
    html = traitlets.Unicode("").tag(sync=True)
    #: One line above the code: where it comes from ("compiled from the draft", ...).
    note = traitlets.Unicode("").tag(sync=True)
    #: Whether the view is on screen (its tab selected): only then is ``code`` highlighted.
    active = traitlets.Bool(False)

    def show(self, code: str, note: str) -> None:
        """Show ``code`` (empty: none yet) under ``note``."""
        with self.hold_sync():
            self.note = note
            if code != self.code:
                self.code, self.html = code, ""
            self._highlight()

    @traitlets.observe("active")
    def _activated(self, _change: Any) -> None:
        self._highlight()

    def _highlight(self) -> None:
        if self.active and self.code and not self.html:
            self.html = render.highlight_python(self.code)
