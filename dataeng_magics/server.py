"""The Jupyter server extension behind the JupyterLab "Transformations" side panel.

REST handlers under ``<base_url>/dataeng-magics/`` read the same store and audit log
as the magics and the CLI (``load_settings()``: ``DATAENG_MAGICS_HOME`` and
``[tool.dataeng_magics]`` as the server process sees them). They sit behind the
server's own authentication (``@tornado.web.authenticated``; a POST also passes its
XSRF check), and are enabled by ``jupyter-config/.../dataeng_magics.json``, which the
wheel installs into ``etc/jupyter/jupyter_server_config.d/``.

    GET  entries[?client=C]        every entry (newest first; C in any case) and every client
    GET  entries/KEY               one entry, its runs and its audit events (each
                                   "revision" with the request and the plan lines it changed)
    POST entries/KEY/revoke        {"reason": "..."} (required): revoke it, audited
         (``entries/KEY/invalidate``, the old path, does the same)

The functions below the handlers do the work and know nothing of tornado.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from dataeng_magics.config import Settings, current_user, load_settings
from dataeng_magics.errors import DataEngMagicsError, StoreError
from dataeng_magics.state.backend import audit_of, exists, open_store
from dataeng_magics.state.store import Entry, Store

API_PREFIX = "dataeng-magics"
SUMMARY_FIELDS = (
    "key",
    "client",
    "status",
    "reviewer",
    "revoked_by",
    "approved_at",
    "runs",
    "last_outcome",
    "last_run_at",
    "updated_at",
    "mapping_file",
)
DETAIL_FIELDS = (
    *SUMMARY_FIELDS,
    "pseudocode",
    "code",
    "plan_sha256",
    "code_sha256",
    "reason",
    "created_at",
)
RUN_FIELDS = (
    "id",
    "started_at",
    "finished_at",
    "outcome",
    "platform",
    "rows_in",
    "rows_out",
    "seconds",
)
# jupyter_server's identity for a shared-token login: a random hex id, "Anonymous <moon>".
_ANONYMOUS_ID = re.compile(r"[0-9a-f]{32}")


class NotFound(LookupError):
    """No entry for the key (or the prefix matches none)."""


class Conflict(ValueError):
    """The entry cannot make that transition (e.g. it is already revoked)."""


class BadRequest(ValueError):
    """The request itself is incomplete (e.g. a revocation without a reason)."""


def _fields(entry: Entry, names: tuple[str, ...]) -> dict[str, Any]:
    data = entry.model_dump(mode="json", include=set(names))
    return {name: data.get(name) for name in names}


def _resolve(store: Store, key: str) -> Entry:
    try:
        key = store.resolve(key)
    except StoreError as exc:
        raise NotFound(str(exc)) from None
    entry = store.get(key)
    if entry is None:
        raise NotFound(f"no cached plan with key {key!r}")
    return entry


def list_entries(settings: Settings, client: str | None = None) -> dict[str, Any]:
    """Entries (optionally one client's) and all clients, for the panel's list and filter.

    A missing store is an empty list: reading must not create the state directory.
    """
    home = str(settings.home)
    if not exists(settings):
        return {"entries": [], "clients": [], "home": home}
    with open_store(settings) as store:
        everything = store.list()
        states = store.run_states(everything)
    clients = sorted({entry.client for entry in everything})
    wanted = None if client is None else client.casefold()  # as Store.list matches it
    shown = [e for e in everything if wanted is None or e.client.casefold() == wanted]
    return {
        "entries": [{**_fields(e, SUMMARY_FIELDS), "run_state": states.get(e.key)} for e in shown],
        "clients": clients,
        "home": home,
    }


def entry_detail(settings: Settings, key: str) -> dict[str, Any]:
    """One entry with its plan and code, its runs and its audit history."""
    if not exists(settings):
        raise NotFound(f"no cached plan with key {key!r}")
    with open_store(settings) as store:
        entry = _resolve(store, key)
        runs = store.runs(entry.key)
        state = store.run_states([entry]).get(entry.key)
        events = [event.model_dump(mode="json") for event in audit_of(store).events(key=entry.key)]
    revision_events = [event for event in events if event["event"] == "revision"]
    for event, turn in zip(revision_events, _revisions(entry, len(revision_events)), strict=True):
        event["revision"] = turn
    return {
        "entry": {**_fields(entry, DETAIL_FIELDS), "run_state": state},
        "runs": [run.model_dump(mode="json", include=set(RUN_FIELDS)) for run in runs],
        "events": events,
    }


def _revisions(entry: Entry, count: int) -> list[dict[str, Any] | None]:
    """What each of the entry's last ``count`` revisions asked and changed, from its
    conversation (a user turn, then the planner's answer with the changed plan lines),
    in order; None for a revision the conversation does not hold (older logs)."""
    turns = entry.conversation
    pairs = [
        {
            "request": str(asked.get("text", "")),
            "reply": str(answer.get("text", "")),
            "changes": [str(line) for line in answer.get("changes", [])],
        }
        for asked, answer in pairwise(turns)
        if asked.get("role") == "user" and answer.get("role") == "planner"
    ]
    missing: list[dict[str, Any] | None] = [None] * max(0, count - len(pairs))
    return [*missing, *pairs[len(pairs) - count + len(missing) :]]


def revoke_entry(settings: Settings, key: str, actor: str, reason: str = "") -> dict[str, Any]:
    """Revoke an entry and audit it, by the path the CLI and ``%transform`` take; as
    there, a revocation needs a reason."""
    from dataeng_magics.workflow import revoke  # heavier than the reads: only here

    if not reason.strip():
        raise BadRequest("a revocation needs a reason: say why (the audit log records it)")
    if not exists(settings):
        raise NotFound(f"no cached plan with key {key!r}")
    with open_store(settings) as store:
        entry = _resolve(store, key)
    if entry.status == "revoked":
        raise Conflict(f"the plan {entry.key[:16]} is already revoked (by {entry.revoked_by})")
    try:
        entry = revoke(settings, entry.key, actor, reason)
    except StoreError as exc:  # revoked meanwhile by someone else
        raise Conflict(str(exc)) from None
    return {"entry": _fields(entry, DETAIL_FIELDS)}


def _actor(user: Any) -> str:
    """Who the audit log names: the server's user, or for a shared-token login (an
    anonymous identity) who the kernels and the CLI name (``current_user``)."""
    username = str(getattr(user, "username", "") or "")
    if username and not _ANONYMOUS_ID.fullmatch(username):
        return username
    return current_user()


class _Handler(APIHandler):
    """Runs the blocking store work in a thread, and maps our errors to HTTP codes."""

    async def _call(self, func: Callable[..., dict[str, Any]], *args: Any) -> None:
        try:
            settings = load_settings()
            result = await asyncio.to_thread(func, settings, *args)
        except NotFound as exc:
            raise tornado.web.HTTPError(404, str(exc)) from None
        except Conflict as exc:
            raise tornado.web.HTTPError(409, str(exc)) from None
        except BadRequest as exc:
            raise tornado.web.HTTPError(400, str(exc)) from None
        except DataEngMagicsError as exc:
            raise tornado.web.HTTPError(500, f"{type(exc).__name__}: {exc}") from None
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result))


class EntriesHandler(_Handler):
    @tornado.web.authenticated
    async def get(self) -> None:
        await self._call(list_entries, self.get_argument("client", None) or None)


class EntryHandler(_Handler):
    @tornado.web.authenticated
    async def get(self, key: str) -> None:
        await self._call(entry_detail, key)


class RevokeHandler(_Handler):
    @tornado.web.authenticated
    async def post(self, key: str) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise tornado.web.HTTPError(400, "the body must be JSON") from None
        reason = body.get("reason", "") if isinstance(body, dict) else ""
        if not isinstance(reason, str):
            raise tornado.web.HTTPError(400, "reason must be a string")
        await self._call(revoke_entry, key, _actor(self.current_user), reason.strip())


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "dataeng_magics.server"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    web_app = server_app.web_app
    base = url_path_join(web_app.settings["base_url"], API_PREFIX)
    key = r"(?P<key>[0-9A-Za-z]+)"
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "entries"), EntriesHandler),
            (url_path_join(base, "entries", key), EntryHandler),
            (url_path_join(base, "entries", key, "revoke"), RevokeHandler),
            (url_path_join(base, "entries", key, "invalidate"), RevokeHandler),  # the old path
        ],
    )
    server_app.log.info("dataeng_magics: Transformations API at %s", base)
