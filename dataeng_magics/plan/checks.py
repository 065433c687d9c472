"""The check vocabulary: the phrases people write for data checks, turned into plan checks.

One spelling per check (``describe_check``) is what the pseudocode shows and what the
parser reads back, so a Checks sheet, a Validation column and the chat all land on the
same typed checks. Anything not understood raises ``ValueError`` with the reason.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from dataeng_magics.plan.model import (
    Between,
    Check,
    CheckAction,
    Compare,
    LookupDuplicates,
    Matches,
    NotNull,
    OneOf,
    SqlCheck,
    TotalEquals,
    Unique,
)
from dataeng_magics.plan.rules import NUMBER, unquote

_QUOTED = r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\""
_VALUE = rf"(?:{_QUOTED}|[^\s,;'\"]+)"
_BOUND = rf"(?:{_QUOTED}|{NUMBER}|\d{{4}}-\d{{2}}-\d{{2}})"
_ACTIONS: dict[str, CheckAction] = {
    "fail": "fail", "error": "fail", "reject": "quarantine", "quarantine": "quarantine",
    "warn": "warn", "warning": "warn", "report": "warn",
}  # fmt: skip
_ACTION_SUFFIX = re.compile(
    r"\s*(?:,|;|\bthen\b|\bor\b|\bon\s+failure\b|->)?\s*\(?\s*(?P<a>fail|error|reject|quarantine|warn(?:ing)?|report)"
    r"(?:\s+only)?\s*\)?\s*$",
    re.IGNORECASE,
)
_OPS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "=>": ">=", "=<": "<="}


def action_of(text: str) -> CheckAction:
    """An On Failure cell (blank means fail)."""
    word = text.strip().lower()
    if not word:
        return "fail"
    if word not in _ACTIONS:
        raise ValueError(f"{text!r} is not an action; write fail, warn or quarantine")
    return _ACTIONS[word]


def split_action(text: str) -> tuple[str, CheckAction | None]:
    """``'> 0, quarantine'`` -> (``'> 0'``, ``'quarantine'``)."""
    match = _ACTION_SUFFIX.search(text)
    if match is None or match.start() == 0:
        return text.strip(), None
    return text[: match.start()].strip(), _ACTIONS[match.group("a").lower()]


def _number(text: str) -> str:
    try:
        return str(Decimal(text))
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None


def _bound(text: str) -> str:
    return unquote(text) if text[:1] in "'\"" else text


def _values(text: str) -> list[str]:
    return [unquote(v) for v in re.findall(_VALUE, text.strip().strip("()[]"))]


def parse_check(text: str, columns: list[str], action: CheckAction = "fail") -> Check:
    """One check phrase over target ``columns``; raises ValueError when not understood."""
    body = " ".join(text.split())
    body = re.sub(r"^(?:must\s+be|must|should\s+be|is|are|be)\s+", "", body, flags=re.I)
    low = body.lower()
    cols = list(columns)
    if re.fullmatch(r"(?:not\s+(?:null|blank|empty|missing)|required|mandatory|present)", low):
        return NotNull(columns=cols, action=action)
    if re.fullmatch(r"unique|distinct|no\s+duplicates?|not\s+duplicated", low):
        return Unique(columns=cols, action=action)
    if re.fullmatch(
        r"positive|greater\s+than\s+(?:zero|0)|no\s+zero\s+or\s+negative\s+values?", low
    ):
        return Compare(columns=cols, op=">", value="0", action=action)
    if re.fullmatch(
        r"(?:non[\s-]?negative|not\s+negative|no\s+negative(?:\s+values?)?|zero\s+or\s+more)", low
    ):
        return Compare(columns=cols, op=">=", value="0", action=action)
    if match := re.fullmatch(r"(?:one\s+of|in)\s*:?\s*(?P<v>.+)", body, re.I):
        return OneOf(columns=cols, values=_values(match.group("v")), action=action)
    if match := re.fullmatch(rf"between\s+(?P<lo>{_BOUND})\s+and\s+(?P<hi>{_BOUND})", body, re.I):
        low_v, high_v = _bound(match.group("lo")), _bound(match.group("hi"))
        return Between(columns=cols, low=low_v, high=high_v, action=action)
    if match := re.fullmatch(rf"(?P<op>>=|<=|=>|=<|>|<)\s*(?P<v>{_BOUND})", body):
        op = _OPS[match.group("op")]
        return Compare(columns=cols, op=op, value=_bound(match.group("v")), action=action)  # type: ignore[arg-type]
    if match := re.fullmatch(rf"(?:matches|like\s+regex|regex)\s+(?P<p>{_QUOTED})", body, re.I):
        return Matches(columns=cols, pattern=unquote(match.group("p")), action=action)
    if match := re.fullmatch(r"(?:sql|expr|expression)\s*:\s*(?P<e>.+)", body, re.I | re.S):
        return SqlCheck(columns=[], expression=match.group("e").strip(), action=action)
    if match := re.fullmatch(
        rf"total\s+(?:equals|=|matches)\s+(?:the\s+)?source\s+(?P<c>{_VALUE})"
        rf"(?:\s*(?:x|\*|×|times)\s*(?P<f>{NUMBER}))?(?:\s+within\s+(?P<t>{NUMBER}))?",
        body,
        re.I,
    ):
        return TotalEquals(
            columns=cols,
            source_column=unquote(match.group("c")),
            factor=_number(match.group("f") or "1"),
            tolerance=_number(match.group("t")) if match.group("t") else None,
            action=action,
        )
    if match := re.fullmatch(
        rf"(?:no\s+)?duplicated?\s+(?:lookup\s+)?keys?(?:\s+in\s+(?:lookup\s+)?(?P<s>{_VALUE})"
        rf"\s+on\s+(?P<k>{_VALUE}))?|unique\s+lookup(?:\s+keys?)?",
        body,
        re.I,
    ):
        source = unquote(match.group("s")) if match.group("s") else ""
        key = unquote(match.group("k")) if match.group("k") else ""
        return LookupDuplicates(columns=cols, source=source, key=key, action=action)
    raise ValueError(
        f"{text!r} is not a check; write e.g. not null, unique, one of A, B, between 0 and 10, "
        "> 0, matches '[A-Z]{3}', sql: <condition>, total equals source COLUMN"
    )


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _name(text: str) -> str:
    """A source or column name, quoted when it has spaces (``'Cpty ID'``)."""
    return text if re.fullmatch(r"[^\s,;'\"]+", text) else _lit(text)


def _num_or_lit(text: str) -> str:
    return text if re.fullmatch(rf"{NUMBER}|\d{{4}}-\d{{2}}-\d{{2}}", text) else _lit(text)


def describe_check(check: Check) -> str:
    """The check as the phrase ``parse_check`` reads back."""
    match check:
        case NotNull():
            return "not null"
        case Unique():
            return "unique"
        case OneOf(values=values):
            return "one of " + ", ".join(_lit(v) for v in values)
        case Between(low=lo, high=hi):
            return f"between {_num_or_lit(lo)} and {_num_or_lit(hi)}"
        case Compare(op=op, value=v):
            return f"{op} {_num_or_lit(v)}"
        case Matches(pattern=p):
            return f"matches {_lit(p)}"
        case SqlCheck(expression=e):
            return f"sql: {e}"
        case TotalEquals(source_column=c, factor=f, tolerance=t):
            text = f"total equals source {_name(c)}" + (f" x {f}" if f != "1" else "")
            return text + (f" within {t}" if t is not None else "")
        case LookupDuplicates(source=s, key=k):
            return f"no duplicate keys in lookup {_name(s)} on {_name(k)}"
    raise TypeError(f"unknown check {check!r}")  # pragma: no cover


def check_name(check: Check) -> str:
    """What reports and the rejected rows call the check: ``AMOUNT > 0``."""
    cols = ", ".join(check.columns)
    return f"{cols} {describe_check(check)}" if cols else describe_check(check)


#: Chat phrasings: "add validation for negative values on AMOUNT", "AMOUNT must be
#: positive", "check AMOUNT > 0, quarantine", "TRADE_ID must be unique".
_CHECK_WORDS = (
    r"not|unique|one|in\b|between|[<>=]|matches|regex|sql|total|positive|non|no\b|distinct"
    r"|required|mandatory|must|should|is\b|are\b|duplicated?"
)
_CHAT = [
    re.compile(rf"^check\s+(?P<c>[^\s,]+(?:\s*,\s*[^\s,]+)*?)\s+(?P<k>(?:{_CHECK_WORDS}).*)$",
               re.I),
    re.compile(r"^(?:add\s+)?(?:a\s+)?(?:validation|check)\s+for\s+(?P<k>.+?)"
               r"\s+(?:on|in|of|for)\s+(?P<c>\S+)$", re.I),
    re.compile(r"^(?P<c>[^\s,:]+(?:\s*,\s*[^\s,:]+)*)\s+"
               r"(?P<k>(?:must|should)\s+(?:not\s+)?(?:be\s+|have\s+|match\s+|equal\s+)?.+)$",
               re.I),
]  # fmt: skip


def parse_chat_check(line: str) -> tuple[list[str], str, CheckAction] | None:
    """A chat line that asks for a check -> (columns, check phrase, action), else None."""
    text, action = split_action(line.strip().rstrip("."))
    for regex in _CHAT:
        match = regex.match(text)
        if match is None:
            continue
        columns = [unquote(c) for c in re.split(r"\s*,\s*", match.group("c")) if c]
        phrase = match.group("k")
        phrase = re.sub(r"^(?:must|should)\s+not\s+be\s+(null|blank|empty|missing)$", r"not \1",
                        phrase, flags=re.I)  # fmt: skip
        phrase = re.sub(r"^(?:must|should)\s+(?:be\s+|match\s+(?=')|equal\s+)?", "", phrase,
                        flags=re.I)  # fmt: skip
        phrase = re.sub(r"^(negative)\s+values?$", r"no \1 values", phrase, flags=re.I)
        phrase = re.sub(r"^'", "matches '", phrase)
        return columns, phrase, action or "fail"
    return None
