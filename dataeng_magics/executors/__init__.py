"""Where approved code runs: local Spark today; remote platforms plug in by name."""

from __future__ import annotations

from dataeng_magics.executors.base import (
    Executor,
    Job,
    JobResult,
    available,
    get_executor,
    register,
)

__all__ = ["Executor", "Job", "JobResult", "available", "get_executor", "register"]
