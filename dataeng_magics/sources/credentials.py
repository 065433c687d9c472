"""Credentials that arrive inside source URLs: a SAS token's query, a ``token=``.

A secret in a URL is a credential, not part of the path. Where a user gives one (a
workbook's Sources sheet, ``--source NAME=URL``, a batch manifest), the query is split
off as the source's ``credential``: the path without it is what cells, parameters, the
store, the audit log and evidence hold, and the credential stays in memory, handed to
the reader when the data is read. A cell or replay that names the credential-free path
gets it back, at run time, from where the user gave it:

1. the mapping workbook, when it names the same path with the credential;
2. this process, when the path was given with its credential earlier (``%%transform
   --source`` then ``%%transform_run`` in the same kernel);
3. a storage connection with ``auth = "sas"`` for the URL's account (its SAS in an
   environment variable), for ``https://<account>.blob.core.windows.net/...`` URLs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dataeng_magics.redact import split_credential

if TYPE_CHECKING:
    from dataeng_magics.connections import StorageConnection

_given: dict[str, str] = {}
_lock = threading.Lock()


def locate(url: str) -> tuple[str, str]:
    """``url`` as (path, credential); a credential is remembered for this process."""
    path, credential = split_credential(url)
    if credential:
        with _lock:
            _given[path] = credential
    return path, credential


def given(path: str) -> str:
    """The credential given with ``path`` earlier in this process, or ""."""
    with _lock:
        return _given.get(path, "")


def forget() -> None:
    """Forget credentials given in this process (tests; a rotated SAS)."""
    with _lock:
        _given.clear()


def is_http(path: str) -> bool:
    return urlsplit(path).scheme in ("http", "https")


def from_connection(path: str, connections: Mapping[str, StorageConnection]) -> str:
    """The SAS of the storage connection serving an ``https://<account>.blob...`` URL
    (``auth = "sas"``), resolved from its environment variable now, or ""."""
    host = (urlsplit(path).hostname or "").lower()
    if not is_http(path) or not host.endswith(".core.windows.net"):
        return ""
    account = host.split(".", 1)[0]
    from dataeng_magics.connections import resolve_secrets

    for name, conn in connections.items():
        if conn.account == account and conn.auth == "sas":
            return resolve_secrets({name: conn})[name].lstrip("?")
    return ""
