"""dataeng_magics: onboard client data from a notebook.

Importing this package is cheap on purpose: ``%load_ext dataeng_magics`` must not
pull in pyspark, pandas or langchain, so the magics module is imported only when
IPython asks for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataeng_magics.batches import batch

__version__ = "0.1.0"
__all__ = ["__version__", "batch", "load_ipython_extension", "unload_ipython_extension"]


def __getattr__(name: str) -> Any:
    """``dataeng_magics.batch(...)`` imports the batch runner on first use only."""
    if name == "batch":
        from dataeng_magics.batches import batch

        return batch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    from dataeng_magics._magics import load_ipython_extension as _load

    _load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from dataeng_magics._magics import unload_ipython_extension as _unload

    _unload(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where ``jupyter labextension develop --overwrite .`` finds the built extension."""
    return [{"src": "labextension", "dest": "dataeng-magics"}]
