"""Finding executors by name and giving each its own settings: unknown names, names two
distributions claim, missing packages, and platform tables from every settings source.

Plug-ins here are real distributions: a ``*.dist-info`` folder with an
``entry_points.txt`` in a directory on ``sys.path``, found by importlib.metadata as pip's
installs are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from dataeng_magics.config import load_settings
from dataeng_magics.errors import ConfigError, MissingDependency
from dataeng_magics.run.executors import get_executor, registry
from dataeng_magics.run.executors.base import ENTRY_POINT_GROUP
from dataeng_magics.run.executors.connect import ConnectExecutor
from dataeng_magics.run.executors.fabric import FabricExecutor
from dataeng_magics.run.executors.registry import missing_dependency

#: A plug-in executor with settings of its own, as a third party would write it.
ACME = """
from pydantic import BaseModel, ConfigDict, Field

from dataeng_magics.run.executors import Executor, JobResult


class AcmeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cluster: str = "default"
    workers: int = Field(2, ge=1)


class AcmeExecutor(Executor):
    name = "{name}"
    Options = AcmeOptions

    def __init__(self, cluster: str = "default", workers: int = 2) -> None:
        self.cluster, self.workers = cluster, workers

    def location(self):
        return {{"cluster": self.cluster, "workers": str(self.workers)}}

    def run(self, job):
        return JobResult(self.name, {{}}, 0.0)
"""


def install(
    site: Path,
    dist: str,
    executors: dict[str, str],
    modules: dict[str, str] | None = None,
    requires: list[str] | None = None,
    extras: list[str] | None = None,
) -> None:
    """Write an installed distribution into ``site``: metadata, entry points, modules."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    metadata = ["Metadata-Version: 2.1", f"Name: {dist}", "Version: 1.0"]
    metadata += [f"Provides-Extra: {extra}" for extra in extras or []]
    metadata += [f"Requires-Dist: {req}" for req in requires or []]
    (info / "METADATA").write_text("\n".join(metadata) + "\n")
    points = [f"[{ENTRY_POINT_GROUP}]", *(f"{k} = {v}" for k, v in executors.items())]
    (info / "entry_points.txt").write_text("\n".join(points) + "\n")
    for module, source in (modules or {}).items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh directory on sys.path, and a registry that forgets what it loaded."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    return folder


def test_unknown_platform_lists_what_is_available() -> None:
    with pytest.raises(ConfigError) as err:
        get_executor("spark-on-mars")
    message = str(err.value)
    assert "unknown platform 'spark-on-mars'" in message
    assert "Available: auto, connect, fabric, local, notebook" in message


def test_two_distributions_claiming_one_name_are_refused(site: Path) -> None:
    install(site, "acme-executors", {"twin": "acme_twin:AcmeExecutor"})
    install(site, "rival-executors", {"twin": "rival_twin:RivalExecutor"})
    with pytest.raises(ConfigError) as err:
        get_executor("twin")
    message = str(err.value)
    assert "several executors are registered as 'twin'" in message
    assert "acme_twin:AcmeExecutor (from acme-executors)" in message
    assert "rival_twin:RivalExecutor (from rival-executors)" in message


def test_a_plugins_missing_package_names_its_own_extra(site: Path) -> None:
    install(
        site,
        "acme-gpu",
        {"acme-gpu": "acme_gpu_executor:AcmeExecutor"},
        modules={"acme_gpu_executor": "import acme_cuda_sdk  # not installed\n"},
        requires=["pydantic>=2", 'acme-cuda-sdk>=3; extra == "cuda"'],
        extras=["cuda"],
    )
    with pytest.raises(MissingDependency) as err:
        get_executor("acme-gpu")
    assert err.value.fields["package"] == "acme_cuda_sdk"
    assert "the 'acme-gpu' platform needs the 'acme_cuda_sdk' package" in str(err.value)
    assert 'pip install "acme-gpu[cuda]"' in str(err.value)


@pytest.mark.parametrize(
    ("platform", "module", "install_command"),
    [
        # pyspark is a core dependency: no [local] extra exists, so name the requirement
        ("local", "pyspark", "pip install {pyspark}"),
        ("notebook", "pyspark.sql", "pip install {pyspark}"),
        ("connect", "grpc", 'pip install "dataeng-magics[connect]"'),
        ("fabric", "azure.identity", 'pip install "dataeng-magics[fabric]"'),
        ("fabric", "requests", 'pip install "dataeng-magics[fabric]"'),
    ],
)
def test_each_built_in_platform_names_an_extra_that_exists(
    platform: str, module: str, install_command: str
) -> None:
    """Our own distribution's metadata decides; `[local]` was suggested, and is none."""
    (ep,) = [
        ep
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if ep.name == platform and ep.dist is not None and ep.dist.name == "dataeng-magics"
    ]
    assert ep.dist is not None
    pyspark = next(r for r in ep.dist.requires or [] if r.startswith("pyspark") and ";" not in r)
    error = missing_dependency(ep, ImportError(f"No module named {module!r}", name=module))
    assert f"Install it with: {install_command.format(pyspark=json.dumps(pyspark))}" in str(error)
    assert "[local]" not in str(error) and "[notebook]" not in str(error)


def test_built_in_executors_name_their_extra_when_their_sdk_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dataeng_magics.run.executors.local import spark_session

    monkeypatch.setitem(sys.modules, "pyspark.sql.connect.session", None)
    with pytest.raises(MissingDependency, match=r"dataeng-magics\[connect\]"):
        ConnectExecutor("sc://127.0.0.1:1").session()
    monkeypatch.setitem(sys.modules, "azure.identity", None)
    with pytest.raises(MissingDependency, match=r"dataeng-magics\[fabric\]"):
        FabricExecutor("ws", "lh")
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(MissingDependency) as err:
        spark_session()
    assert "[local]" not in str(err.value) and "pyspark is one of its dependencies" in str(
        err.value
    )


def test_a_plugin_declares_its_own_settings_table(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(site, "acme-exec", {"acme": "acme_exec:AcmeExecutor"},
            modules={"acme_exec": ACME.format(name="acme")})  # fmt: skip
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.dataeng_magics]\nplatform = "acme"\n'
        '[tool.dataeng_magics.acme]\ncluster = "gpu-pool"\nworkers = 8\n'
    )
    monkeypatch.chdir(project)
    executor = get_executor("acme", settings=load_settings())
    assert executor.location() == {"cluster": "gpu-pool", "workers": "8"}
    # the environment's JSON replaces the table; keyword arguments win over both
    monkeypatch.setenv("DATAENG_MAGICS_ACME", json.dumps({"workers": 3}))
    assert get_executor("acme", settings=load_settings()).location()["workers"] == "3"
    executor = get_executor("acme", settings=load_settings(), cluster="adhoc")
    assert executor.location() == {"cluster": "adhoc", "workers": "3"}


def test_a_bad_platform_setting_names_the_setting_and_where_it_came_from(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(site, "acme-exec2", {"acme2": "acme_exec2:AcmeExecutor"},
            modules={"acme_exec2": ACME.format(name="acme2")})  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.dataeng_magics.acme2]\nworkers = 0\n")
    settings = load_settings()  # checked when the executor is loaded, not before
    with pytest.raises(ConfigError) as err:
        get_executor("acme2", settings=settings)
    message = str(err.value)
    assert "setting 'acme2.workers' in [tool.dataeng_magics] in pyproject.toml" in message
    assert "greater than or equal to 1" in message and "settings: cluster, workers" in message

    monkeypatch.setenv("DATAENG_MAGICS_CONNECT", '{"url": "sc://h:15002", "retry_second": 5}')
    with pytest.raises(ConfigError) as err:
        get_executor("connect", settings=load_settings())
    assert "setting 'connect.retry_second' in DATAENG_MAGICS_CONNECT" in str(err.value)
    assert "retry_seconds" in str(err.value)  # the hint lists the real names

    with pytest.raises(ConfigError, match="unknown setting 'acme3' in explicit settings"):
        load_settings(acme3={"workers": 2})
    with pytest.raises(ConfigError, match=r"'fabric' .* must be a table"):
        load_settings(fabric="ws-1")


def test_built_in_platform_tables_from_pyproject_env_and_keywords(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README, "Where it runs": the same tables as before the options moved."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dataeng_magics]\nplatform = "connect"\n'
        '[tool.dataeng_magics.connect]\nurl = "sc://spark.internal:15002"\nretry_seconds = 5\n'
        '[tool.dataeng_magics.fabric]\nworkspace_id = "ws-1"\nlakehouse_id = "lh-2"\n'
    )
    settings = load_settings()
    connect = get_executor(settings.platform, settings=settings)
    assert isinstance(connect, ConnectExecutor)
    assert (connect.url, connect.retry_seconds) == ("sc://spark.internal:15002", 5)
    fabric = get_executor("fabric", settings=settings, credential=object())
    assert fabric.location() == {"workspace_id": "ws-1", "lakehouse_id": "lh-2"}
    monkeypatch.setenv("DATAENG_MAGICS_FABRIC", '{"workspace_id": "ws-9", "lakehouse_id": "x"}')
    fabric = get_executor("fabric", settings=load_settings(), credential=object())
    assert fabric.location()["workspace_id"] == "ws-9"
    explicit = load_settings(connect={"url": "sc://other:15002"})
    assert get_executor("connect", settings=explicit).location() == {"url": "sc://other:15002"}


def test_loading_settings_imports_no_executor(tmp_path: Path) -> None:
    """Platform tables are only checked when their executor loads: no SDK on the way."""
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dataeng_magics.connect]\nurl = "sc://h:15002"\n'
        '[tool.dataeng_magics.fabric]\nworkspace_id = "ws"\n'
    )
    script = (
        "import sys\n"
        "from dataeng_magics.config import load_settings\n"
        "s = load_settings()\n"
        "assert s.platforms['connect'] == {'url': 'sc://h:15002'}, s.platforms\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pyspark', 'py4j', 'grpc',"
        " 'requests', 'azure', 'dataeng_magics.run.executors.'))))\n"
    )
    env = {**os.environ, "DATAENG_MAGICS_FABRIC": '{"lakehouse_id": "lh"}'}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(
        ["dataeng_magics.run.executors.base", "dataeng_magics.run.executors.registry"]
    )


def test_a_notebook_shows_run_progress_as_a_bar_not_on_stderr() -> None:
    """In a kernel the progress is a display updated in place (a neutral background),
    never a stderr line (which a notebook shows on the error colour)."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from dataeng_magics.run.executors.base import HtmlProgress, JobStatus

    created = not InteractiveShell.initialized()
    InteractiveShell.instance()
    try:
        with capture_output() as shown:
            progress = HtmlProgress("local")
            progress(JobStatus("running", 0.5, "1/2 tables written"))
            progress(JobStatus("running", 0.5, "1/2 tables written"))  # unchanged: not re-sent
            progress(JobStatus("succeeded", 1.0, "done"))
    finally:
        if created:  # leave no singleton behind: other tests make their own shell class
            InteractiveShell.clear_instance()
    assert shown.stderr == "" and shown.stdout == ""
    first, last = (output.data for output in shown.outputs)
    assert first["text/plain"] == "[local] running  50%: 1/2 tables written"
    assert "<progress max='1' value='0.500'" in first["text/html"]
    assert last["text/plain"] == "[local] succeeded 100%: done"
    assert "<progress" not in last["text/html"]  # done: the bar gives way to the outcome
