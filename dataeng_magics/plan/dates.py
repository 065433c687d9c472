"""Date patterns as people write them (``DD/MM/YYYY``) and as Spark reads them
(``dd/MM/yyyy``): the language of the plan's date step."""

from __future__ import annotations

import re

_DATE_TOKENS = re.compile(
    r"YYYY|YY|MONTH|MMMM|MMM|MON|MI|MM|M|DD|D|HH24|HH12|HH|H|SSS|SS|FFFFFF|FFF|AM|PM|T|[/.\-: ,]"
)
_JAVA = {
    "YYYY": "yyyy", "YY": "yy", "MONTH": "MMMM", "MMMM": "MMMM", "MMM": "MMM", "MON": "MMM",
    "MM": "MM", "M": "M", "DD": "dd", "D": "d", "HH24": "HH", "HH": "HH", "H": "H",
    "HH12": "hh", "MI": "mm", "SS": "ss", "FFF": "SSS", "SSS": "SSS", "FFFFFF": "SSSSSS",
    "AM": "a", "PM": "a", "T": "'T'",
}  # fmt: skip


_SEPARATORS = {"/", ".", "-", ":", " ", ",", "T"}


def java_date_pattern(human: str) -> str:
    """``MM/DD/YYYY`` -> ``MM/dd/yyyy``. ``MM`` after an hour means minutes.

    Raises ValueError for anything that is not a date pattern.
    """
    text = human.strip().upper()
    out: list[str] = []
    pos, after_hour, has_date = 0, False, False
    while pos < len(text):
        match = _DATE_TOKENS.match(text, pos)
        if not match:
            raise ValueError(f"{human!r} is not a date pattern (use letters like DD, MM, YYYY)")
        token = match.group(0)
        pos = match.end()
        if token == "MM" and after_hour:
            token = "MI"
        if token not in _SEPARATORS:  # HH:MM DD/MM/YYYY: only the MM next to the hour
            after_hour = token.startswith("H")
        if token in ("YYYY", "YY", "DD", "D", "MM", "M", "MMM", "MON", "MMMM", "MONTH"):
            has_date = True
        out.append(_JAVA.get(token, token))
    if not has_date:
        raise ValueError(f"{human!r} has no day, month or year in it")
    return "".join(out)


def has_time(java_pattern: str) -> bool:
    return bool(re.search(r"[Hhms]", java_pattern.replace("'T'", "")))
