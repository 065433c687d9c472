"""Named storage connections: how sampling (fsspec/adlfs) and Spark reach ADLS Gen2.

A client's files sit in their own storage account, and one onboarding may read from
several accounts at once. Each account is configured once, by name, with an auth mode:

=================== ==========================================================
``identity``        DefaultAzureCredential (managed identity, az login, ...);
                    on Databricks and Fabric the platform's own identity
``key_vault``       an account key fetched from Azure Key Vault with
                    DefaultAzureCredential, cached for the session
``direct_key``      an account key from an environment variable (warned
                    against for production)
``sas``             a SAS token from an environment variable
``connection_string`` a connection string from an environment variable
=================== ==========================================================

The configuration holds only *names* of environment variables and Key Vault secrets,
never a secret itself, and is validated when the settings are loaded. Secrets are
resolved in parallel on first use, registered with :func:`redact` so they are masked in
every message we produce, and handed to Spark as session configuration
(``fs.azure.account.key.<account>.dfs.core.windows.net``) and to fsspec as
``storage_options`` per call: never written into generated code, the store or the
audit log.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dataeng_magics.errors import ConfigError, DataEngMagicsWarning, MissingDependency
from dataeng_magics.redact import redact, register_secret

__all__ = [
    "AuthMode",
    "StorageConnection",
    "account_of",
    "connection_for",
    "resolve_secrets",
    "spark_conf",
    "storage_options",
    "validate_connections",
]

AuthMode = Literal["identity", "key_vault", "direct_key", "sas", "connection_string"]
#: What the secret of each mode is, for messages.
_WHAT = {
    "key_vault": "account key",
    "direct_key": "account key",
    "sas": "SAS token",
    "connection_string": "connection string",
}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_URL_ACCOUNT = re.compile(r"^[a-z]+://[^/@]+@([a-z0-9]{3,24})\.(?:dfs|blob)\.", re.IGNORECASE)
DFS_SUFFIX = "dfs.core.windows.net"
logger = logging.getLogger("dataeng_magics.connections")


class StorageConnection(BaseModel):
    """One storage account and how to authenticate to it (names of secrets, not secrets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account: str = Field(description="storage account name, as in <account>.dfs.core.windows.net")
    auth: AuthMode = "identity"
    env: str | None = Field(None, description="environment variable holding the secret")
    vault_url: str | None = Field(None, description="https://<vault>.vault.azure.net")
    secret_name: str | None = Field(None, description="the Key Vault secret holding the key")
    blob_endpoint: str | None = Field(
        None, description="a custom Blob endpoint (private endpoint, emulator)"
    )
    production: bool = False
    default: bool = Field(False, description="used for URLs that do not name an account")

    @model_validator(mode="after")
    def _check(self) -> StorageConnection:
        if not _ACCOUNT.match(self.account):
            raise ValueError(
                f"account {self.account!r} is not a storage account name (3-24 lowercase "
                "letters and digits; not a URL)"
            )
        if self.auth == "key_vault":
            if not self.vault_url or not self.secret_name:
                raise ValueError("auth 'key_vault' needs vault_url and secret_name")
            if not re.match(r"^https://[A-Za-z0-9.-]+/?$", self.vault_url):
                raise ValueError(f"vault_url {self.vault_url!r} must be https://<vault>.vault...")
        elif self.auth in _WHAT:
            if not self.env:
                raise ValueError(
                    f"auth {self.auth!r} needs env: the NAME of the environment variable "
                    f"that holds the {_WHAT[self.auth]} (never the secret itself)"
                )
            if not _ENV_NAME.match(self.env):
                raise ValueError(
                    "env must name an environment variable (letters, digits, _); "
                    "put the secret in that variable, not in the settings"
                )
        if self.blob_endpoint and not re.match(r"^https?://", self.blob_endpoint):
            raise ValueError("blob_endpoint must be an http(s) URL")
        return self


def validate_connections(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """Checks that need the environment, run when settings load rather than at first use:
    the environment variables named are set, and direct keys are not used for production."""
    env = os.environ if environ is None else environ
    defaults = [name for name, c in raw.items() if getattr(c, "default", False)]
    if len(defaults) > 1:
        raise ConfigError(
            f"storage connections {', '.join(sorted(defaults))} are all marked default",
            hint="Mark at most one storage connection default = true.",
        )
    for name, conn in raw.items():
        if not isinstance(conn, StorageConnection):
            continue
        if conn.env and not env.get(conn.env):
            raise ConfigError(
                f"storage connection {name!r} ({conn.auth}) reads its {_WHAT[conn.auth]} "
                f"from ${conn.env}, which is not set",
                hint=f"Set {conn.env} in the environment (or a secret scope), then reload.",
            )
        if conn.auth == "direct_key" and conn.production:
            warnings.warn(
                f"storage connection {name!r} uses a direct account key in production; "
                "prefer auth = 'identity' or 'key_vault'",
                DataEngMagicsWarning,
                stacklevel=2,
            )


# -- resolving secrets -----------------------------------------------------------------

#: Fetches one Key Vault secret: (vault_url, secret_name) -> value. Tests pass their own.
KeyVaultFetch = Callable[[str, str], str]
_vault_cache: dict[tuple[str, str], str] = {}
_vault_lock = threading.Lock()


def _default_fetch(vault_url: str, secret_name: str) -> str:
    try:
        from azure.identity import DefaultAzureCredential
        from azure.keyvault.secrets import SecretClient
    except ImportError as exc:
        raise MissingDependency(
            exc.name or "azure-keyvault-secrets", "azure", "Key Vault storage keys"
        ) from None
    client = SecretClient(vault_url=vault_url, credential=DefaultAzureCredential())
    value = client.get_secret(secret_name).value
    if not value:
        raise ConfigError(f"Key Vault secret {secret_name!r} in {vault_url} is empty")
    return str(value)


def _fetch_cached(conn: StorageConnection, fetch: KeyVaultFetch) -> str:
    assert conn.vault_url and conn.secret_name
    key = (conn.vault_url.rstrip("/"), conn.secret_name)
    with _vault_lock:
        if key in _vault_cache:
            return _vault_cache[key]
    try:
        value = fetch(*key)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"cannot read secret {conn.secret_name!r} from {conn.vault_url} for storage "
            f"account {conn.account!r}: {redact(str(exc).splitlines()[0] if str(exc) else '')}",
            hint="Check `az login` or the managed identity, and its 'get' permission on "
            "the vault's secrets.",
        ) from None
    register_secret(value)
    with _vault_lock:
        _vault_cache[key] = value
    return value


def clear_cache() -> None:
    """Forget fetched Key Vault secrets (a new session, or a rotated key)."""
    with _vault_lock:
        _vault_cache.clear()


def resolve_secrets(
    connections: Mapping[str, StorageConnection],
    fetch: KeyVaultFetch | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Connection name -> its secret, for every mode that has one.

    Key Vault fetches run in parallel (each is a network round trip, and onboarding
    may touch several accounts) and are cached for the session.
    """
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for name, conn in connections.items():
        if conn.env:
            value = env.get(conn.env)
            if not value:
                raise ConfigError(
                    f"storage connection {name!r} reads its {_WHAT[conn.auth]} from "
                    f"${conn.env}, which is not set",
                    hint=f"Set {conn.env} in the environment.",
                )
            register_secret(value)
            out[name] = value
    vaulted = {n: c for n, c in connections.items() if c.auth == "key_vault"}
    if vaulted:
        getter = fetch or _default_fetch
        with ThreadPoolExecutor(max_workers=min(8, len(vaulted))) as pool:
            futures = {n: pool.submit(_fetch_cached, c, getter) for n, c in vaulted.items()}
            for name, future in futures.items():
                out[name] = future.result()
    return out


# -- per-call options ------------------------------------------------------------------


def account_of(path: str) -> str | None:
    """The storage account a URL names (``abfss://container@account.dfs...``), if any."""
    match = _URL_ACCOUNT.match(path)
    return match.group(1).lower() if match else None


def connection_for(
    path: str, connections: Mapping[str, StorageConnection]
) -> tuple[str, StorageConnection] | None:
    """The connection that serves ``path``: by account, else the default (or the only)."""
    if "://" not in path or not connections:
        return None
    account = account_of(path)
    if account:
        for name, conn in connections.items():
            if conn.account == account:
                return name, conn
        return None
    defaults = [(n, c) for n, c in connections.items() if c.default]
    if defaults:
        return defaults[0]
    if len(connections) == 1:
        return next(iter(connections.items()))
    return None


def _parts(connection_string: str) -> dict[str, str]:
    parts = (p.partition("=") for p in connection_string.split(";") if p.strip())
    return {k.strip().lower(): v for k, _, v in parts}


def storage_options(
    path: str,
    connections: Mapping[str, StorageConnection],
    fetch: KeyVaultFetch | None = None,
) -> dict[str, Any]:
    """fsspec ``storage_options`` (adlfs keyword arguments) for reading ``path``.

    Built per call, so several accounts with different auth modes work side by side.
    Local paths, http(s) URLs (their fsspec filesystem takes no account options; a SAS
    for them is the source's credential, ``sources.credentials``) and URLs no connection
    serves get ``{}``.
    """
    if path.split("://", 1)[0].lower() in ("http", "https"):
        return {}
    found = connection_for(path, connections)
    if found is None:
        return {}
    name, conn = found
    if conn.auth == "identity":
        options: dict[str, Any] = {"account_name": conn.account, "anon": False}
        if conn.blob_endpoint:
            options["account_host"] = re.sub(r"^https?://", "", conn.blob_endpoint).rstrip("/")
        return options
    secret = resolve_secrets({name: conn}, fetch)[name]
    if conn.auth == "connection_string":
        return {"connection_string": secret, "account_name": conn.account}
    if conn.blob_endpoint:  # a custom endpoint is spelled through a connection string
        endpoint = conn.blob_endpoint.rstrip("/")
        credential = (
            f"SharedAccessSignature={secret.lstrip('?')}"
            if conn.auth == "sas"
            else f"AccountName={conn.account};AccountKey={secret}"
        )
        string = f"BlobEndpoint={endpoint};{credential}"
        register_secret(string)
        return {"connection_string": string, "account_name": conn.account}
    if conn.auth == "sas":
        return {"account_name": conn.account, "sas_token": secret.lstrip("?")}
    return {"account_name": conn.account, "account_key": secret}


def spark_conf(
    connections: Mapping[str, StorageConnection],
    fetch: KeyVaultFetch | None = None,
) -> dict[str, str]:
    """Spark session settings that let the ABFS driver read every configured account.

    One ``fs.azure.account.key.<account>.dfs.core.windows.net`` per key-based account,
    the fixed-SAS provider for SAS accounts; identity accounts need nothing (the
    platform's identity, or Unity Catalog / OneLake, authorises them). The values are
    secrets: executors set them on the session, never in code.
    """
    secrets = resolve_secrets(connections, fetch)
    conf: dict[str, str] = {}
    for name, conn in connections.items():
        host = f"{conn.account}.{DFS_SUFFIX}"
        secret = secrets.get(name)
        if secret is None:
            continue
        key, sas = None, None
        if conn.auth == "connection_string":
            parts = _parts(secret)
            key, sas = parts.get("accountkey"), parts.get("sharedaccesssignature")
        elif conn.auth == "sas":
            sas = secret.lstrip("?")
        else:
            key = secret
        if key:
            conf[f"fs.azure.account.key.{host}"] = key
        elif sas:
            conf[f"fs.azure.account.auth.type.{host}"] = "SAS"
            conf[f"fs.azure.sas.token.provider.type.{host}"] = (
                "org.apache.hadoop.fs.azurebfs.sas.FixedSASTokenProvider"
            )
            conf[f"fs.azure.sas.fixed.token.{host}"] = sas
    return conf


def describe(connections: Mapping[str, StorageConnection]) -> dict[str, str]:
    """Name -> "account (auth)": what may be shown or recorded about connections."""
    return {name: f"{c.account} ({c.auth})" for name, c in connections.items()}
