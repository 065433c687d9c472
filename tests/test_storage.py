"""Storage connections: validation at load, Spark conf and fsspec options per account,
Key Vault fetches, redaction, sampling from Blob storage (Azurite), and a canary secret
that must never show up anywhere."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from spark_servers import CANARY_KEY, Azurite

from dataeng_magics.config import load_settings
from dataeng_magics.connections import (
    StorageConnection,
    clear_cache,
    connection_for,
    resolve_secrets,
    spark_conf,
    storage_options,
)
from dataeng_magics.errors import ConfigError, DataEngMagicsWarning, SourceError
from dataeng_magics.mapping.model import SourceSpec
from dataeng_magics.redact import redact, register_secret
from dataeng_magics.sources.sampling import sample
from dataeng_magics.workflow import TransformRequest, TransformSession

EXAMPLE = Path(__file__).resolve().parent.parent / "example_notebooks" / "data" / "northwind"


@pytest.fixture(autouse=True)
def fresh_vault_cache() -> None:
    clear_cache()


def conn(**kw: Any) -> StorageConnection:
    return StorageConnection(**kw)


# --- configuration is validated when it is loaded ----------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"account": "https://x.blob.core.windows.net"}, "not a storage account name"),
        ({"account": "acct", "auth": "key_vault"}, "needs vault_url and secret_name"),
        ({"account": "acct", "auth": "direct_key"}, "the NAME of the environment variable"),
        ({"account": "acct", "auth": "sas", "env": "sv=2024&sig=abc"}, "must name an environment"),
        ({"account": "acct", "auth": "magic"}, "storage.lake.auth"),
        ({"account": "acct", "key": "abc"}, "Extra inputs"),
    ],
)
def test_bad_connections_fail_when_settings_load(
    monkeypatch: pytest.MonkeyPatch, table: dict[str, Any], message: str
) -> None:
    import json

    monkeypatch.setenv("DATAENG_MAGICS_STORAGE", json.dumps({"lake": table}))
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_an_unset_secret_variable_fails_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LAKE_KEY", raising=False)
    lake = {"account": "acct", "auth": "direct_key", "env": "LAKE_KEY"}
    with pytest.raises(ConfigError, match=r"from \$LAKE_KEY, which is not set"):
        load_settings(storage={"lake": lake})
    monkeypatch.setenv("LAKE_KEY", "a-key-value")
    assert load_settings(storage={"lake": lake}).storage["lake"].account == "acct"


def test_direct_key_in_production_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKE_KEY", "a-key-value")
    lake = {"account": "acct", "auth": "direct_key", "env": "LAKE_KEY", "production": True}
    with pytest.warns(DataEngMagicsWarning, match="direct account key in production"):
        load_settings(storage={"lake": lake})


# --- several accounts at once --------------------------------------------------------


def test_spark_conf_and_storage_options_per_account(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A_KEY", "key-of-a-000")
    monkeypatch.setenv("B_SAS", "?sv=2024-01-01&sig=sas-of-b")
    monkeypatch.setenv("C_CS", "AccountName=ccc;AccountKey=key-of-c-000;EndpointSuffix=x")
    connections = {
        "a": conn(account="aaa", auth="direct_key", env="A_KEY"),
        "b": conn(account="bbb", auth="sas", env="B_SAS"),
        "c": conn(account="ccc", auth="connection_string", env="C_CS"),
        "d": conn(account="ddd", auth="identity", default=True),
        "e": conn(
            account="eee",
            auth="key_vault",
            vault_url="https://v.vault.azure.net",
            secret_name="eee-key",
        ),
    }
    fetch = lambda vault, name: f"vaulted-{name}"  # noqa: E731
    conf = spark_conf(connections, fetch)
    dfs = "dfs.core.windows.net"
    assert conf[f"fs.azure.account.key.aaa.{dfs}"] == "key-of-a-000"
    assert conf[f"fs.azure.account.key.ccc.{dfs}"] == "key-of-c-000"
    assert conf[f"fs.azure.account.key.eee.{dfs}"] == "vaulted-eee-key"
    assert conf[f"fs.azure.account.auth.type.bbb.{dfs}"] == "SAS"
    assert conf[f"fs.azure.sas.fixed.token.bbb.{dfs}"] == "sv=2024-01-01&sig=sas-of-b"
    assert not [k for k in conf if ".ddd." in k]  # identity: the platform authorises it
    url = "abfss://raw@{}.dfs.core.windows.net/x.csv"
    assert storage_options(url.format("aaa"), connections, fetch) == {
        "account_name": "aaa",
        "account_key": "key-of-a-000",
    }
    assert storage_options(url.format("bbb"), connections, fetch)["sas_token"].startswith("sv=")
    assert storage_options(url.format("eee"), connections, fetch)["account_key"] == (
        "vaulted-eee-key"
    )
    assert storage_options("az://raw/x.csv", connections, fetch) == {
        "account_name": "ddd",
        "anon": False,
    }
    assert storage_options(url.format("zzz"), connections, fetch) == {}
    assert storage_options("/local/file.csv", connections, fetch) == {}
    assert connection_for(url.format("ccc"), connections) == ("c", connections["c"])


def test_key_vault_fetches_run_in_parallel_and_are_cached() -> None:
    calls: list[str] = []
    lock = threading.Lock()

    def slow_fetch(vault: str, name: str) -> str:
        with lock:
            calls.append(name)
        time.sleep(0.5)
        return f"secret-for-{name}"

    connections = {
        f"c{i}": conn(
            account=f"acct{i}",
            auth="key_vault",
            vault_url="https://v.vault.azure.net",
            secret_name=f"key{i}",
        )
        for i in range(4)
    }
    started = time.monotonic()
    secrets = resolve_secrets(connections, slow_fetch)
    assert time.monotonic() - started < 1.5  # 4 x 0.5 s, in parallel
    assert secrets == {f"c{i}": f"secret-for-key{i}" for i in range(4)}
    resolve_secrets(connections, slow_fetch)
    assert sorted(calls) == ["key0", "key1", "key2", "key3"]  # cached for the session


def test_a_failing_vault_says_what_to_check_without_the_secret() -> None:
    register_secret("CANARY-in-an-sdk-error-000")

    def failing(vault: str, name: str) -> str:
        raise PermissionError("Forbidden: token CANARY-in-an-sdk-error-000 lacks secrets/get")

    c = {
        "lake": conn(
            account="acct", auth="key_vault", vault_url="https://v.vault.azure.net", secret_name="k"
        )
    }
    with pytest.raises(ConfigError) as err:
        resolve_secrets(c, failing)
    text = str(err.value)
    assert "CANARY" not in text and "'k'" in text and "'get' permission" in text


def test_redact_masks_known_secrets_and_secret_shaped_text() -> None:
    register_secret("my-registered-secret")
    assert redact("x my-registered-secret y") == "x *** y"
    assert redact("AccountKey=abc123;Other=1") == "AccountKey=***;Other=1"
    assert redact("https://a/b?sv=1&sig=ABCDEF&se=2") == "https://a/b?sv=1&sig=***&se=2"
    assert redact("sc://h:443/;token=dapi123;x=1") == "sc://h:443/;token=***;x=1"
    assert redact("Authorization: Bearer eyJabc.def") == "Authorization: Bearer ***"


# --- Blob storage through adlfs, against Azurite -------------------------------------


@pytest.fixture(scope="module")
def lake(azurite: Azurite) -> Azurite:
    """A container 'raw' holding the example client's files."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(azurite.connection_string())
    container = service.get_container_client("raw")
    if not container.exists():
        container.create_container()
        for name in ("trades.csv", "counterparties.parquet"):
            container.upload_blob(f"northwind/{name}", (EXAMPLE / name).read_bytes())
    return azurite


def sas_token(azurite: Azurite) -> str:
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        azurite.account,
        "raw",
        account_key=azurite.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


@pytest.mark.azurite
@pytest.mark.parametrize("auth", ["connection_string", "direct_key", "sas", "key_vault"])
def test_sampling_from_blob_storage_with_each_auth_mode(
    lake: Azurite, auth: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "connection_string": lake.connection_string(),
        "direct_key": lake.key,
        "sas": sas_token(lake),
    }
    fields: dict[str, Any] = {"account": lake.account, "auth": auth}
    if auth == "key_vault":
        fields.update(vault_url="https://kv.vault.azure.net", secret_name="lake-key")
    else:
        monkeypatch.setenv("LAKE_SECRET", values[auth])
        fields["env"] = "LAKE_SECRET"
    if auth != "connection_string":
        fields["blob_endpoint"] = lake.endpoint
    connections = {"lake": StorageConnection(**fields)}
    url = f"abfss://raw@{lake.account}.dfs.core.windows.net/northwind/trades.csv"
    options = storage_options(url, connections, fetch=lambda v, n: lake.key)
    smp = sample(SourceSpec(name="trades", path=url, format="csv"), 10, options)
    assert len(smp.frame) == 10 and "Trade ID" in smp.schema
    pq_url = f"abfss://raw@{lake.account}.dfs.core.windows.net/northwind/counterparties.parquet"
    cps = sample(SourceSpec(name="cp", path=pq_url, format="parquet"), 5, options)
    assert len(cps.frame) == 5 and "Cpty ID" in cps.schema


@pytest.mark.azurite
def test_canary_secret_never_appears_anywhere(
    lake: Azurite,
    example: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The Azurite account key is the canary: reading the lake needs it, and it must not
    reach outputs, logs, the audit log, the store, error messages or generated code."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LAKE_KEY", CANARY_KEY)
    storage = {
        "lake": {
            "account": lake.account,
            "auth": "direct_key",
            "env": "LAKE_KEY",
            "blob_endpoint": lake.endpoint,
        }
    }
    monkeypatch.setenv("DATAENG_MAGICS_STORAGE", __import__("json").dumps(storage))
    settings = load_settings()
    root = f"abfss://raw@{lake.account}.dfs.core.windows.net/northwind"
    remote = {"trades": f"{root}/trades.csv", "counterparties": f"{root}/counterparties.parquet"}
    s = TransformSession(
        TransformRequest(client="NORTHWIND", mapping=example, sources=remote), settings
    )
    entry = s.draft()
    s.approve("alice")
    cell = s.materialised_cell(output_dir=str(tmp_path / "out"))
    # The run itself on local Spark (which has no ABFS driver here): same key, local files,
    # with the storage connection set on the session as Spark conf.
    local = TransformSession(TransformRequest(client="NORTHWIND", mapping=example), settings)
    assert local.key == s.key
    summary = local.run(output_dir=str(tmp_path / "out"))
    assert summary.outcome == "succeeded"
    errors = []
    with pytest.raises(SourceError) as missing:
        sample(
            SourceSpec(name="x", path=f"{root}/nope.csv", format="csv"),
            5,
            storage_options(f"{root}/nope.csv", settings.storage),
        )
    errors.append(str(missing.value))
    from dataeng_magics.run.executors import Job
    from dataeng_magics.run.executors.local import LocalExecutor

    with pytest.raises(Exception) as failed:
        LocalExecutor().run(
            Job(
                name="leak",
                client="T",
                key="0" * 64,
                code=f"raise RuntimeError('AccountKey={CANARY_KEY};')",
            )
        )
    errors.append(str(failed.value))
    out = capsys.readouterr()
    store_bytes = b"".join(p.read_bytes() for p in settings.home.glob("store.sqlite*"))
    places = {
        "stdout": out.out,
        "stderr": out.err,
        "logs": caplog.text,
        "audit": settings.audit_path.read_text(),
        "store": store_bytes.decode("latin-1"),
        "code": entry.code + cell,
        "summary": str(summary.to_dict()) + summary.to_text(),
        "errors": " ".join(errors),
        "settings": repr(settings) + settings.model_dump_json(),
    }
    for where, text in places.items():
        assert CANARY_KEY not in text, f"the canary secret leaked into {where}"
        assert "Q0FOQVJZ" not in text, f"part of the canary leaked into {where}"
    assert lake.account in places["audit"] or "abfss" not in places["audit"]
    assert summary.rows_in > 0 and "nope.csv" in places["errors"]
