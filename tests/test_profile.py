"""The Sample tab's column profile, computed in Python on the sample rows."""

from __future__ import annotations

import pandas as pd

from dataeng_magics.sources.profile import profile, shown
from dataeng_magics.widgets._render import profile_html


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Ccy": pd.array(["EUR", " EUR", "eur", "USD", "USD", None], dtype="string"),
            "Qty": pd.array([5, 1, 7, None, 3, 3], dtype="Int64"),
            "Day": pd.to_datetime(["2025-01-02", "2024-12-31", None, None, None, None]),
        }
    )


def test_profile_counts_nulls_distinct_ranges_top_values_and_spelling_variants() -> None:
    ccy, qty, day = profile(frame(), {"Ccy": "string", "Qty": "bigint", "Day": "date"})
    assert (ccy.rows, ccy.nulls, ccy.distinct, round(ccy.null_percent)) == (6, 1, 4, 17)
    assert (ccy.minimum, ccy.maximum) == (None, None)  # a string's min/max says nothing
    assert ccy.top[0] == ("USD", 2) and ccy.padded == 1
    assert ccy.variants == [["EUR", " EUR", "eur"]]
    assert (qty.minimum, qty.maximum, qty.distinct, qty.variants) == ("1", "7", 4, [])
    assert (day.minimum, day.maximum, day.nulls) == (
        "2024-12-31 00:00:00",
        "2025-01-02 00:00:00",
        4,
    )


def test_leading_and_trailing_spaces_are_visible() -> None:
    assert shown(" EUR") == "'␣EUR'" and shown("gbp  ") == "'gbp␣␣'" and shown("  ") == "'␣␣'"
    html = profile_html(frame(), {"Ccy": "string"})
    assert "Column profile (6 sample rows)" in html
    assert "&#x27;␣EUR&#x27;" in html and "&#x27;eur&#x27;" in html
