"""Page helpers shared by the JupyterLab and Notebook 7 scenarios."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import nbformat
from jupyter_servers import JupyterServer, copy_examples

NOTEBOOK = "01_onboard_client.ipynb"
TRANSFORM_CELL = ".jp-Notebook .jp-Cell:has(.dem-cm-transform-line)"
APPROVED_CELL = ".jp-Notebook .jp-Cell.dem-materialised"
MATERIALISED_TITLE = "The materialised cell (in a live notebook"


def prepare_examples(server: JupyterServer) -> Path:
    """Copy the examples into the server's root; notebook 01 without its headless-only
    cells (``%transform approve`` and the pre-materialised cell), so the approved cell
    the scenario checks is the one the extension inserts."""
    examples = copy_examples(server.root)
    path = examples / NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    nb.cells = [
        cell
        for cell in nb.cells
        if not cell.source.startswith(("%%transform_run", "%transform approve"))
        and not cell.source.startswith(MATERIALISED_TITLE)
    ]
    nbformat.write(nb, path)
    return examples


def wait_kernel_idle(server: JupyterServer, seconds: float = 240) -> None:
    """Until every kernel of the server is idle (after a start, or a run)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, kernels = server.request("GET", "api/kernels")
        if status == 200 and kernels and all(k["execution_state"] == "idle" for k in kernels):
            return
        time.sleep(0.5)
    raise AssertionError(f"kernels not idle after {seconds} s: {kernels}")


def open_notebook(page: Any, server: JupyterServer, path: str) -> None:
    page.goto(server.page(path))
    page.locator(".jp-Notebook .jp-CodeCell .cm-content").first.wait_for(timeout=60_000)
    time.sleep(1)  # the kernel is requested once the notebook has loaded
    wait_kernel_idle(server)


def menu(page: Any, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=top).first.click()
    page.locator(".lm-Menu-itemLabel").filter(has_text=item).first.click()


def run_all(page: Any, server: JupyterServer) -> None:
    menu(page, "Run", "Run All Cells")
    time.sleep(1)
    wait_kernel_idle(server)


def review_panel(page: Any) -> Any:
    return page.locator(f"{TRANSFORM_CELL} .jp-OutputArea-output").filter(
        has=page.locator(".widget-tab")
    )


def open_tab(page: Any, name: str) -> None:
    review_panel(page).locator(".lm-TabBar-tab", has_text=name).click()


def notebook_cells(page: Any) -> list[str]:
    """Each cell's class list, in notebook order."""
    return list(
        page.eval_on_selector_all(".jp-Notebook .jp-Cell", "cells => cells.map(c => c.className)")
    )


def approve(page: Any, reviewer: str) -> None:
    panel = review_panel(page)
    field = panel.locator(".widget-text").filter(has_text="Reviewer").locator("input")
    field.fill(reviewer)
    field.press("Tab")  # commits the value to the kernel before the click
    panel.locator("button", has_text="Approve").click()


def reviewer_field(page: Any) -> Any:
    return review_panel(page).locator(".widget-text").filter(has_text="Reviewer").locator("input")


def transform_prompt(page: Any) -> str:
    """The %%transform cell's execution prompt: it changes when the cell runs again."""
    return str(page.locator(TRANSFORM_CELL).locator(".jp-InputPrompt").inner_text()).strip()


def transform_ran_again(page: Any, server: JupyterServer, prompt: str, cells: int) -> bool:
    """Whether the %%transform cell ran again (or cells were added) since ``prompt`` and
    ``cells`` were read: what a notebook shortcut would have done."""
    time.sleep(1.5)  # a shortcut acts at once; give its execution time to show
    wait_kernel_idle(server)
    return transform_prompt(page) != prompt or len(notebook_cells(page)) != cells


def box_metrics(locator: Any) -> dict[str, float]:
    """Scroll and client sizes of an element, as the browser laid it out."""
    return dict(
        locator.evaluate(
            "e => ({scrollWidth: e.scrollWidth, clientWidth: e.clientWidth,"
            " scrollHeight: e.scrollHeight, clientHeight: e.clientHeight})"
        )
    )
