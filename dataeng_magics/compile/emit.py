"""How generated code is laid out: method chains and calls, one style for every part.

Shared by the code generator and the readers' compile sides, so a read and a table's
transformations look like one author wrote them.
"""

from __future__ import annotations


def chain(head: str, calls: list[str]) -> list[str]:
    """``head = (`` then one call per line, then ``)``."""
    return [f"{head} = (", *[f"    {c}" for c in calls], ")"]


def call(name: str, args: list[str], inline: int = 88) -> str:
    """``.name(a, b)`` on one line when short, else one argument per line."""
    one = f".{name}({', '.join(args)})"
    if len(one) <= inline:
        return one
    return f".{name}(\n" + "".join(f"        {a},\n" for a in args) + "    )"
