"""What a run's Spark reads for each source: its path, or a local copy of an http(s) file.

Spark's Hadoop cannot read http(s) URLs (its HttpFileSystem cannot list, and a SAS
query would not survive its path parsing), and a SAS must not be written into the code
anyway. So on Spark that reads this machine's disk (the embedded local Spark), an
http(s) source is streamed through fsspec, its credential held in memory, into a folder
that lives as long as the run, and the run's parameters name that copy. Spark elsewhere
(a Spark Connect server, Fabric, a Databricks notebook) cannot see this disk: there an
http(s) source is refused before anything runs, naming the abfss:// form to use.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from dataeng_magics.errors import DataEngMagicsError, ExecutionError
from dataeng_magics.sources.credentials import is_http

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import Mapping, SourceSpec

_CHUNK = 8 << 20


def readable(mapping: Mapping, local_files: bool) -> None:
    """Refuse, before a run starts, an http(s) source its Spark cannot be given: one that
    does not read this machine's files (``local_files``) cannot read a local copy."""
    remote = [spec for spec in mapping.sources.values() if is_http(spec.path)]
    if remote and not local_files:
        spec = remote[0]
        raise ExecutionError(
            f"source {spec.name!r} is an http(s) URL ({spec.path}), which Spark on this "
            "platform cannot read",
            hint="Name it as abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/PATH with a storage "
            'connection for the account (auth = "sas", its SAS in an environment variable)',
        )


def line_reads(mapping: Mapping, local_files: bool) -> dict[str, str]:
    """The run parameter ``multiline``: "false" for each CSV source no record of which
    spans lines, so Spark splits its files across cores. Only files this machine reads
    as its Spark does are scanned (``local_files``; a remote ``://`` source would be
    downloaded to be scanned): every other source keeps the safe ``multiLine`` read."""
    from dataeng_magics.sources.diagnose import spans_lines

    if not local_files:
        return {}
    return {
        name: "false"
        for name, spec in sorted(mapping.sources.items())
        if spec.format == "csv" and "://" not in spec.path and not spans_lines(spec)
    }


@contextmanager
def spark_inputs(mapping: Mapping, seconds: float) -> Iterator[dict[str, str]]:
    """Source name -> the path the run's Spark reads, while the context lasts: an
    http(s) source's local copy (``seconds``: the network deadline of each request of
    the copy, not of the whole copy), every other source's own path."""
    paths = {name: spec.path for name, spec in mapping.sources.items()}
    remote = [spec for spec in mapping.sources.values() if is_http(spec.path)]
    if not remote:
        yield paths
        return
    with tempfile.TemporaryDirectory(prefix="dem-inputs-") as tmp:
        for index, spec in enumerate(remote):
            paths[spec.name] = str(copy(spec, Path(tmp) / f"source_{index}", seconds))
        yield paths


def copy(spec: SourceSpec, folder: Path, seconds: float) -> Path:
    """Stream ``spec``'s file into ``folder`` under its own name (so Spark sees its
    compression suffix); its credential goes to the request, never to a file or message."""
    from dataeng_magics.redact import redact
    from dataeng_magics.sources.files import list_files
    from dataeng_magics.sources.network import network_cause, where, with_timeouts

    name = PurePosixPath(unquote(urlsplit(spec.path).path)).name or "data"
    target = folder / name
    folder.mkdir(parents=True)
    try:
        source = list_files(spec.url, with_timeouts(spec.url, {}, seconds))
        with source.fs.open(source.first, "rb", block_size=_CHUNK) as remote, \
                target.open("wb") as local:  # fmt: skip
            shutil.copyfileobj(remote, local, _CHUNK)
    except DataEngMagicsError:
        raise
    except Exception as exc:  # refused, 403 for an expired SAS, a timeout, a full disk
        cause = network_cause(exc) or exc
        reason = (str(cause).splitlines() or [""])[0][:200] or type(cause).__name__
        raise ExecutionError(
            f"cannot copy source {spec.name!r} from {where(spec.path)}: {redact(reason)}",
            hint="Check the URL and its SAS (expiry, read permission) or the network; nothing ran",
        ) from None
    return target
