"""The evidence record of a run: what an auditor files to show the output is right.

One JSON document per run (``run_id``): client, key, plan and code hashes, the approval
(reviewer, time, its audit record's hash), every input file (path, size, modification
time, a content hash where cheap), the validation report as the run produced it (row
accounting, every check with its counts and examples, control totals: whatever the report
carries flows through unchanged), timings, the platform, and the ``run_start`` audit
record's hash. Its sha256 goes into the ``run_end`` record, so the two are tied to the
chain without a cycle; the closing record is shown beside the evidence, never inside it.
"""

from __future__ import annotations

import hashlib
import html
import json
from typing import TYPE_CHECKING, Any

from dataeng_magics.canonical import canonical_json, sha256_text
from dataeng_magics.redact import public_path, redact

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import Mapping
    from dataeng_magics.state.audit import AuditEvent, AuditTrail

EVIDENCE_VERSION = 1
#: Files up to this size get a full sha256 (while ``HASH_BUDGET`` bytes per run last);
#: Parquet files a hash of their footer (which holds every row group's statistics).
SMALL_FILE = 16 * 1024 * 1024
HASH_BUDGET = 256 * 1024 * 1024
#: At most this many files of one source are listed (a source of 100 000 parts is
#: summarised by its count and total size).
MAX_FILES = 1000
#: Up to this many example values per check are kept.
MAX_EXAMPLES = 10
#: The folder of evidence records under the output folder.
EVIDENCE_DIR = "_evidence"


def digest(evidence: dict[str, Any]) -> str:
    """The sha256 the ``run_end`` audit record holds."""
    return sha256_text(canonical_json(evidence))


def _file_hashes(fs: Any, name: str, size: int, budget: list[int]) -> dict[str, str]:
    """A content hash where it is cheap: Parquet footers, whole small files."""
    if name.endswith(".parquet") and size > 12:
        with fs.open(name, "rb") as file:
            file.seek(size - 8)
            tail = file.read(8)
            length = int.from_bytes(tail[:4], "little")
            if tail[4:] == b"PAR1" and length + 8 <= size:
                file.seek(size - 8 - length)
                return {"parquet_footer_sha256": hashlib.sha256(file.read(length)).hexdigest()}
    if size <= min(SMALL_FILE, budget[0]):
        budget[0] -= size
        with fs.open(name, "rb") as file:
            return {"sha256": hashlib.file_digest(file, "sha256").hexdigest()}
    return {}


def input_files(mapping: Mapping, storage: Any) -> list[dict[str, Any]]:
    """Every input file of every source: path, size, modification time, hashes, and on
    ADLS the store's own ETag and Content-MD5."""
    from dataeng_magics.connections import storage_options
    from dataeng_magics.errors import DataEngMagicsError
    from dataeng_magics.sources.files import list_files

    found: list[dict[str, Any]] = []
    budget = [HASH_BUDGET]
    for name, spec in sorted(mapping.sources.items()):
        try:
            files = list_files(spec.url, storage_options(spec.path, storage))
        except (DataEngMagicsError, OSError) as exc:
            found.append({"source": name, "path": public_path(spec.path), "error": str(exc)})
            continue
        for file, size in list(zip(files.files, files.sizes, strict=True))[:MAX_FILES]:
            record: dict[str, Any] = {
                "source": name,
                "path": public_path(files.shown(spec.path, file)),
                "size": size,
            }
            try:
                info = files.fs.info(file)
            except OSError as exc:  # gone since it was listed: say so, the run says more
                found.append({**record, "error": str(exc)})
                continue
            modified = info.get("mtime") or info.get("last_modified")
            if modified is not None:
                record["modified"] = _iso(modified)
            if info.get("etag"):
                record["etag"] = str(info["etag"]).strip('"')
            md5 = (info.get("content_settings") or {}).get("content_md5")
            if md5:
                record["content_md5"] = bytes(md5).hex() if not isinstance(md5, str) else md5
            try:
                record.update(_file_hashes(files.fs, file, size, budget))
            except OSError as exc:
                record["hash_error"] = str(exc)
            found.append(record)
        if len(files.files) > MAX_FILES:
            rest = files.sizes[MAX_FILES:]
            found.append({"source": name, "more_files": len(rest), "more_bytes": sum(rest)})
    return found


def _iso(value: Any) -> str:
    from datetime import UTC, datetime

    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC).isoformat()
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def approval_of(audit: AuditTrail, key: str) -> dict[str, Any] | None:
    """The approval in force for ``key``: reviewer, time and its audit record's hash."""
    found: AuditEvent | None = None
    for event in audit.events(key=key):
        if event.event == "approval":
            found = event
        elif event.event == "revocation":
            found = None
    if found is None:
        return None
    reviewer = found.details.get("reviewer", found.actor)
    return {"reviewer": reviewer, "time": found.time.isoformat(), "audit_seq": found.seq,
            "audit_hash": found.hash}  # fmt: skip


def _trim_examples(report: dict[str, Any]) -> dict[str, Any]:
    """The report as produced, each check's example list cut to ``MAX_EXAMPLES``."""
    tables = []
    for table in report.get("tables", []):
        checks = [
            {k: (v[:MAX_EXAMPLES] if k == "examples" and isinstance(v, list) else v)
             for k, v in check.items()}
            for check in table.get("checks", [])
        ]  # fmt: skip
        tables.append({**table, "checks": checks})
    return {**report, "tables": tables}


def build(**facts: Any) -> dict[str, Any]:
    """The evidence document: the given facts, plus its version, with the validation
    report's examples bounded and every string redacted (no secret reaches a record)."""
    facts["validation"] = _trim_examples(facts.get("validation") or {})
    text = json.dumps({"evidence_version": EVIDENCE_VERSION, **facts}, default=str)
    document: dict[str, Any] = json.loads(redact(text))
    return document


def closing_record(audit: AuditTrail, evidence: dict[str, Any]) -> AuditEvent | None:
    """The ``run_end`` record holding this evidence's sha256, if the chain has it."""
    wanted = digest(evidence)
    for event in audit.events(key=evidence.get("key")):
        if event.event == "run_end" and event.details.get("evidence_sha256") == wanted:
            return event
    return None


def write(evidence: dict[str, Any], page: str, output_dir: str, options: dict[str, Any]) -> str:
    """Write ``<output_dir>/_evidence/<run_id>.json`` and ``.html``; returns the JSON's path."""
    import fsspec

    base = f"{output_dir.rstrip('/')}/{EVIDENCE_DIR}/{evidence['run_id']}"
    fs, root = fsspec.core.url_to_fs(base, **options)
    fs.makedirs(root.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(root + ".json", json.dumps(evidence, indent=2).encode())
    fs.pipe_file(root + ".html", page.encode())
    return base + ".json"


def write_page(path: str, evidence: dict[str, Any], closing: AuditEvent | None) -> None:
    """``evidence --html FILE``: the page an auditor files."""
    from pathlib import Path

    from dataeng_magics.errors import DataEngMagicsError

    try:
        Path(path).write_text(to_html(evidence, closing), encoding="utf-8")
    except OSError as exc:
        raise DataEngMagicsError(f"cannot write the page: {exc.strerror}", file=path,
                                 hint="Choose another --html FILE.") from exc  # fmt: skip


# -- for people ---------------------------------------------------------------------------


def _check_line(check: dict[str, Any], shown: int = 3) -> str:
    """``AMOUNT [range]: 14 row(s) (error), e.g. -12.5 (source '-12,500')``; a check that
    names itself (a ``check`` or ``name`` field) is called by that name. ``shown``: how
    many examples (a chat message stays short; the evidence shows all it holds)."""
    label = check.get("check") or check.get("name") or check.get("kind", "")
    text = f"{check.get('column', '')} [{label}]: {check.get('failed', 0)} row(s)"
    severity = check.get("action") or check.get("severity")
    if check.get("failed") and severity:
        text += f" ({severity})"
    examples = ", ".join(_example(e) for e in (check.get("examples") or [])[:shown])
    return f"{text}, e.g. {examples}" if examples else text


def _example(value: Any) -> str:
    if isinstance(value, dict):
        target, source = value.get("value"), value.get("source")
        if source is not None and source != target:
            return f"{target!r} (source {source!r})"
        return repr(target)
    return repr(value)


def failures_in_words(evidence: dict[str, Any]) -> list[str]:
    """The failed checks, one line each, as the chat and ``draft`` show them."""
    return [
        f"{table.get('table')}.{_check_line(check)}"
        for table in evidence.get("validation", {}).get("tables", [])
        for check in table.get("checks", [])
        if check.get("failed")
    ]


def to_text(evidence: dict[str, Any], closing: AuditEvent | None = None) -> str:
    """The evidence as a terminal shows it."""
    approval = evidence.get("approval") or {}
    lines = [
        f"run {evidence['run_id']}  {str(evidence.get('outcome', '')).upper()}",
        f"client {evidence.get('client')}  key {evidence.get('key')}",
        f"plan sha256 {evidence.get('plan_sha256')}",
        f"code sha256 {evidence.get('code_sha256')}",
        f"approved by {approval.get('reviewer', '-')} at {approval.get('time', '-')} "
        f"(audit {str(approval.get('audit_hash', '-'))[:16]})",
        f"platform {evidence.get('platform', {}).get('platform')}  "
        f"{evidence.get('timings', {}).get('seconds')}s",
        f"output {evidence.get('output_dir')} ({evidence.get('output_format')}), "
        f"published: {evidence.get('published')}",
    ]
    lines += [f"input {f.get('source')}: {f.get('path')} {f.get('size', '')} bytes"
              for f in evidence.get("inputs", [])]  # fmt: skip
    for table in evidence.get("validation", {}).get("tables", []):
        lines.append(f"{table.get('table')}: {table.get('rows_read')} read, "
                     f"{table.get('rows_written')} written")  # fmt: skip
        lines += [f"  {'FAIL' if c.get('failed') else 'ok  '} {_check_line(c, MAX_EXAMPLES)}"
                  for c in table.get("checks", [])]  # fmt: skip
    lines.append(f"run_start audit hash {evidence.get('audit', {}).get('run_start_hash')}")
    lines.append(f"evidence sha256 {digest(evidence)}")
    if closing is not None:
        lines.append(f"closed by audit record {closing.seq} ({closing.event}) {closing.hash}")
    return "\n".join(lines)


_STYLE = """body{font:12px/1.4 sans-serif;margin:2em;color:#000}
table{border-collapse:collapse;margin:.5em 0 1.5em;width:100%}
th,td{border:1px solid #999;padding:2px 6px;text-align:left;vertical-align:top}
th{width:1%;white-space:nowrap}
th{background:#eee}code{font-size:11px;word-break:break-all}.fail{color:#b00;font-weight:bold}
@media print{body{margin:0}h2{page-break-after:avoid}table{page-break-inside:avoid}}"""


def _cell(value: Any) -> str:
    if isinstance(value, (dict, list)):
        value = json.dumps(value, default=str, sort_keys=True)
    text = html.escape("" if value is None else str(value))
    return f"<code>{text}</code>" if len(text) == 64 and text.isalnum() else text


def _table(rows: list[dict[str, Any]]) -> str:
    """Rows as an HTML table, whatever their fields (new check fields show up too)."""
    if not rows:
        return "<p>none</p>"
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _pairs(values: dict[str, Any]) -> str:
    """Name/value rows, the names as row headers."""
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>"
                   for k, v in values.items())  # fmt: skip
    return f"<table>{rows}</table>"


def to_html_fragment(evidence: dict[str, Any], closing: AuditEvent | None = None) -> str:
    """The evidence as HTML tables (the notebook's run summary embeds it); escaped."""
    e = evidence
    names = ("run_id", "outcome", "published", "client", "key", "plan_sha256", "code_sha256",
             "output_dir", "output_format", "error")  # fmt: skip
    head = {k: e[k] for k in names if k in e}
    parts = [_pairs(head), "<h2>Approval</h2>", _pairs(e.get("approval") or {"approval": "none"}),
             "<h2>Input files</h2>", _table(e.get("inputs", []))]  # fmt: skip
    validation = e.get("validation", {})
    for table in validation.get("tables", []):
        name = html.escape(str(table.get("table")))
        counts = {k: v for k, v in table.items() if k not in ("table", "checks")}
        checks = [{"result": _result(c), **c} for c in table.get("checks", [])]
        parts += [f"<h2>Table {name}</h2>", _pairs(counts), _table(checks)]
    extra = {k: v for k, v in validation.items() if k != "tables"}
    if extra:  # control totals and whatever else the report carries
        parts += ["<h2>Run-level results</h2>", _pairs(extra)]
    audit = {**e.get("audit", {}), "evidence_sha256": digest(e)}
    if closing is not None:
        audit["closing_record"] = f"seq {closing.seq} ({closing.event}) at {closing.time}"
        audit["closing_record_hash"] = closing.hash
    parts += ["<h2>Timings</h2>", _pairs(e.get("timings", {})),
              "<h2>Platform</h2>", _pairs(e.get("platform", {})),
              "<h2>Audit</h2>", _pairs(audit)]  # fmt: skip
    return "".join(parts)


def _result(check: dict[str, Any]) -> str:
    if not check.get("failed"):
        return "ok"
    return "FAIL" if check.get("severity", "error") == "error" else "WARN"


def to_html(evidence: dict[str, Any], closing: AuditEvent | None = None) -> str:
    """One printable page, no JavaScript, every value escaped: what an auditor files."""
    client = html.escape(str(evidence.get("client")))
    title = html.escape(f"Evidence {evidence.get('client')} {evidence.get('run_id')}")
    return (
        f"<!DOCTYPE html><html><head><meta charset=utf-8><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body><h1>Run evidence: {client}</h1>"
        f"{to_html_fragment(evidence, closing)}</body></html>\n"
    )
