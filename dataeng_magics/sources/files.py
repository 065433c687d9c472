"""The files that make up a source: one file, a folder of parts or a glob, local or fsspec.

Spark reads every file of a folder (skipping ``_`` and ``.`` names, descending into
``key=value`` partition folders) or every match of a glob, so the sample lists the same
files, sorted, and reads the first. Compressed files (``.gz``, ``.bz2``) are opened as a
decompressing stream, so a sample reads only the first blocks however large the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote

from dataeng_magics.errors import MissingDependency, SourceError
from dataeng_magics.redact import split_credential

_AZURE = {"abfs", "abfss", "az", "adl"}
_GLOB_CHARS = ("*", "?", "[")


@dataclass(frozen=True)
class SourceFiles:
    """Every data file of a source, sorted; the first is the one sampled."""

    fs: Any
    root: str  # the path as the filesystem spells it (no protocol)
    files: list[str]
    sizes: list[int]
    partitions: dict[str, str]  # key=value folders above the first file

    @property
    def first(self) -> str:
        return self.files[0]

    def shown(self, path: str, file: str) -> str:
        """``file`` as the user would spell it, relative to the path they gave, without
        a credential (an https file's name is its URL, SAS query included)."""
        if file == self.root or is_glob(path):
            protocol = path.split("://", 1)[0] + "://" if "://" in path else ""
            file = f"{protocol}{file}" if protocol and not file.startswith(protocol) else file
            return split_credential(file)[0]
        return f"{path.rstrip('/')}/{file[len(self.root) :].lstrip('/')}"


def is_glob(path: str) -> bool:
    """A glob pattern; in a URL the query (a SAS token's ``?sv=...``) is not part of it."""
    if "://" in path:
        path = path.split("?", 1)[0]
    return any(ch in path for ch in _GLOB_CHARS)


def filesystem(path: str, options: dict[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem for ``path`` and the path in its own spelling."""
    import fsspec

    protocol = path.split("://", 1)[0] if "://" in path else "file"
    try:
        fs, root = fsspec.core.url_to_fs(path, **options)
        return fs, str(root)
    except (ImportError, ValueError) as exc:
        if protocol in _AZURE:
            raise MissingDependency("adlfs", "azure", f"Reading {protocol}:// sources") from exc
        raise SourceError(
            f"cannot open {protocol}:// paths ({exc})",
            file=path,
            hint="Use a local path or an fsspec URL whose filesystem package is installed",
        ) from exc


def missing(path: str) -> SourceError:
    return SourceError(
        "file does not exist", file=path, hint="Check the path, or pass --source NAME=PATH"
    )


def empty(path: str) -> SourceError:
    return SourceError(
        "file is empty", file=path, hint="Re-export it, or point the source at the right file"
    )


def _hidden(name: str, root: str) -> bool:
    parts = name[len(root) :].strip("/").split("/") if name.startswith(root) else [name]
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return base.startswith(("_", ".")) or any(p.startswith(("_", ".")) for p in parts if p)


_FOLDER_HINT = "Point the source at a data file, a folder of part files or a glob"


def list_files(path: str, options: dict[str, Any]) -> SourceFiles:
    """Every non-empty data file of the source at ``path``, sorted as Spark lists them."""
    fs, root = filesystem(path, options)
    if is_glob(root):
        found = fs.glob(root, detail=True)
        entries = {k: v for k, v in found.items() if v["type"] == "file"}
        if not entries:
            raise SourceError("no file matches the pattern", file=path, hint=_FOLDER_HINT)
    else:
        try:
            info = fs.info(root)
        except FileNotFoundError as exc:
            raise missing(path) from exc
        if info["type"] != "directory":
            if not info.get("size"):
                raise empty(path)
            return SourceFiles(fs, root, [str(info["name"])], [int(info["size"])], {})
        entries = fs.find(root, detail=True)
    data = sorted(
        (str(name), int(e.get("size") or 0))
        for name, e in entries.items()
        if e.get("type", "file") == "file" and not _hidden(str(name), root)
    )
    files = [(name, size) for name, size in data if size]
    if not files:
        why = "holds only empty files" if data else "holds no data files"
        raise SourceError(f"folder {why}" if not is_glob(root) else why, file=path,
                          hint=_FOLDER_HINT)  # fmt: skip
    first = files[0][0]
    partitions: dict[str, str] = {}
    for part in first[len(root) :].strip("/").split("/")[:-1]:
        key, eq, value = part.partition("=")
        if eq:
            partitions[unquote(key)] = unquote(value)
    return SourceFiles(fs, root, [f for f, _ in files], [s for _, s in files], partitions)


def open_binary(fs: Any, file: str, decompress: bool) -> IO[bytes]:
    """``file`` as a binary stream, decompressed on the fly when its name says so."""
    import fsspec

    compression = fsspec.utils.infer_compression(file) if decompress else None
    opened: IO[bytes] = fsspec.core.OpenFile(fs, file, "rb", compression=compression).open()
    return opened
