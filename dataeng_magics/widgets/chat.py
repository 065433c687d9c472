"""The review chat: a small anywidget whose JS shows the conversation and sends input.

The front end sends ``{"type": "user", "text": ...}``; Python hands the text to the
panel (``on_user``), which asks the workflow for a revision and appends the answer to
``messages``. ``send(text)`` takes the very same path, for tests and plain Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anywidget
import traitlets

Message = dict[str, Any]
ROLES = ("user", "planner", "system")


class ChatWidget(anywidget.AnyWidget):
    _esm = Path(__file__).parent / "static" / "chat.js"
    _css = Path(__file__).parent / "static" / "chat.css"

    #: Each message: ``{"role": "user" | "planner" | "system", "text": str, "changes"?: [str]}``.
    messages = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: True while a revision is being computed; the front end disables its input.
    busy = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        messages: Sequence[Message] = (),
        *,
        on_user: Callable[[str], object] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(messages=list(messages), **kwargs)
        self._on_user = on_user
        self.on_msg(self._handle_front_end)

    def on_user(self, callback: Callable[[str], object] | None) -> None:
        """Set who answers the user's text (the review panel's ``revise``)."""
        self._on_user = callback

    def add_message(self, role: str, text: str, changes: Sequence[str] | None = None) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {role!r}")
        message: Message = {"role": role, "text": text}
        if changes:
            message["changes"] = list(changes)
        self.messages = [*self.messages, message]  # a new list, so the change syncs

    def send(self, content: str | dict[str, Any], buffers: list[Any] | None = None) -> None:
        """``send(text)`` acts as if the user typed ``text`` and pressed Send.

        A dict is a custom message to the front end, as ``ipywidgets.Widget.send``
        (``focus()`` and ``blur()`` use that), so the widget protocol keeps working.
        """
        if isinstance(content, str):
            self._handle_custom_msg({"type": "user", "text": content}, [])
        else:
            super().send(content, buffers)

    def _handle_front_end(self, _widget: object, content: object, _buffers: object) -> None:
        if not isinstance(content, dict) or content.get("type") != "user":
            return
        text = str(content.get("text", "")).strip()
        if not text or self.busy:
            return
        if self._on_user is None:
            self.add_message("user", text)
        else:
            self._on_user(text)
