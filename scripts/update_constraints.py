"""Regenerate the test environment's pins: ``python3 scripts/update_constraints.py``.

Resolves (``pip install --dry-run --ignore-installed --report``: nothing is installed,
nothing is built but the project's metadata) the newest versions that pyproject.toml
allows and writes

- constraints/test.txt: every package ``pip install -e ".[dev]"`` installs, pinned;
- constraints/ipython8.txt: the newest IPython 8 and what it needs beyond test.txt,
  which scripts/test.sh installs with ``--no-deps`` into .cache/ipython8 for a second
  type check and run of the magics tests.

The pins hold for the Python and platform this runs on (CI: CPython 3.11, Linux x86-64).
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "constraints"
IPYTHON8 = "ipython>=8.12,<9"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def resolve(requirements: list[str], constraints: list[str] | None = None) -> dict[str, str]:
    """name -> version of everything pip would install for ``requirements``."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pins = Path(tmp) / "constraints.txt"
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--dry-run"]
        command += ["--ignore-installed", "--report", str(report)]
        if constraints is not None:
            pins.write_text("".join(line + "\n" for line in constraints))
            command += ["-c", str(pins)]
        subprocess.run([*command, *requirements], check=True, cwd=ROOT)
        installs = json.loads(report.read_text())["install"]
    return {canonical(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}


def header(what: str) -> str:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return (
        f"# {what}\n"
        f"# Resolved with {python} on {sys.platform} {platform.machine()}; regenerate with\n"
        "#   python3 scripts/update_constraints.py\n"
        "# (the newest versions pyproject.toml allows; commit the result with the change\n"
        "# that needs it).\n"
    )


def main() -> None:
    test = resolve([".[dev]"])
    test.pop("dataeng-magics")
    pins = [f"{name}=={version}" for name, version in sorted(test.items())]
    OUT.mkdir(exist_ok=True)
    (OUT / "test.txt").write_text(
        header(
            'Pins for the test environment: scripts/test.sh runs pip install -c this -e ".[dev]".'
        )
        + "\n".join(pins)
        + "\n"
    )
    shared = [pin for pin in pins if not pin.startswith("ipython==")]
    ipython8 = resolve([IPYTHON8], shared)
    extra = {name: v for name, v in ipython8.items() if test.get(name) != v}
    (OUT / "ipython8.txt").write_text(
        header(
            "IPython 8 and what it needs beyond test.txt: scripts/test.sh installs these\n"
            "# with --no-deps into .cache/ipython8, which goes first on PYTHONPATH."
        )
        + "".join(f"{name}=={version}\n" for name, version in sorted(extra.items()))
    )


if __name__ == "__main__":
    main()
