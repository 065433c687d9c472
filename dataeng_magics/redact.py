"""One place that decides what is safe to show: every message, log line, record and
rendered path passes through here before a person or a file sees it.

Secrets reach us three ways: storage keys and SAS tokens resolved from settings
(``register_secret``), model API keys in environment variables (``SECRET_ENV``), and
secret-shaped text we never saw before (a SAS pasted into a URL, a token in an
``sc://`` string, a bearer header in an error). ``redact`` masks all three;
``public_path`` also drops the parts of a URL that only ever carry credentials.
"""

from __future__ import annotations

import logging
import os
import re
import threading

#: Environment variables holding model API keys: never settings, always masked.
SECRET_ENV = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_AD_TOKEN",
    "AZURE_CLIENT_SECRET",
)

#: Query parameters that carry credentials: a SAS signature and its key fields, tokens,
#: codes, keys. A URL whose query has one of them holds a credential, not just a path.
_SECRET_PARAMS = (
    r"sig|signature|token|access_token|id_token|code|key|api[-_]?key|apikey|"
    r"password|passwd|secret|client_secret|skoid|sktid|sks|skt|ske|skv"
)
_SECRET_QUERY = re.compile(rf"(?:^|&)(?:{_SECRET_PARAMS})=", re.IGNORECASE)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
#: Secret-shaped fragments masked even when we never saw the value (a SAS in a URL a
#: user pasted, a token in an sc:// connection string, a bearer header in an error).
_PATTERNS = [
    re.compile(r"(AccountKey=)[^;\s'\"]+", re.IGNORECASE),
    re.compile(r"(SharedAccessSignature=)[^;\s'\"]+", re.IGNORECASE),
    # secret query parameters: a SAS signature and its key fields, tokens, codes, keys
    re.compile(rf"([?&](?:{_SECRET_PARAMS})=)[^&#\s'\"]+", re.IGNORECASE),
    re.compile(r"(;token=)[^;/\s'\"]+", re.IGNORECASE),
    re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE),
    re.compile(r"(\"access_token\"\s*:\s*\")[^\"]+", re.IGNORECASE),
    re.compile(r"()sk-[A-Za-z0-9_\-]{8,}"),  # OpenAI-style keys
    re.compile(r"()eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-.]+"),  # JWTs (Entra ID tokens)
]
MASK = "***"


def register_secret(value: str | None) -> None:
    """Remember a secret so :func:`redact` masks it wherever it turns up."""
    if value and len(value) >= 6:
        with _secrets_lock:
            _secrets.add(value)
            for part in re.split(r"[;&]", value):  # parts of connection strings and SAS
                _, _, tail = part.partition("=")
                if len(tail) >= 12:
                    _secrets.add(tail)


def redact(text: str, env: tuple[str, ...] = ()) -> str:
    """``text`` with every known secret and secret-shaped fragment replaced by ``***``:
    registered secrets, the values of the model key variables (and of the variables
    named in ``env``), and key-, token- and signature-shaped strings."""
    if not text:
        return text
    from_env = [os.environ.get(name, "") for name in (*SECRET_ENV, *env)]
    with _secrets_lock:
        known = sorted({*_secrets, *(s for s in from_env if len(s) >= 6)}, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in records (installed on our loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


#: Loggers that write what goes over the wire at DEBUG level: py4j logs every command
#: sent to the JVM (``spark.conf.set`` with an account key included), azure-core and
#: urllib3 log request headers. A logger's filters apply only to its own records, so
#: each one gets the filter.
WIRE_LOGGERS = (
    "dataeng_magics", "dataeng_magics.connections", "dataeng_magics.run",
    "py4j", "py4j.clientserver", "py4j.java_gateway",
    "azure", "azure.core.pipeline.policies.http_logging_policy", "azure.identity",
    "urllib3.connectionpool", "requests", "adlfs", "adlfs.spec", "fsspec",
    "fsspec.http", "aiohttp.client", "aiohttp.internal",
    "pyspark", "pyspark.sql.connect.logging", "grpc",
)  # fmt: skip
_FILTER = RedactingFilter()
for _name in WIRE_LOGGERS:
    logging.getLogger(_name).addFilter(_FILTER)


def public_path(path: str) -> str:
    """A path or URL without credentials: a password in the user info is masked, query
    strings (SAS tokens) and ``;key=value`` parameters (``sc://host/;token=...``) are
    dropped, and what is left is redacted. ``container@account`` in abfss:// stays."""
    path = re.sub(r"(?<=://)([^/@:]*):[^/@]*@", rf"\1:{MASK}@", path)
    path = path.split("?", 1)[0]
    if path.startswith("sc://"):
        path = path.split("/;", 1)[0].split(";", 1)[0].rstrip("/")
    return redact(path)


def split_credential(url: str) -> tuple[str, str]:
    """``url`` as (the path to show, store and write into code; the credential).

    A URL whose query carries a secret parameter (a SAS token's ``sig``, a ``token``,
    a ``key``) has its whole query taken out: the query is the credential, kept in memory
    and handed to the reader at run time, never written anywhere. Other URLs and local
    paths come back whole, with no credential. The credential is registered with
    :func:`redact`, so it is masked even where it turns up on its own."""
    if "://" not in url or "?" not in url:
        return url, ""
    path, _, query = url.partition("?")
    query, hash_, fragment = query.partition("#")
    if not _SECRET_QUERY.search(query):
        return url, ""
    register_secret(query)
    return path + hash_ + fragment, query
