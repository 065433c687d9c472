"""The Code tab: read-only, highlighted code with a Copy button.

An anywidget, because copying needs the browser's clipboard. Python highlights the code
(Pygments, in ``_render``) and says where it comes from (``note``); the front end shows
both, never lets the code be edited, and copies ``code`` exactly as compiled.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from dataeng_magics.widgets import _render as render


class CodeView(anywidget.AnyWidget):
    _esm = Path(__file__).parent / "static" / "code.js"
    _css = Path(__file__).parent / "static" / "code.css"

    #: The text Copy puts on the clipboard: the code exactly as compiled.
    code = traitlets.Unicode("").tag(sync=True)
    #: ``code`` highlighted: markup built by ``_render.highlight_python`` (escaped).
    html = traitlets.Unicode("").tag(sync=True)
    #: One line above the code: where it comes from ("compiled from the draft", ...).
    note = traitlets.Unicode("").tag(sync=True)

    def show(self, code: str, note: str) -> None:
        """Show ``code`` (empty: none yet) under ``note``."""
        with self.hold_sync():
            self.note = note
            self.code = code
            self.html = render.highlight_python(code) if code else ""
