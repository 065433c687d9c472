"""XML: one record per Row Tag element, named as Spark's XML reader names them.

Attributes become columns prefixed ``_``, child elements columns, the text of an
element that also has attributes ``_VALUE``; a nested field is addressed with dots
(``address.city``). The sample streams the document (defusedxml's ``iterparse``, which
refuses entity expansion and external references) to the first ``n`` row tags; the run
reads the used fields as text with Spark's built-in reader (Spark 4, Databricks Runtime
14.3+), and counts malformed records.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from xml.etree.ElementTree import Element, SubElement, tostring

import pandas as pd

from dataeng_magics.compile.safety import py_str
from dataeng_magics.errors import SourceError
from dataeng_magics.sources.readers.base import (
    CORRUPT_COLUMN,
    ReadCode,
    Reader,
    Typed,
    cell_text,
    flatten_columns,
    nested_ddl,
    observed_read,
    options_call,
    path_of,
    text_frame,
)

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import SourceSpec
    from dataeng_magics.plan.model import SourceRead

ATTRIBUTE_PREFIX = "_"
VALUE_TAG = "_VALUE"
HINT = "Check the source's Row Tag: the name of the element that holds one record"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]  # {namespace}name -> name


def _text(value: str | None) -> str:
    """An element's or attribute's text as Spark reads it: surrounding spaces dropped, and
    an empty element is the empty string (only a missing one is null)."""
    return (value or "").strip()


def flatten(element: Any, prefix: str = "") -> dict[str, Any]:
    """One element as Spark's XML reader sees it, nested names joined with dots.
    A repeated child (an array for Spark) is shown as a JSON list of its texts."""
    out: dict[str, Any] = {}
    for key, value in element.attrib.items():
        out[f"{prefix}{ATTRIBUTE_PREFIX}{_local(key)}"] = _text(value)
    children = list(element)
    text = _text(element.text)
    if text and (children or element.attrib):
        out[f"{prefix}{VALUE_TAG}"] = text
    seen: dict[str, int] = {}
    for child in children:
        name = f"{prefix}{_local(child.tag)}"
        seen[name] = seen.get(name, 0) + 1
        nested = flatten(child, name + ".") if len(child) or child.attrib else None
        fields = nested if nested is not None else {name: _text(child.text)}
        if seen[name] == 1:
            out.update(fields)
        else:  # repeated: keep the texts as a list
            previous = out.get(name)
            items = json.loads(previous) if seen[name] > 2 and previous else [previous]
            out[name] = json.dumps([*items, fields.get(name)], ensure_ascii=False)
    return out


class XmlReader(Reader):
    format = "xml"
    label = "XML"
    hint = HINT

    def sample(self, handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
        from defusedxml.ElementTree import iterparse

        tag = spec.row_tag or ""
        records: list[dict[str, Any]] = []
        depth = 0  # row tags inside a row tag belong to it, as for Spark
        if n:
            for event, element in iterparse(handle, events=("start", "end")):
                if _local(element.tag) != tag:
                    continue
                if event == "start":
                    depth += 1
                    continue
                depth -= 1
                if depth == 0:
                    records.append(flatten(element))
                    element.clear()  # keep memory flat however long the document
                    if len(records) >= n:
                        break
        if not records and n:
            raise SourceError(f"holds no <{tag}> elements", hint=HINT)
        names = list(dict.fromkeys(key for record in records for key in record))
        return text_frame(names, [[r.get(name) for r in records] for name in names])

    def read_code(
        self, var: str, name: str, read: SourceRead, columns: list[str], fresh: Callable[[str], str]
    ) -> ReadCode:
        schema = nested_ddl({**dict.fromkeys(columns, "string"), CORRUPT_COLUMN: "string"})
        flat = flatten_columns(columns)
        return observed_read(
            var,
            name,
            f"XML, one row per <{read.row_tag}> element, the fields used read as text; "
            "malformed records counted.",
            [
                'spark.read.format("xml")',
                f".schema({py_str(schema)})",
                options_call(
                    {
                        "rowTag": read.row_tag or "",
                        "attributePrefix": ATTRIBUTE_PREFIX,
                        "valueTag": VALUE_TAG,
                        "ignoreSurroundingSpaces": "true",
                        "encoding": read.encoding,
                        "mode": "PERMISSIVE",
                        "columnNameOfCorruptRecord": CORRUPT_COLUMN,
                    }
                ),
                f".load({path_of(name)})",
            ],
            f"F.col({py_str(CORRUPT_COLUMN)}).isNotNull()",
            flat,
            fresh,
        )

    def write_sample(self, frame: pd.DataFrame, spec: SourceSpec, path: Path) -> Path:
        root = Element("rows")
        for values in frame.itertuples(index=False):
            row = SubElement(root, spec.row_tag or "row")
            for column, value in zip(frame.columns, values, strict=True):
                text = cell_text(value)
                if text is None:
                    continue
                *parents, leaf = str(column).split(".")
                node = row
                for part in parents:
                    found = node.find(part)
                    node = found if found is not None else SubElement(node, part)
                if leaf == VALUE_TAG:
                    node.text = text
                elif leaf.startswith(ATTRIBUTE_PREFIX):
                    node.set(leaf[len(ATTRIBUTE_PREFIX) :], text)
                else:
                    SubElement(node, leaf).text = text
        path.write_bytes(tostring(root, encoding="utf-8"))
        return path


READER = XmlReader()
