"""Where approved code runs: local Spark, the notebook's Spark, Spark Connect, Fabric."""

from __future__ import annotations

from dataeng_magics.run.executors.base import (
    Executor,
    Job,
    JobResult,
    JobStatus,
    RemoteExecutor,
    TextProgress,
)
from dataeng_magics.run.executors.registry import available, get_executor, register

__all__ = [
    "Executor",
    "Job",
    "JobResult",
    "JobStatus",
    "RemoteExecutor",
    "TextProgress",
    "available",
    "get_executor",
    "register",
]
