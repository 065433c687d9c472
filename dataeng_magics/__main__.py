"""``python -m dataeng_magics`` is the CLI (no PATH or shim setup needed)."""

from __future__ import annotations

import sys

from dataeng_magics.cli import main

sys.exit(main())
