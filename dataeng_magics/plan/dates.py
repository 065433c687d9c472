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


_PYTHON = {
    "yyyy": "%Y", "yy": "%y", "MMMM": "%B", "MMM": "%b", "MM": "%m", "M": "%m", "dd": "%d",
    "d": "%d", "HH": "%H", "H": "%H", "hh": "%I", "mm": "%M", "ss": "%S", "SSSSSS": "%f",
    "SSS": "%f", "a": "%p", "'T'": "T",
}  # fmt: skip
_JAVA_TOKENS = re.compile("|".join(sorted(map(re.escape, _PYTHON), key=len, reverse=True)))

#: Patterns tried when a date pattern does not fit the sample, most common first.
CANDIDATES = (
    "YYYY-MM-DD", "DD/MM/YYYY", "MM/DD/YYYY", "DD.MM.YYYY", "YYYYMMDD", "DD-MM-YYYY",
    "MM-DD-YYYY", "YYYY/MM/DD", "DD-MON-YYYY", "DD MON YYYY", "YYYY-MM-DD HH:MI:SS",
    "YYYY-MM-DDTHH:MI:SS", "DD/MM/YYYY HH:MI", "MM/DD/YYYY HH:MI",
)  # fmt: skip


def parses(values: list[str], human: str) -> int:
    """How many of ``values`` the pattern reads (Python's ``strptime``, close to Spark's
    reading for these patterns), so a pattern is checked against the sample at once."""
    from datetime import datetime

    fmt = _JAVA_TOKENS.sub(lambda m: _PYTHON[m.group(0)], java_date_pattern(human))
    count = 0
    for value in values:
        try:
            datetime.strptime(value, fmt)
        except ValueError:
            continue
        count += 1
    return count


def best_pattern(values: list[str]) -> tuple[str, int] | None:
    """The candidate pattern that reads the most values, and how many (None: none reads any)."""
    scored = [(parses(values, pattern), -i, pattern) for i, pattern in enumerate(CANDIDATES)]
    count, _, pattern = max(scored)
    return (pattern, count) if count else None
