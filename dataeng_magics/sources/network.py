"""Remote storage that does not answer fails in bounded time, in one line.

The Azure SDK retries an unreachable account for minutes and fsspec's HTTP filesystem
reports a refused connection as "file does not exist". Here a remote read gets connect
and read timeouts, and one total deadline (the ``network_timeout_seconds`` setting);
failing to reach the storage names the account, container and path and what to check.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dataeng_magics.errors import DataEngMagicsError, SourceError
from dataeng_magics.redact import public_path

T = TypeVar("T")
_AZURE = {"abfs", "abfss", "az", "adl", "wasb", "wasbs"}
#: Network failures that carry no OSError base (the Azure SDK's, aiohttp's timeouts).
_NETWORK_ERRORS = {"ServiceRequestError", "ServiceResponseError", "ServiceRequestTimeoutError",
                   "ServerTimeoutError", "ClientConnectorError", "ClientOSError",
                   "ServerDisconnectedError", "ConnectionTimeoutError"}  # fmt: skip
CONNECT_SECONDS = 15.0


def is_remote(path: str) -> bool:
    return urlsplit(path).scheme in {*_AZURE, "http", "https"}


def where(path: str) -> str:
    """The account, container and path of an Azure URL (host and path otherwise)."""
    url = urlsplit(path)
    host = url.hostname or ""
    if url.scheme in _AZURE:
        container, _, host = url.netloc.rpartition("@")
        blob = url.path
    elif host.endswith((".blob.core.windows.net", ".dfs.core.windows.net")):
        container, _, rest = url.path.lstrip("/").partition("/")
        blob = "/" + rest
    else:
        return f"host {url.netloc!r}, path {url.path!r}"
    account = host.split(".", 1)[0]
    return f"account {account!r}, container {container!r}, path {blob!r}"


def with_timeouts(path: str, options: dict[str, Any], seconds: float) -> dict[str, Any]:
    """fsspec options for ``path`` with connect and read timeouts inside ``seconds``."""
    scheme = urlsplit(path).scheme
    connect = min(seconds, CONNECT_SECONDS)
    if scheme in _AZURE:
        return {"connection_timeout": math.ceil(connect), "read_timeout": math.ceil(seconds),
                **options}  # fmt: skip
    if scheme in ("http", "https"):
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=seconds, connect=connect, sock_read=seconds)
        client = {"timeout": timeout, **options.get("client_kwargs", {})}
        return {**options, "client_kwargs": client}
    return options


def network_cause(exc: BaseException) -> BaseException | None:
    """The network failure behind ``exc`` (refused, unresolvable, timed out), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | TimeoutError | socket.gaierror):
            return current
        if type(current).__name__ in _NETWORK_ERRORS:
            return current
        current = current.__cause__ or current.__context__
    return None


def unreachable(
    path: str, reason: str, seconds: float, error: type[DataEngMagicsError] = SourceError
) -> DataEngMagicsError:
    return error(
        f"cannot reach {where(path)}: {reason}",
        file=public_path(path),
        hint="Check the account and container names, the network (VPN, firewall, private "
        "endpoint) and the storage connection's credentials; the deadline is the "
        f"network_timeout_seconds setting (now {seconds:g} s)",
    )


def within_deadline(
    path: str,
    seconds: float,
    work: Callable[[], T],
    error: type[DataEngMagicsError] = SourceError,
) -> T:
    """``work()`` (a remote read of ``path``), or a one-line ``SourceError`` when the
    storage cannot be reached or does not answer within ``seconds``. A daemon thread,
    not an executor: a read still retrying inside an SDK must not hold the process."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=run, name="dataeng-magics-remote-read", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise unreachable(path, f"no answer within {seconds:g} s", seconds, error)
    if "error" in box:
        failure: BaseException = box["error"]
        cause = network_cause(failure)
        if cause is not None:
            reason = (str(cause).splitlines() or [""])[0][:200] or type(cause).__name__
            raise unreachable(path, reason, seconds, error) from None
        raise failure
    value: T = box["value"]
    return value


def check_output_reachable(path: str, options: dict[str, Any], seconds: float) -> None:
    """Before a local run writes to remote storage: its container answers within the
    deadline, or the run fails now in one line (not with Spark's "o413.save" after the
    SDK's retries). Only reaching it is checked: a missing folder is the run's to make."""
    from dataeng_magics.errors import ExecutionError
    from dataeng_magics.sources.files import filesystem

    def probe() -> None:
        fs, root = filesystem(path, with_timeouts(path, options, seconds))
        try:
            fs.info(root.split("/", 1)[0])
        except Exception as exc:  # only a network failure is this check's to report
            if network_cause(exc) is not None:
                raise

    within_deadline(path, seconds, probe, ExecutionError)
