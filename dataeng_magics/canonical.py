"""The one canonical JSON form of everything that is hashed: plans, cache keys, audit records.

One spelling per value (sorted keys, no spaces, UTF-8 kept, NaN refused), so a hash is
the same on every machine and in every release that reads the same data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(data: Any) -> str:
    """``data`` (JSON-native values only) as the text that is hashed and stored."""
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
