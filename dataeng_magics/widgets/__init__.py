"""The review panels of ``%%transform`` (ipywidgets, plus an anywidget chat).

Imported lazily: ``import dataeng_magics.widgets`` loads nothing heavy; ipywidgets and
anywidget load when a panel class is first used, and ``text_report`` needs neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataeng_magics.widgets.chat import ChatWidget
    from dataeng_magics.widgets.insert import CellInserter
    from dataeng_magics.widgets.report import text_report
    from dataeng_magics.widgets.review import ApprovedPanel, ReviewPanel

__all__ = ["ApprovedPanel", "CellInserter", "ChatWidget", "ReviewPanel", "text_report"]

_WHERE = {
    "ApprovedPanel": "review",
    "ReviewPanel": "review",
    "ChatWidget": "chat",
    "CellInserter": "insert",
    "text_report": "report",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
