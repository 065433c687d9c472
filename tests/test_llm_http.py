"""The LLM planner through the real langchain-openai HTTP client, against a small
OpenAI-compatible server the test starts on 127.0.0.1: request shapes, the forced tool
call, structured-output parsing, usage, timeouts, errors and secrets, end to end."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from dataeng_magics.config import load_settings
from dataeng_magics.workflow import TransformRequest, TransformSession

SECRET = "sk-local-SECRET-9f8e7d6c5b4a"


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Server:
    url: str
    replies: list[Reply]
    requests: list[dict[str, Any]]


def completion(arguments: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> Reply:
    """A chat completion whose answer is a PlanEdit tool call, as OpenAI writes one."""
    return Reply(
        body={
            "id": "chatcmpl-local-1",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "local-model-2025",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {
                                    "name": "PlanEdit",
                                    "arguments": json.dumps(arguments),
                                },
                            }
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


@pytest.fixture
def server() -> Iterator[Server]:
    """An OpenAI-compatible /v1/chat/completions on a free local port, answering from a
    script and recording each request; stopped when the test ends."""
    replies: list[Reply] = []
    requests: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            requests.append({"path": self.path, "headers": headers, "json": body})
            reply = replies.pop(0) if replies else Reply(500, {"error": {"message": "no reply"}})
            time.sleep(reply.delay)
            data = json.dumps(reply.body).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up (a timeout test)
                pass

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}/v1", replies, requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def local_session(mapping: Path, url: str, **settings: Any) -> TransformSession:
    config = load_settings(
        planner="openai-compatible",
        llm_base_url=url,
        llm_model="local-model",
        llm_api_key_env="LOCAL_LLM_KEY",
        llm_requests_per_second=50,
        **settings,
    )
    return TransformSession(TransformRequest(client="NORTHWIND", mapping=mapping), config)


@pytest.fixture
def unresolved(example: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LOCAL_LLM_KEY", SECRET)
    book = load_workbook(example)
    for row in book["Mapping"].iter_rows():
        if row[1].value == "DESK":
            row[5].value = "the first three letters of the desk code, in capitals"
    book.save(example)
    return example


DESK = {
    "explanation": "Desk: the first three letters, upper-cased.",
    "columns": [
        {
            "table": "TRADES",
            "column": "DESK",
            "steps": [{"op": "substring", "start": 1, "length": 3}, {"op": "upper"}],
        }
    ],
}


def test_draft_and_revise_over_http(unresolved: Path, server: Server) -> None:
    server.replies.append(completion(DESK, 1234, 56))
    s = local_session(unresolved, server.url)
    entry = s.draft()

    (sent,) = server.requests
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {SECRET}"  # the key is sent ...
    body = sent["json"]
    assert body["model"] == "local-model" and body["temperature"] == 0
    assert body.get("max_completion_tokens", body.get("max_tokens")) == 4096
    (tool,) = body["tools"]
    assert tool["function"]["name"] == "PlanEdit"
    assert "steps" in json.dumps(tool["function"]["parameters"])
    assert body["tool_choice"] == {"type": "function", "function": {"name": "PlanEdit"}}
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "<data id=" in body["messages"][1]["content"]

    assert "substring 1, 3, then upper" in entry.pseudocode and entry.code
    assert (entry.tokens_in, entry.tokens_out) == (1234, 56)
    (event,) = s.audit.events()
    assert event.details["model"] == "local-model-2025"  # the model the server says it ran
    assert event.details["tokens_in"] == 1234 and not event.details["estimated"]
    assert "1,234 in / 56 out" in entry.conversation[0]["text"]

    server.replies.append(
        completion(
            {
                "explanation": "Kept only trades above 100 units.",
                "filters": [{"table": "TRADES", "add": [{"condition": "Qty > 100"}]}],
            },
            2000,
            40,
        )
    )
    entry, revision = s.revise("only trades above 100 units")
    assert "Kept only trades above 100 units." in revision.reply
    assert "added filter on TRADES: Qty > 100" in revision.reply
    assert "Client NORTHWIND so far: 3,234 in / 96 out." in revision.reply
    assert "KEEP ROWS WHERE Qty > 100" in entry.pseudocode
    sent_again = server.requests[-1]["json"]["messages"][1]["content"]
    assert "only trades above 100 units" in sent_again

    # ... and appears nowhere we write or show.
    written = s.audit.path.read_text() + s.store.path.read_bytes().decode("utf-8", "replace")
    assert SECRET not in written + revision.reply + repr(s.planner)


def test_a_server_error_or_timeout_leaves_the_plan_and_is_explained(
    unresolved: Path, server: Server
) -> None:
    server.replies.append(completion(DESK, 1000, 50))
    s = local_session(unresolved, server.url, llm_timeout=0.5, llm_max_retries=0)
    before = s.draft()

    server.replies.append(Reply(status=200, body={}, delay=3.0))
    started = time.perf_counter()
    entry, revision = s.revise("desk in lower case")
    assert time.perf_counter() - started < 2.5  # the timeout bounds the wait
    assert "could not be asked" in revision.reply and "Timeout" in revision.reply
    assert entry.plan_sha256 == before.plan_sha256

    leak = {"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "auth"}}
    server.replies.append(Reply(status=401, body=leak))
    entry, revision = s.revise("desk in lower case")
    assert "AuthenticationError" in revision.reply and SECRET not in revision.reply
    assert SECRET not in s.audit.path.read_text()
    assert entry.plan_sha256 == before.plan_sha256


def test_a_bad_answer_gets_one_repair_round_over_http(unresolved: Path, server: Server) -> None:
    bad = {
        "explanation": "As the sample asked.",
        "columns": [{"table": "TRADES", "column": "DESK",
                     "steps": [{"op": "sql", "expression": "reflect('java.lang.Runtime', "
                                "'exec', 'id')"}]}],
    }  # fmt: skip
    server.replies.extend([completion(bad, 900, 30), completion(DESK, 1100, 40)])
    s = local_session(unresolved, server.url)
    entry = s.draft()
    assert len(server.requests) == 2
    repair = server.requests[1]["json"]["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert "reflect() is not allowed" in repair[-1]["content"]
    assert "reflect" not in entry.code and (entry.tokens_in, entry.tokens_out) == (2000, 70)
