"""A column profile of a source's sample: what a reviewer checks before trusting a rule.

Computed in Python on the sample rows (100 by default), never with Spark, so the Sample
tab shows it as soon as the panel does. Values keep their spelling: ``' EUR'`` and
``'eur'`` are reported as variants of ``EUR``, which is what a ``trim, upper`` rule is for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ColumnProfile", "profile", "shown"]

TOP = 3  # top values listed per column
VARIANTS = 4  # spellings listed per variant group

_ORDERED = ("tinyint", "smallint", "int", "bigint", "float", "double", "date", "timestamp")


@dataclass(frozen=True)
class ColumnProfile:
    """One source column over the sample rows."""

    column: str
    type: str  # the Spark type inferred from the sample
    rows: int
    nulls: int
    distinct: int
    minimum: str | None  # numbers and dates only: a string's min/max says nothing
    maximum: str | None
    top: list[tuple[str, int]]  # (value, count), most frequent first
    variants: list[list[str]]  # spellings that differ only in spaces or case
    padded: int  # values with leading or trailing spaces

    @property
    def null_percent(self) -> float:
        return 100 * self.nulls / self.rows if self.rows else 0.0


def shown(value: str) -> str:
    """A value quoted, with leading and trailing spaces made visible (``'␣EUR'``)."""
    core = value.strip(" ")
    if not core:
        return "'" + "␣" * len(value) + "'"
    start = value.index(core)
    left, right = value[:start], value[start + len(core) :]
    return "'" + "␣" * len(left) + core + "␣" * len(right) + "'"


def profile(frame: pd.DataFrame, schema: dict[str, str]) -> list[ColumnProfile]:
    """Null share, distinct count, min/max, top values and spelling variants per column."""
    result = []
    for name in frame.columns:
        series = frame[name]
        values = series.dropna()
        type_name = schema.get(str(name), "string")
        ordered = type_name.startswith(("decimal", *_ORDERED)) and not values.empty
        texts = values.astype(str)
        counts = texts.value_counts()
        groups: dict[str, list[str]] = {}
        for text in counts.index:
            groups.setdefault(" ".join(text.split()).casefold(), []).append(text)
        result.append(
            ColumnProfile(
                column=str(name),
                type=type_name,
                rows=len(series),
                nulls=int(series.isna().sum()),
                distinct=int(values.nunique()),
                minimum=str(values.min()) if ordered else None,
                maximum=str(values.max()) if ordered else None,
                top=[(str(v), int(c)) for v, c in counts.head(TOP).items()],
                variants=[g[:VARIANTS] for g in groups.values() if len(g) > 1],
                padded=int((texts != texts.str.strip()).sum()),
            )
        )
    return result
