"""Plan -> code: safety checks, plan lint, code generation and the materialised cell."""

from __future__ import annotations

from dataeng_magics.compile.codegen import compile_plan

__all__ = ["compile_plan"]
