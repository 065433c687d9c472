"""The README's promises that code can check: the mapping header tables list exactly the
header words the reader accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataeng_magics.mapping.checks import CHECK_HEADERS
from dataeng_magics.mapping.read import FILTER_HEADERS, MAPPING_HEADERS, SOURCE_HEADERS, _norm

README = Path(__file__).resolve().parent.parent / "README.md"


def header_tables() -> dict[str, list[set[str]]]:
    """Each sheet's header table in the README (after its **X sheet** label): one set of
    normalised header words per row."""
    text = README.read_text(encoding="utf-8")
    start = text.index("## The mapping workbook")
    section = text[start : text.index("\n### ", start)]
    tables: dict[str, list[set[str]]] = {}
    sheet = None
    for line in section.splitlines():
        for name in ("Mapping", "Sources", "Filters", "Checks"):
            if f"**{name} sheet**" in line:
                sheet = name
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 2 or cells[1] in ("accepted headers", "---"):
            continue
        assert sheet is not None, f"a header table before any **... sheet** label: {line}"
        tables.setdefault(sheet, []).append({_norm(word) for word in cells[1].split(",")})
    return tables


@pytest.mark.parametrize(
    ("sheet", "accepted"),
    [
        ("Mapping", MAPPING_HEADERS),
        ("Sources", SOURCE_HEADERS),
        ("Filters", FILTER_HEADERS),
        ("Checks", CHECK_HEADERS),
    ],
)
def test_readme_lists_every_header_the_reader_accepts(
    sheet: str, accepted: dict[str, tuple[str, ...]]
) -> None:
    rows = header_tables()[sheet]
    assert len(rows) == len(accepted), f"the README's {sheet} table has a row per field"
    for field, words in accepted.items():
        [row] = [row for row in rows if _norm(words[0]) in row]  # the field's own row
        missing = {_norm(w) for w in words} - row
        extra = row - {_norm(w) for w in words}
        assert not missing, f"README, {sheet} sheet, {field}: add {sorted(missing)}"
        assert not extra, f"README, {sheet} sheet, {field}: the reader refuses {sorted(extra)}"
