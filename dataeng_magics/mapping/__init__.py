"""The mapping workbook: read it (``read``) into plain, checked data (``model``)."""

from __future__ import annotations

from dataeng_magics.mapping.model import FilterSpec, Mapping, SourceSpec, TargetColumn
from dataeng_magics.mapping.read import read_mapping

__all__ = ["FilterSpec", "Mapping", "SourceSpec", "TargetColumn", "read_mapping"]
