"""Which source formats the platform that will run the code can read, known at draft.

Spark's XML reader is built in from Apache Spark 4.0 and Databricks Runtime 14.3; a
platform on an older Spark (Fabric Runtime 1.3, Spark 3.5) would fail mid-run, so the
draft refuses the source instead, naming the platform and its version. The version
comes from the ``platform_spark_version`` setting when given, else from the platform
itself: the installed pyspark (local), the notebook's runtime, or the Spark Connect
server. Fabric's version is only known once a session runs, so it needs the setting.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from dataeng_magics.errors import SourceError

if TYPE_CHECKING:
    from dataeng_magics.config import Settings
    from dataeng_magics.mapping.model import Mapping

_DATABRICKS = re.compile(r"^(?:dbr|databricks(?:\s*runtime)?)[\s-]*(\d+)\.(\d+)")
_SPARK = re.compile(r"^(?:spark[\s-]*)?(\d+)\.(\d+)")


def reads_xml(version: str) -> bool:
    """True for Apache Spark 4.0+ (``4.0.1``) and Databricks Runtime 14.3+ (``dbr 15.4``)."""
    text = version.strip().lower()
    databricks = _DATABRICKS.match(text)
    if databricks:
        return (int(databricks[1]), int(databricks[2])) >= (14, 3)
    spark = _SPARK.match(text)
    return bool(spark) and int(spark[1]) >= 4  # type: ignore[index]


def platform_version(platform: str, settings: Settings) -> str | None:
    """The Spark version (or ``databricks X.Y``) the platform runs, or None if unknown."""
    if settings.platform_spark_version:
        return settings.platform_spark_version
    from dataeng_magics.run.executors.registry import resolve_platform

    name = resolve_platform(platform)
    if name == "local":
        import pyspark

        return str(pyspark.__version__)
    if name == "notebook":
        runtime = os.environ.get("DATABRICKS_RUNTIME_VERSION")
        if runtime:
            return f"databricks {runtime}"
        return _session_version(None)
    if name == "connect":
        return _session_version(settings)
    return None


def _session_version(settings: Settings | None) -> str | None:
    """The version the running session reports (a Spark Connect server answers it)."""
    try:
        if settings is None:
            from pyspark.sql import SparkSession

            session: Any = SparkSession.getActiveSession()
        else:
            from dataeng_magics.run.executors import get_executor

            session = get_executor("connect", settings=settings).session()  # type: ignore[attr-defined]
        return str(session.version) if session is not None else None
    except Exception:  # unreachable server, no session: unknown, and said so
        return None


def check_platform(mapping: Mapping, platform: str, settings: Settings) -> None:
    """Refuse, before anything is drafted, a source the platform's Spark cannot read."""
    xml = [spec for spec in mapping.sources.values() if spec.format == "xml"]
    if not xml:
        return
    version = platform_version(platform, settings)
    spec = xml[0]
    if version is None:
        raise SourceError(
            f"source {spec.name!r} is XML, and the Spark version of platform {platform!r} "
            "is not known before it runs",
            hint="Set platform_spark_version to the platform's Spark (for example 4.0 for "
            "Fabric Runtime 2.0; 3.5 for Runtime 1.3, which has no XML reader)",
            file=mapping.file,
            sheet=spec.sheet,
            row=spec.row,
        )
    if not reads_xml(version):
        raise SourceError(
            f"source {spec.name!r} is XML, which platform {platform!r} (Spark {version}) "
            "cannot read: Spark's XML reader is built in from Spark 4.0 and Databricks "
            "Runtime 14.3",
            hint="Run it on a platform with Spark 4 (local, Fabric Runtime 2.0, Databricks "
            "Runtime 14.3 or later), or have the file delivered as CSV or JSON Lines",
            file=mapping.file,
            sheet=spec.sheet,
            row=spec.row,
        )
