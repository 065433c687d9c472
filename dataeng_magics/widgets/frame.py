"""Makes a review panel one unit on the notebook page: keys typed in it stay in it.

An invisible anywidget inside each panel. Its JS finds the panel's element (the
``dem-panel`` class) and keeps every keydown in it: it marks the element with
``data-lm-suppress-shortcuts`` (Lumino skips its shortcuts for such events: JupyterLab
and Notebook 7, which listen in different phases) and stops the event's propagation
there (whatever else listens further up: VS Code's notebook webview, the notebook's own
handlers). So Shift+Enter in the chat is a new line, not "run this cell". Its stylesheet
is the panel's (disabled buttons look disabled). When the pointer or the focus comes
back into the panel, it tells Python (``on_interact``), so the panel re-reads its entry
and shows a revocation made elsewhere before anyone clicks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget

#: The class a panel carries so its frame can find it.
PANEL_CLASS = "dem-panel"


class PanelFrame(anywidget.AnyWidget):
    _esm = Path(__file__).parent / "static" / "frame.js"
    _css = Path(__file__).parent / "static" / "panel.css"

    def __init__(self, *, on_interact: Callable[[], object] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._on_interact = on_interact
        self.on_msg(self._handle_front_end)

    def _handle_front_end(self, _widget: object, content: object, _buffers: object) -> None:
        interact = isinstance(content, dict) and content.get("type") == "interact"
        if interact and self._on_interact is not None:
            self._on_interact()
