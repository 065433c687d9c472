"""A real Jupyter server (JupyterLab, Notebook 7 and our server extension, as installed)
for the REST and browser tests: 127.0.0.1, a free port, a random token, a private root
directory, state directory (``DATAENG_MAGICS_HOME``) and Jupyter config/runtime dirs.

Its kernels are shut down through the REST API, then the server is stopped by its own
PID (SIGTERM, then SIGKILL if it hangs), never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spark_servers import free_port

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "example_notebooks"


@dataclass
class JupyterServer:
    url: str  # http://127.0.0.1:PORT, no trailing slash
    token: str
    root: Path
    home: Path  # DATAENG_MAGICS_HOME of the server and its kernels
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = "default",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One HTTP request (``body``: JSON-able, or raw bytes); returns (status, parsed JSON or
        text). ``token=None`` sends no token."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}/{path.lstrip('/')}", data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            secret = self.token if token == "default" else token
            request.add_header("Authorization", f"token {secret}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        text = raw.decode("utf-8", errors="replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def page(self, path: str) -> str:
        """A front-end URL carrying the token (Lab keeps it in a cookie afterwards)."""
        sep = "&" if "?" in path else "?"
        return f"{self.url}/{path.lstrip('/')}{sep}token={self.token}"

    def shutdown_kernels(self) -> None:
        status, kernels = self.request("GET", "api/kernels")
        if status == 200:
            for kernel in kernels:
                self.request("DELETE", f"api/kernels/{kernel['id']}")


def copy_examples(root: Path) -> Path:
    """The example notebooks and their data, without outputs a run left behind."""
    target = root / "example_notebooks"
    shutil.copytree(
        EXAMPLES, target, ignore=shutil.ignore_patterns("out", ".ipynb_checkpoints", "__pycache__")
    )
    return target


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def jupyter_server(workdir: Path, *, app: str = "jupyterlab") -> Iterator[JupyterServer]:
    """Start ``python -m <app>`` (jupyterlab, or jupyter_server for the REST tests)."""
    root, home, jupyter = workdir / "root", workdir / "state", workdir / "jupyter"
    for folder in (root, home, jupyter / "config", jupyter / "runtime", jupyter / "lab"):
        folder.mkdir(parents=True, exist_ok=True)
    # No news or update checks (no internet here), so no toast covers the page.
    notification = jupyter / "lab" / "settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    port, token = free_port(), secrets.token_hex(16)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATAENG_MAGICS_", "JUPYTER", "PYTEST_"))
    }
    env.update(
        DATAENG_MAGICS_HOME=str(home),
        DATAENG_MAGICS_SPARK_MASTER="local[2]",
        SPARK_LOCAL_IP="127.0.0.1",
        JUPYTER_CONFIG_DIR=str(jupyter / "config"),  # no user config (~/.jupyter)
        JUPYTER_RUNTIME_DIR=str(jupyter / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(jupyter / "lab" / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(jupyter / "lab" / "workspaces"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    args = [
        sys.executable,
        "-m",
        app,
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.allow_root=True",
        "--ServerApp.open_browser=False",
    ]
    if app == "jupyterlab":
        args += [
            "--no-browser",
            "--allow-root",
            "--LabApp.news_url=None",  # nothing from the internet
            "--LabApp.extension_manager=readonly",
        ]
    log = workdir / f"{app}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = JupyterServer(f"http://127.0.0.1:{port}", token, root, home, env, process, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-4000:]
                raise RuntimeError(f"{app} exited early:\n{tail}")
            with contextlib.suppress(OSError):
                if server.request("GET", "api/status")[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{app} not up after 90 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.3)
        yield server
    finally:
        with contextlib.suppress(OSError):
            if process.poll() is None:
                server.shutdown_kernels()
        _stop(process)
