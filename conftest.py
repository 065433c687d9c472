"""Session-wide environment for everything pytest runs, the example notebooks included.

Notebook kernels (nbval) inherit this process's environment when they start, so they
get a throwaway state directory instead of the user's ~/.dataeng_magics. Python tests
get a fresh one per test from tests/conftest.py.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("DATAENG_MAGICS_SPARK_MASTER", "local[2]")
os.environ["DATAENG_MAGICS_HOME"] = tempfile.mkdtemp(prefix="dem-pytest-state-")
