"""A local server for Fabric's Livy API that really runs statements on local PySpark.

It follows shared/reference/fabric-livy-api-swagger.json for the paths, status codes
(session POST 202, statement POST 200), bodies (SessionResponse, StatementResponse with
output {status, execution_count, data{"text/plain"}, ename, evalue, traceback},
ErrorResponse {errorCode, message}) and states. Submitted code runs in a per-session
namespace holding ``spark`` (the test run's local session), so a run writes real output.

Test hooks: issued bearer tokens with an expiry (expired ones get 401), injected faults
(status + headers for the next N matching requests), killing a session, and a record
of every request.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = re.compile(
    r"^/v1/workspaces/(?P<ws>[^/]+)/lakehouses/(?P<lh>[^/]+)/livyApi/versions/(?P<v>[^/]+)"
)


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Statement:
    id: int
    code: str
    state: str = "waiting"
    output: dict[str, Any] | None = None
    group: str = ""
    cancel: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "code": self.code, "state": self.state, "output": self.output}


@dataclass
class Session:
    id: str
    name: str
    conf: dict[str, str]
    tags: dict[str, str]
    state: str = "starting"
    namespace: dict[str, Any] = field(default_factory=dict)
    statements: list[Statement] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    idle_at: str | None = None
    queue: list[Statement] = field(default_factory=list)
    wake: threading.Condition = field(default_factory=threading.Condition)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "tags": self.tags,
            "log": self.log[-20:],
            "livyInfo": {"currentState": self.state, "idleAt": self.idle_at},
            "jobType": "SparkSession",
        }


@dataclass
class Fault:
    method: str
    path: str  # a regular expression searched in the path after the Livy prefix
    status: int
    headers: dict[str, str]
    times: int
    body: dict[str, Any] | None = None


class LivyServer:
    """Start with ``start()``; ``base_url`` is what FabricExecutor's api_url takes."""

    def __init__(self, spark: Any, startup_seconds: float = 0.3) -> None:
        self.spark = spark
        self.startup_seconds = startup_seconds
        self.sessions: dict[str, Session] = {}
        self.tokens: dict[str, float] = {}  # token -> expires_on
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, str, dict[str, Any] | None]] = []
        self.rejected = 0  # requests refused for a missing or expired token
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> LivyServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        for session in list(self.sessions.values()):
            self.kill(session.id, "server stopped")
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- test hooks ----------------------------------------------------------------

    def issue_token(self, lifetime: float) -> tuple[str, float]:
        token = f"tok-{uuid.uuid4().hex}"
        expires = time.time() + lifetime
        self.tokens[token] = expires
        return token, expires

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        self.faults.append(Fault(method, path, status, headers or {}, times, body))

    def interrupt(self, st: Statement) -> None:
        """Cancel the statement's Spark jobs until it stops: a job submitted just after
        one cancelJobGroup call would otherwise run on (Livy interrupts the thread)."""
        st.cancel = True

        def keep_cancelling() -> None:
            deadline = time.monotonic() + 30
            while st.state in ("waiting", "running", "cancelling") and time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    self.spark.sparkContext.cancelJobGroup(st.group)
                time.sleep(0.2)

        threading.Thread(target=keep_cancelling, daemon=True).start()

    def kill(self, session_id: str, reason: str = "YARN application killed") -> None:
        """The session dies: state dead, its running statement is cancelled in Spark."""
        session = self.sessions[session_id]
        session.state = "dead"
        session.log.append(f"ERROR: {reason}")
        for st in session.statements:
            if st.state in ("waiting", "running"):
                self.interrupt(st)
        with session.wake:
            session.wake.notify_all()

    # -- sessions run statements one at a time, in order ----------------------------

    def _start_session(self, session: Session) -> None:
        def boot() -> None:
            time.sleep(self.startup_seconds)
            if session.state == "starting":
                session.state, session.idle_at = "idle", now_iso()
                session.log.append("session is idle")
            while session.state not in ("dead", "killed"):
                with session.wake:
                    while not session.queue and session.state not in ("dead", "killed"):
                        session.wake.wait(0.5)
                    if session.state in ("dead", "killed"):
                        break
                    st = session.queue.pop(0)
                self._execute(session, st)

        threading.Thread(target=boot, daemon=True, name=f"livy-{session.id[:8]}").start()

    def _execute(self, session: Session, st: Statement) -> None:
        if st.cancel:
            st.state = "cancelled"
            return
        st.group = f"livy-{session.id}-{st.id}"
        session.state, st.state = "busy", "running"
        out = io.StringIO()
        sc = self.spark.sparkContext
        sc.setJobGroup(st.group, f"statement {st.id}", interruptOnCancel=True)
        session.namespace.setdefault("spark", self.spark)
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(st.code, f"<livy statement {st.id}>", "exec"), session.namespace)
            st.output = {
                "status": "ok",
                "execution_count": st.id,
                "data": {"text/plain": out.getvalue()},
            }
            st.state = "available"
        except BaseException as exc:
            if st.cancel:
                st.state = "cancelled"
            else:
                st.output = {
                    "status": "error",
                    "execution_count": st.id,
                    "ename": type(exc).__name__,
                    "evalue": str(exc),
                    "traceback": traceback.format_exception(exc),
                }
                st.state = "available"
        finally:
            sc.setLocalProperty("spark.jobGroup.id", None)
            if session.state == "busy":
                session.state, session.idle_at = "idle", now_iso()

    # -- HTTP ------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(
                self, status: int, body: Any = None, headers: dict[str, str] | None = None
            ) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, code: str, message: str) -> None:
                self._send(
                    status, {"errorCode": code, "message": message, "requestId": str(uuid.uuid4())}
                )

            def _route(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                match = PREFIX.match(self.path)
                auth = self.headers.get("Authorization", "")
                with server.lock:
                    server.requests.append((method, self.path, auth, body))
                if not match:
                    return self._error(404, "EntityNotFound", "no such API")
                token = auth.removeprefix("Bearer ")
                if token not in server.tokens or server.tokens[token] < time.time():
                    with server.lock:
                        server.rejected += 1
                    return self._error(401, "TokenNotValid", "Access token is missing or expired")
                rest = self.path[match.end() :].split("?", 1)[0]
                with server.lock:
                    for fault in server.faults:
                        if (
                            fault.times > 0
                            and fault.method == method
                            and re.search(fault.path, rest)
                        ):
                            fault.times -= 1
                            body_ = fault.body or {
                                "errorCode": f"HTTP{fault.status}",
                                "message": f"injected {fault.status}",
                            }
                            return self._send(fault.status, body_, fault.headers)
                return self._api(method, rest, body or {})

            def _api(self, method: str, rest: str, body: dict[str, Any]) -> None:
                parts = [p for p in rest.split("/") if p]
                if parts[:1] != ["sessions"]:
                    return self._error(404, "EntityNotFound", f"unknown path {rest}")
                if len(parts) == 1 and method == "POST":
                    sid = str(uuid.uuid4())
                    session = Session(
                        sid, body.get("name", ""), body.get("conf") or {}, body.get("tags") or {}
                    )
                    server.sessions[sid] = session
                    server._start_session(session)
                    return self._send(202, session.to_json())
                if len(parts) == 1 and method == "GET":
                    items = [
                        {"id": s.id, "name": s.name, "livyState": s.state, "tags": s.tags}
                        for s in server.sessions.values()
                    ]
                    return self._send(200, {"items": items, "totalCountOfMatchedItems": len(items)})
                session = server.sessions.get(parts[1])
                if session is None:
                    return self._error(404, "LivySessionNotFound", f"session {parts[1]} not found")
                if len(parts) == 2 and method == "GET":
                    return self._send(200, session.to_json())
                if len(parts) == 2 and method == "DELETE":
                    server.kill(session.id, "deleted by the client")
                    session.state = "killed"
                    return self._send(200)
                if session.state in ("dead", "killed", "error"):
                    return self._error(
                        404, "LivySessionNotFound", f"session {session.id} is {session.state}"
                    )
                if parts[2:] == ["statements"] and method == "POST":
                    st = Statement(len(session.statements), body.get("code", ""))
                    session.statements.append(st)
                    with session.wake:
                        session.queue.append(st)
                        session.wake.notify_all()
                    return self._send(200, st.to_json())
                if parts[2:] == ["statements"] and method == "GET":
                    sts = [s.to_json() for s in session.statements]
                    return self._send(200, {"statements": sts, "total_statements": len(sts)})
                if len(parts) >= 4 and parts[2] == "statements":
                    index = int(parts[3])
                    if index >= len(session.statements):
                        return self._error(404, "StatementNotFound", f"no statement {index}")
                    st = session.statements[index]
                    if parts[4:] == ["cancel"] and method == "POST":
                        if st.state in ("waiting", "running"):
                            st.state = "cancelling"
                            server.interrupt(st)
                        return self._send(200, {"msg": "canceled"})
                    if not parts[4:] and method == "GET":
                        return self._send(200, st.to_json())
                if parts[2:] == ["reset-timeout"] and method == "POST":
                    return self._send(204)
                return self._error(405, "MethodNotAllowed", f"{method} {rest}")

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_DELETE(self) -> None:
                self._route("DELETE")

        return Handler


@dataclass
class FakeCredential:
    """azure-identity's interface: get_token(*scopes) -> AccessToken(token, expires_on).
    Tokens are issued by the server, so it can reject them once they expire."""

    server: LivyServer
    lifetime: float = 3600.0
    scopes: list[tuple[str, ...]] = field(default_factory=list)

    def get_token(self, *scopes: str) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        token, expires = self.server.issue_token(self.lifetime)
        return AccessToken(token, int(expires))
