"""Plan -> code: safety checks, plan lint, code generation and the materialised cell.

``compile_plan`` is imported on first use, so the planners can lint a plan
(``compile.lint``) without loading the code generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataeng_magics.compile.codegen import compile_plan

__all__ = ["compile_plan"]


def __getattr__(name: str) -> Any:
    if name == "compile_plan":
        from dataeng_magics.compile.codegen import compile_plan

        return compile_plan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
