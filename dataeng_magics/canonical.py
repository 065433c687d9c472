"""The one canonical JSON form of everything that is hashed: plans, cache keys, audit records.

One spelling per value (sorted keys, no spaces, UTF-8 kept, NaN refused), so a hash is
the same on every machine and in every release that reads the same data.

Models (the parsed mapping, the plan) are hashed in their *version 1 form*
(``hashed_form``): the fields they had when keys were first defined, plus any field
added since whose value is not its default. So adding an optional field to a model
changes no key and no plan hash of existing data, and an approval outlives the upgrade.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

#: The hashed fields of each model at version 1 (dataeng_magics 0.1, commit 3b6b624),
#: by class name. Renaming or removing one of these, or changing what it holds, changes
#: existing keys: that needs a new key version and a test on the older state
#: (tests/test_compat.py). A class not listed here has all its fields hashed.
FIELDS_V1: dict[str, frozenset[str]] = {
    # the parsed mapping (the cache key)
    "Mapping": frozenset({"targets", "sources", "filters"}),
    "TargetColumn": frozenset(
        {"table", "name", "type", "source", "source_column", "rule", "required", "default"}
    ),
    "SourceSpec": frozenset({"name", "format", "delimiter", "header", "encoding", "excel_sheet"}),
    "FilterSpec": frozenset({"table", "condition"}),
    # the plan (its hash is in the approval and in the compiled code's first line)
    "Plan": frozenset({"version", "client", "sources", "tables", "notes"}),
    "SourceRead": frozenset(
        {"format", "delimiter", "header", "encoding", "excel_sheet", "columns"}
    ),
    "TablePlan": frozenset({"name", "source", "filters", "columns"}),
    "FilterPlan": frozenset({"condition", "description"}),
    "ColumnPlan": frozenset({"name", "type", "source_column", "steps", "required", "rule"}),
    "Trim": frozenset({"op"}),
    "Upper": frozenset({"op"}),
    "Lower": frozenset({"op"}),
    "ParseDate": frozenset({"op", "pattern", "output_pattern"}),
    "Multiply": frozenset({"op", "by"}),
    "Divide": frozenset({"op", "by"}),
    "Round": frozenset({"op", "digits"}),
    "Default": frozenset({"op", "value"}),
    "Constant": frozenset({"op", "value"}),
    "MapValues": frozenset({"op", "pairs", "otherwise"}),
    "Concat": frozenset({"op", "columns", "separator"}),
    "Substring": frozenset({"op", "start", "length"}),
    "DigitsOnly": frozenset({"op"}),
    "Lookup": frozenset({"op", "column", "source", "key"}),
    "Sql": frozenset({"op", "expression"}),
    "Unresolved": frozenset({"op", "text", "reason"}),
}


def canonical_json(data: Any) -> str:
    """``data`` (JSON-native values only) as the text that is hashed and stored."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hashed_form(model: BaseModel) -> Any:
    """``model.model_dump(mode="json")`` without the fields added after version 1 that
    still hold their defaults: what keys and plan hashes are computed from."""
    return _prune(model, model.model_dump(mode="json"))


def _prune(value: Any, dumped: Any) -> Any:
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        known = FIELDS_V1.get(type(value).__name__)
        return {
            name: _prune(getattr(value, name), item)
            for name, item in dumped.items()
            if known is None or name in known or not _is_default(fields[name], item)
        }
    if isinstance(value, list | tuple):
        return [_prune(v, d) for v, d in zip(value, dumped, strict=True)]
    if isinstance(value, dict):
        return {k: _prune(value[k], d) for k, d in dumped.items()}
    return dumped


def _is_default(field: FieldInfo, dumped: Any) -> bool:
    if field.is_required():
        return False
    default = field.get_default(call_default_factory=True)
    return bool(to_jsonable_python(default) == dumped)
