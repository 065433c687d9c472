"""Run approved code on Microsoft Fabric through its Livy API.

The code goes to a Livy session (created once, then reused while it lives: starting
one takes minutes) as a ``pyspark`` statement; the statement is polled until it ends.
The Livy session's namespace is remote, so the cell is followed by a fixed trailer that
prints ``run_metrics`` as one JSON line, which is parsed from the statement's output.

HTTP is plain ``requests`` with what a batch client needs: Entra ID tokens refreshed
before they expire, transient errors (429, 5xx, dropped connections) retried with
backoff that honours ``Retry-After``, and permanent errors raised with the service's
own message. The shape of the API follows Fabric's published Livy OpenAPI document.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from dataeng_magics.errors import ConfigError, ExecutionError, MissingDependency
from dataeng_magics.redact import redact, register_secret
from dataeng_magics.run.executors.base import (
    Job,
    JobResult,
    JobState,
    JobStatus,
    Metrics,
    ProgressCallback,
    RemoteExecutor,
    run_metrics,
)

if TYPE_CHECKING:
    import requests

SCOPE = "https://api.fabric.microsoft.com/.default"
METRICS_MARKER = "__dataeng_magics_run_metrics__="
#: Appended to every cell: the metrics, as one JSON line the client can find (numbers
#: JSON cannot hold, numpy's or Decimal, as whole numbers; the client does the rest).
TRAILER = (
    "\n# dataeng-magics: report the run's metrics to the client\n"
    "import json as _dem_json\n"
    f'print("{METRICS_MARKER}" + _dem_json.dumps(run_metrics, default=int))\n'
)
#: Livy session states: usable, still coming up, or gone for good.
READY = {"idle"}
BUSY = {"busy", "running"}
STARTING = {"not_started", "starting", "recovering", "submitting", "not_submitted"}
ENDED = {"shutting_down", "error", "dead", "killed", "success"}
TRANSIENT = {408, 429, 500, 502, 503, 504}


class TokenCredential(Protocol):
    """azure-identity's credential interface, as far as we use it."""

    def get_token(self, *scopes: str) -> Any: ...


class Tokens:
    """Bearer tokens for the Fabric API, fetched again ``margin`` seconds before expiry.

    A run can outlive a token (they last about an hour); refreshing ahead means no
    request is ever sent with a token that expires on the way.
    """

    def __init__(self, credential: TokenCredential, margin: float = 300.0) -> None:
        self.credential = credential
        self.margin = margin
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def get(self, force: bool = False) -> str:
        with self._lock:
            if force or self._token is None or time.time() > self._expires - self.margin:
                access = self.credential.get_token(SCOPE)
                self._token, self._expires = str(access.token), float(access.expires_on)
                register_secret(self._token)
            return self._token


TEST_TOKEN_ENV = "DATAENG_MAGICS_TEST_FABRIC_TOKEN"


@dataclass(frozen=True)
class _TestToken:
    """FOR TESTS ONLY: a fixed bearer token (from ``$DATAENG_MAGICS_TEST_FABRIC_TOKEN``),
    so kernels a test cannot hand a credential object (``replay``'s papermill kernels)
    can reach the local fake Livy server. Never set it against the real Fabric API."""

    token: str

    def get_token(self, *scopes: str) -> Any:
        return _TestAccess(self.token, int(time.time()) + 3600)


@dataclass(frozen=True)
class _TestAccess:
    token: str
    expires_on: int


def _default_credential() -> TokenCredential:
    if os.environ.get(TEST_TOKEN_ENV):
        return _TestToken(os.environ[TEST_TOKEN_ENV])
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:
        raise MissingDependency(exc.name or "azure-identity", "fabric", "Fabric") from None
    return DefaultAzureCredential()


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def service_message(response: requests.Response) -> str:
    """The service's own words for an error: ``errorCode: message`` from ErrorResponse."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("msg") or body.get("error") or ""
        code = body.get("errorCode") or ""
        if message or code:
            return redact(f"{code}: {message}" if code else str(message))
    text = (response.text or "").strip().splitlines()
    return redact(text[0][:300] if text else response.reason or f"HTTP {response.status_code}")


class LivyClient:
    """The Livy endpoints of one lakehouse, with auth, retries and clear errors."""

    def __init__(
        self,
        base_url: str,
        tokens: Tokens,
        *,
        http: requests.Session | None = None,
        max_attempts: int = 6,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        timeout: tuple[float, float] = (10.0, 60.0),
    ) -> None:
        try:
            import requests
        except ImportError as exc:
            raise MissingDependency(exc.name or "requests", "fabric", "Fabric") from None
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.http = http or requests.Session()
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.sleep = time.sleep

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; transient failures retried, permanent ones raised as one line."""
        import requests

        url = f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url
        refreshed = False
        for attempt in range(1, self.max_attempts + 1):
            headers = {"Authorization": f"Bearer {self.tokens.get()}"}
            wait: float | None
            try:
                response = self.http.request(
                    method, url, json=body, headers=headers, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt == self.max_attempts:
                    raise ExecutionError(
                        f"cannot reach the Fabric Livy API ({type(exc).__name__}) after "
                        f"{attempt} attempts",
                        hint="Check the network and api_url; nothing was recorded as a success.",
                    ) from None
                wait = None
            else:
                if response.status_code == 401 and not refreshed:
                    self.tokens.get(force=True)  # revoked or clock skew: one fresh token
                    refreshed = True
                    continue
                if response.status_code < 400:
                    if not response.content:
                        return {}
                    try:
                        return response.json()
                    except ValueError:
                        return {"text": response.text}
                if response.status_code not in TRANSIENT or attempt == self.max_attempts:
                    raise ExecutionError(
                        f"Fabric Livy API {method} {path or '/'} failed with HTTP "
                        f"{response.status_code}: {service_message(response)}",
                        hint=_HINTS.get(response.status_code, "See the service's message."),
                        status=response.status_code,
                    )
                wait = retry_after(response.headers.get("Retry-After"))
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                wait += random.uniform(0, wait / 4)
            self.sleep(min(wait, 120.0))
        raise AssertionError("unreachable")  # pragma: no cover


_HINTS = {
    400: "The request was refused as invalid; check the session settings (session_conf).",
    401: "Sign in again (az login) or check the service principal's credentials.",
    403: "The identity needs the Contributor role on the workspace.",
    404: "Check workspace_id and lakehouse_id (the lakehouse must be in that workspace).",
    408: "The service timed out; try again.",
    429: "Fabric is throttling this identity; try again later.",
}


@dataclass
class _Statement:
    session_id: str
    statement_id: int
    job: Job
    last: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


class FabricOptions(BaseModel):
    """The ``fabric`` settings table (README, "Microsoft Fabric")."""

    model_config = ConfigDict(extra="forbid")

    workspace_id: str | None = None  # else FABRIC_WORKSPACE_ID
    lakehouse_id: str | None = None  # else FABRIC_LAKEHOUSE_ID
    api_url: str = "https://api.fabric.microsoft.com/v1"
    api_version: str = "2023-12-01"
    session_id: str | None = None  # reuse this Livy session
    session_name: str = "dataeng-magics"
    session_conf: dict[str, str] = {}
    poll_seconds: float = Field(default=2.0, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    close_after_run: bool = False  # else left for the next run (Fabric ends it when idle)
    idle_minutes: float = Field(default=15, gt=0)  # close our sessions idle longer than this


class FabricExecutor(RemoteExecutor):
    """Microsoft Fabric: a Livy session in a lakehouse runs the cell as a statement."""

    name = "fabric"
    Options = FabricOptions
    takes_spark_conf = True

    def __init__(
        self,
        workspace_id: str | None = None,
        lakehouse_id: str | None = None,
        *,
        api_url: str = "https://api.fabric.microsoft.com/v1",
        api_version: str = "2023-12-01",
        credential: TokenCredential | None = None,
        session_id: str | None = None,
        session_name: str = "dataeng-magics",
        session_conf: dict[str, str] | None = None,
        poll_seconds: float = 2.0,
        timeout_seconds: float | None = None,
        session_timeout_seconds: float = 900.0,
        close_after_run: bool = False,
        idle_minutes: float = 15.0,
        progress: ProgressCallback | None = None,
        spark_conf: dict[str, str] | None = None,
        http: requests.Session | None = None,
        max_attempts: int = 6,
        backoff: float = 1.0,
    ) -> None:
        self.workspace_id = workspace_id or os.environ.get("FABRIC_WORKSPACE_ID")
        self.lakehouse_id = lakehouse_id or os.environ.get("FABRIC_LAKEHOUSE_ID")
        missing = [
            n
            for n, v in (("workspace_id", self.workspace_id), ("lakehouse_id", self.lakehouse_id))
            if not v
        ]
        if missing:
            raise ConfigError(
                f"platform 'fabric' needs {' and '.join(missing)}",
                hint="Set fabric.workspace_id / fabric.lakehouse_id in the settings, or "
                "FABRIC_WORKSPACE_ID / FABRIC_LAKEHOUSE_ID.",
            )
        base = (
            f"{api_url.rstrip('/')}/workspaces/{self.workspace_id}/lakehouses/"
            f"{self.lakehouse_id}/livyApi/versions/{api_version}"
        )
        self.tokens = Tokens(credential or _default_credential())
        self.client = LivyClient(
            base, self.tokens, http=http, max_attempts=max_attempts, backoff=backoff
        )
        self.session_id = session_id
        self.session_name = session_name
        self.conf = dict(session_conf or {})
        # Storage secrets travel as session configuration, never inside statement code.
        self.conf.update({f"spark.hadoop.{k}": v for k, v in (spark_conf or {}).items()})
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self.session_timeout_seconds = session_timeout_seconds
        self.close_after_run = close_after_run
        self.idle_minutes = idle_minutes
        self.progress = progress
        self._statements: dict[str, _Statement] = {}

    def location(self) -> dict[str, str]:
        where = {"workspace_id": str(self.workspace_id), "lakehouse_id": str(self.lakehouse_id)}
        if self.session_id:
            where["session_id"] = self.session_id
        return where

    # -- sessions --------------------------------------------------------------------

    @property
    def conf_tag(self) -> str:
        """A fingerprint of the session configuration, so a session is only reused when
        it was created with the same settings (a one-way hash: no secret in it)."""
        text = json.dumps(self.conf, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def session_state(self, session_id: str) -> dict[str, Any]:
        return dict(self.client.call("GET", f"sessions/{session_id}"))

    def _reusable(self) -> str | None:
        listing = self.client.call("GET", "sessions")
        items = listing.get("items") or listing.get("sessions") or []
        for item in items:
            state = str(item.get("livyState") or item.get("state") or "").lower()
            tags = item.get("tags") or {}
            if (
                item.get("name") == self.session_name
                and state in READY | BUSY | STARTING
                and tags.get("dataeng-magics-conf") == self.conf_tag
            ):
                return str(item["id"])
        return None

    def ensure_session(self) -> str:
        """A live session: the configured or last one if it still lives, one of ours
        created earlier with the same settings, or a new one."""
        if self.session_id:
            state = str(self.session_state(self.session_id).get("state", "")).lower()
            if state not in ENDED:
                return self._wait_ready(self.session_id)
            self.session_id = None
        found = self._reusable()
        if found:
            self.session_id = found
            return self._wait_ready(found)
        body: dict[str, Any] = {
            "name": self.session_name,
            "conf": self.conf,
            "tags": {"dataeng-magics-conf": self.conf_tag},
        }
        created = self.client.call("POST", "sessions", body)
        self.session_id = str(created["id"])
        self.report(JobStatus("pending", message=f"starting Livy session {self.session_id}"))
        return self._wait_ready(self.session_id)

    def _wait_ready(self, session_id: str) -> str:
        deadline = time.monotonic() + self.session_timeout_seconds
        while True:
            info = self.session_state(session_id)
            state = str(info.get("state", "")).lower()
            if state in READY | BUSY:  # busy: statements queue behind the running one
                return session_id
            if state in ENDED:
                raise ExecutionError(
                    f"the Fabric Livy session {session_id} ended ({state}): "
                    f"{_session_reason(info)}",
                    hint="Run again to start a new session; check the lakehouse's Spark "
                    "settings if it keeps failing.",
                    state="failed",
                )
            if time.monotonic() > deadline:
                raise ExecutionError(
                    f"the Fabric Livy session {session_id} was not ready after "
                    f"{self.session_timeout_seconds:.0f}s (state {state})",
                    hint="The capacity may be busy; try again later.",
                )
            acquiring = (info.get("fabricSessionStateInfo") or {}).get("state")
            self.report(
                JobStatus(
                    "pending",
                    message=f"Livy session {state}" + (f" ({acquiring})" if acquiring else ""),
                )
            )
            time.sleep(self.poll_seconds)

    def close(self) -> None:
        """Delete this executor's session now (otherwise Fabric ends it when idle)."""
        if self.session_id:
            with contextlib.suppress(ExecutionError):
                self.client.call("DELETE", f"sessions/{self.session_id}")
            self.session_id = None

    def close_idle_sessions(self, idle_minutes: float | None = None) -> list[str]:
        """Delete our sessions (by name) idle for longer than ``idle_minutes``; each one
        holds capacity until Fabric's own 20-minute idle timeout."""
        limit = (self.idle_minutes if idle_minutes is None else idle_minutes) * 60
        closed = []
        listing = self.client.call("GET", "sessions")
        for item in listing.get("items") or listing.get("sessions") or []:
            if item.get("name") != self.session_name:
                continue
            info = self.session_state(str(item["id"]))
            if str(info.get("state", "")).lower() != "idle":
                continue
            idle_at = (info.get("livyInfo") or {}).get("idleAt")
            since = _age_seconds(idle_at)
            if since is not None and since >= limit:
                self.client.call("DELETE", f"sessions/{item['id']}")
                closed.append(str(item["id"]))
                if item["id"] == self.session_id:
                    self.session_id = None
        return closed

    # -- statements ------------------------------------------------------------------

    def submit(self, job: Job) -> str:
        session_id = self.ensure_session()
        body = {"code": job.code + TRAILER, "kind": "pyspark"}
        answer = self.client.call("POST", f"sessions/{session_id}/statements", body)
        statement = _Statement(session_id, int(answer["id"]), job, dict(answer))
        handle = f"{session_id}/{statement.statement_id}"
        self._statements[handle] = statement
        return handle

    def _statement(self, handle: str) -> _Statement:
        if handle not in self._statements:
            raise ExecutionError(f"no statement {handle!r} on this executor")
        return self._statements[handle]

    def status(self, handle: str) -> JobStatus:
        st = self._statement(handle)
        try:
            st.last = dict(
                self.client.call("GET", f"sessions/{st.session_id}/statements/{st.statement_id}")
            )
        except ExecutionError as exc:
            if exc.fields.get("status") not in (404, 410):
                raise
            info = self.session_state(st.session_id)  # the session may be gone
            state = str(info.get("state", "unknown")).lower()
            st.last = {"state": "Error", "_session": state, "_reason": _session_reason(info)}
        return _job_status(st.last)

    def cancel(self, handle: str) -> None:
        st = self._statement(handle)
        with contextlib.suppress(ExecutionError):  # already finished, or the session is gone
            self.client.call(
                "POST", f"sessions/{st.session_id}/statements/{st.statement_id}/cancel"
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(ExecutionError):
                if self.status(handle).done:
                    break
            time.sleep(min(self.poll_seconds, 1.0))

    def logs(self, handle: str) -> str:
        st = self._statement(handle)
        output = st.last.get("output") or {}
        lines = [str((output.get("data") or {}).get("text/plain", ""))]
        lines += [str(t).rstrip("\n") for t in output.get("traceback") or []]
        with contextlib.suppress(ExecutionError):
            lines += [str(x) for x in self.session_state(st.session_id).get("log") or []]
        return redact("\n".join(line for line in lines if line))

    def result(self, handle: str, job: Job) -> JobResult:
        st = self._statement(handle)
        try:
            status = _job_status(st.last)
            output = st.last.get("output") or {}
            if status.state == "cancelled":
                raise ExecutionError(
                    f"{job.name} was cancelled on Fabric (session {st.session_id})",
                    hint="Nothing was recorded as a success; run it again when ready.",
                    state="cancelled",
                )
            if status.state != "succeeded":
                raise ExecutionError(
                    f"the run failed on {job.name}: {_failure(st.last)}",
                    hint="Nothing was recorded as a success; the statement's traceback is in "
                    "executor.logs(handle).",
                    state="failed",
                    ename=str(output.get("ename") or ""),
                )
            metrics = parse_metrics(str((output.get("data") or {}).get("text/plain", "")))
        finally:
            if self.close_after_run:
                self.close()
        details = {**self.location(), "session_id": st.session_id, "statement_id": st.statement_id}
        return JobResult(self.name, metrics, time.perf_counter() - st.started, details)


def parse_metrics(text: str) -> Metrics:
    """The trailer's JSON line from a statement's printed output."""
    for line in reversed(text.splitlines()):
        if line.startswith(METRICS_MARKER):
            return run_metrics(json.loads(line[len(METRICS_MARKER) :]))
    raise ExecutionError(
        "the Fabric statement finished without reporting its metrics",
        hint="The cell's output was cut or changed; run it again.",
    )


def _job_status(statement: dict[str, Any]) -> JobStatus:
    state = str(statement.get("state", "")).lower()
    output = statement.get("output") or {}
    progress = statement.get("progress")
    fraction = float(progress) if isinstance(progress, int | float) else None
    mapping: dict[str, JobState] = {
        "waiting": "pending",
        "running": "running",
        "cancelling": "running",
        "cancelled": "cancelled",
    }
    if state == "available":
        ok = str(output.get("status", "ok")).lower() == "ok"
        return JobStatus(
            "succeeded" if ok else "failed",
            1.0 if ok else fraction,
            "" if ok else _failure(statement),
        )
    if state == "error":
        return JobStatus("failed", fraction, _failure(statement))
    return JobStatus(mapping.get(state, "running"), fraction, f"statement {state}")


def _failure(statement: dict[str, Any]) -> str:
    if statement.get("_session"):
        return (
            f"the Livy session ended ({statement['_session']}) while the statement ran: "
            f"{statement.get('_reason') or 'no reason given'}"
        )
    output = statement.get("output") or {}
    ename, evalue = output.get("ename"), output.get("evalue")
    if ename or evalue:
        first = str(evalue or "").strip().splitlines()
        return redact(f"{ename}: {first[0] if first else ''}".strip(": "))
    return "the statement failed without an error message"


def _session_reason(info: dict[str, Any]) -> str:
    errors = info.get("errorInfo") or []
    if errors:
        first = errors[0]
        return redact(f"{first.get('errorCode', '')}: {first.get('message', '')}".strip(": "))
    fabric = info.get("fabricSessionStateInfo") or {}
    if fabric.get("errorMessage"):
        return redact(str(fabric["errorMessage"]))
    log = [str(x) for x in info.get("log") or [] if str(x).strip()]
    return redact(log[-1][:300]) if log else "no reason given"


def _age_seconds(stamp: Any) -> float | None:
    if not stamp:
        return None
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (datetime.now(UTC) - when).total_seconds()
