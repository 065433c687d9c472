"""The rule vocabulary: the phrases mapping authors write, turned into plan steps.

Phrases are case-insensitive and chain left to right with ``,``, ``;``, ``and`` or
``then``. Anything not understood becomes an ``Unresolved`` step rather than a guess,
so a human (or the LLM planner) must resolve it before approval.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from pydantic import ValidationError

from dataeng_magics.plan.dates import java_date_pattern
from dataeng_magics.plan.model import (
    Concat,
    Constant,
    Default,
    DigitsOnly,
    Divide,
    Lookup,
    Lower,
    MapValues,
    Multiply,
    ParseDate,
    Round,
    Sql,
    Step,
    Substring,
    Trim,
    Unresolved,
    Upper,
)

_QUOTED = r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\""
VALUE = rf"(?:{_QUOTED}|[^\s,;='\"]+)"
WORDS = rf"(?:{_QUOTED}|[^,;'\"]+?)"  # a bare value may have spaces; stops at a separator
NUMBER = r"[-+]?\d+(?:\.\d+)?"
PATTERN = rf"(?:{_QUOTED}|[A-Za-z]+(?:[/.\-:]+[A-Za-z]+)*(?:[ T][Hh]{{1,2}}\d*(?:[:.][A-Za-z]+)*)?)"
BOUNDARY = r"(?=\s*(?:$|[,;]|\band\b|\bthen\b))"
SEPARATORS = re.compile(r"(?:\s*(?:[,;]|\band\b|\bthen\b)\s*)+", re.IGNORECASE)


def unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        quote = text[0]
        return text[1:-1].replace(quote * 2, quote)
    return text


# --- phrases ----------------------------------------------------------------------

Builder = Callable[[re.Match[str]], Step | None]


def _number(text: str) -> str:
    try:
        return str(Decimal(text))
    except InvalidOperation:  # pragma: no cover - the regex only admits numbers
        raise ValueError(f"{text!r} is not a number") from None


def _parse_date(match: re.Match[str]) -> Step:
    pattern = unquote(match.group("p"))
    out = match.groupdict().get("o")
    java_date_pattern(pattern)  # raises ValueError -> Unresolved
    if out:
        java_date_pattern(unquote(out))
    return ParseDate(pattern=pattern, output_pattern=unquote(out) if out else None)


def _divide(match: re.Match[str]) -> Step:
    by = _number(match.group("n"))
    if Decimal(by) == 0:
        raise ValueError("division by zero")
    return Divide(by=by)


def _map(match: re.Match[str]) -> Step:
    pairs = re.findall(rf"({VALUE})\s*(?:=>|->|=|:)\s*({VALUE})", match.group("pairs"))
    other = match.group("other")
    return MapValues(
        pairs=[(unquote(a), unquote(b)) for a, b in pairs],
        otherwise=unquote(other) if other is not None else None,
    )


def _concat(match: re.Match[str]) -> Step:
    columns = [unquote(c) for c in re.split(r"\s*,\s*|\s+and\s+|\s*\+\s*", match.group("cols"))]
    sep = match.group("sep")
    return Concat(columns=[c for c in columns if c], separator=unquote(sep) if sep else "")


_PAIR = rf"{VALUE}\s*(?:=>|->|=|:)\s*{VALUE}"

PHRASES: list[tuple[str, Builder]] = [
    (
        r"direct(?:\s+(?:move|map(?:ping)?|copy))?|as[\s-]is|1\s*:\s*1|one[\s-]to[\s-]one"
        r"|no\s+(?:transformation|change)|copy|pass[\s-]?through|straight\s+move|move",
        lambda m: None,
    ),
    (r"trim(?:med)?|strip(?:\s+(?:spaces|whitespace))?", lambda m: Trim()),
    (r"(?:to\s+)?upper(?:\s*case)?|uppercased?", lambda m: Upper()),
    (r"(?:to\s+)?lower(?:\s*case)?|lowercased?", lambda m: Lower()),
    (rf"(?:convert|reformat)(?:\s+from)?\s+(?P<p>{PATTERN})\s+to\s+(?P<o>{PATTERN})", _parse_date),
    (rf"parse\s+(?:date|timestamp|datetime)\s+(?:from\s+|as\s+|with\s+)?(?P<p>{PATTERN})"
     rf"(?:\s+(?:as|to|into)\s+(?P<o>{PATTERN}))?",
     _parse_date),
    (rf"(?:date|timestamp)\s+format\s+(?P<p>{PATTERN})", _parse_date),
    (rf"multipl(?:y|ied)\s+by\s+(?P<n>{NUMBER})|(?:x|times)\s*(?P<n2>{NUMBER})",
     lambda m: Multiply(by=_number(m.group("n") or m.group("n2")))),
    (rf"divided?\s+by\s+(?P<n>{NUMBER})", _divide),
    (r"round(?:ed)?\s+(?:to\s+)?(?P<d>\d+)(?:\s+(?:decimals?|decimal\s+places|places|dp|digits))?",
     lambda m: Round(digits=int(m.group("d")))),
    (rf"(?:default|if\s+(?:null|blank|empty|missing)\s+(?:then|use|set\s+to)?)\s+(?P<v>{WORDS})"
     r"(?:\s+(?:if|when)\s+(?:null|blank|empty|missing))?",
     lambda m: Default(value=unquote(m.group("v")))),
    (rf"(?:constant|hard[\s-]?coded?(?:\s+(?:to|as))?|set\s+to|always)\s+(?P<v>{WORDS})",
     lambda m: Constant(value=unquote(m.group("v")))),
    (rf"map\s+(?P<pairs>{_PAIR}(?:\s*,\s*{_PAIR})*)(?:\s*,?\s*(?:else|otherwise)\s+(?P<other>{VALUE}))?",
     _map),
    # Commas and "and" separate the columns, so only "with 'sep'" ends the list early.
    (rf"concat(?:enate)?\s+(?P<cols>[^;]+?)(?:\s+(?:with|separated\s+by)\s+(?P<sep>{_QUOTED})"
     r"|(?=\s*(?:$|;|\bthen\b)))",
     _concat),
    (r"(?:first|left)\s+(?P<n>\d+)(?:\s+(?:characters?|chars?|letters?|digits?))?",
     lambda m: Substring(start=1, length=int(m.group("n")))),
    (r"(?:last|right)\s+(?P<n>\d+)(?:\s+(?:characters?|chars?|letters?|digits?))?",
     lambda m: Substring(start=-int(m.group("n")), length=int(m.group("n")))),
    (r"substr(?:ing)?\s*\(?\s*(?P<s>-?\d+)\s*,\s*(?P<l>\d+)\s*\)?",
     lambda m: Substring(start=int(m.group("s")), length=int(m.group("l")))),
    (r"remove\s+non[\s-]?(?:digits?|numeric)|digits\s+only|keep\s+(?:only\s+)?digits"
     r"|numbers\s+only|strip\s+non[\s-]?(?:digits?|numeric)",
     lambda m: DigitsOnly()),
    (rf"lookup\s+(?P<col>{WORDS})\s+from\s+(?P<src>{WORDS})\s+on\s+(?P<key>{WORDS})",
     lambda m: Lookup(column=unquote(m.group("col")), source=unquote(m.group("src")),
                      key=unquote(m.group("key")))),
]  # fmt: skip

_COMPILED = [(re.compile(rf"(?:{rx}){BOUNDARY}", re.IGNORECASE), build) for rx, build in PHRASES]
_SQL = re.compile(r"(?:sql|expr|expression)\s*:\s*(?P<e>.+)$", re.IGNORECASE | re.DOTALL)


def _reason(exc: ValueError) -> str:
    """Why a phrase could not become a step, on one line (pydantic's own is multi-line)."""
    if isinstance(exc, ValidationError):  # "left 0": a step field out of range
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return str(exc)


def parse_rule(text: str | None) -> list[Step]:
    """Turn one rule cell into steps. Blank means copy the source column (no steps)."""
    text = " ".join((text or "").split())
    steps: list[Step] = []
    pos = 0
    while True:
        sep = SEPARATORS.match(text, pos)
        if sep:
            pos = sep.end()
        if pos >= len(text):
            return steps
        sql = _SQL.match(text, pos)
        if sql:
            steps.append(Sql(expression=sql.group("e").strip()))
            return steps
        for regex, build in _COMPILED:
            match = regex.match(text, pos)
            if not match:
                continue
            try:
                step = build(match)
            except ValueError as exc:
                step = Unresolved(text=match.group(0), reason=_reason(exc))
            if step is not None:
                steps.append(step)
            pos = match.end()
            break
        else:
            end = SEPARATORS.search(text, pos)
            chunk = text[pos : end.start() if end else len(text)]
            steps.append(Unresolved(text=chunk))
            pos = end.start() if end else len(text)
