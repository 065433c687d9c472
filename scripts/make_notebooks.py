"""Regenerate example_notebooks/*.ipynb (outputs empty; cells as a user would write them).

Notebook 01 carries a materialised cell, which depends on the compiler's output; a
test fails with a pointer to this script when the committed one has drifted.

    python scripts/make_notebooks.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parents[1] / "example_notebooks"
MAPPING = "data/northwind/northwind.xlsx"
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def materialised_cell() -> str:
    """Draft and approve the example in a throwaway state dir; return its cell."""
    from dataeng_magics.config import load_settings
    from dataeng_magics.workflow import TransformRequest, TransformSession

    os.chdir(HERE)
    with tempfile.TemporaryDirectory() as home:
        request = TransformRequest(client="NORTHWIND", mapping=Path(MAPPING),
                                   output_dir="out/northwind")  # fmt: skip
        session = TransformSession(request, load_settings(home=home))
        session.draft()
        session.approve("alice")
        return session.materialised_cell()


def notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def onboarding() -> nbformat.NotebookNode:
    return notebook([
        new_markdown_cell(
            "# 01 · Onboard a client interactively\n\n"
            "The `%%transform` cell reads the mapping workbook and the first 100 rows of each "
            "source, drafts a plan and shows the review panel: **Mapping**, **Sample**, "
            "**Plan**, **Preview** (the plan applied to the sample on local Spark), **Code** "
            "and **Chat**. Approve in the panel, or with `%transform approve` below, and the "
            "compiled PySpark is inserted as a cell you can run here or copy into a job."
        ),
        new_code_cell("%load_ext dataeng_magics"),
        new_code_cell(
            f"%%transform --client NORTHWIND --mapping {MAPPING} --output-dir out/northwind\n"
            "Amounts arrive in thousands; exclude cancelled trades."
        ),
        new_markdown_cell(
            "Approving records the reviewer, the time and the plan and code hashes in the "
            "audit log, and inserts the approved code as a new cell below."
        ),
        new_code_cell("%transform approve --reviewer alice"),
        new_markdown_cell(
            "The materialised cell (in a live notebook, approving inserts it; it is included "
            "here so the notebook also runs headless). The guard line ties it to the approved "
            "key and code hash: it refuses to run if its code is edited or the inputs no "
            "longer match. The parameters at the top (paths, output) may change per run."
        ),
        new_code_cell(materialised_cell()),
        new_markdown_cell("The store and the audit log, from the notebook:"),
        new_code_cell("%transform list --client NORTHWIND"),
        new_code_cell("%transform verify"),
    ])


def replay_template() -> nbformat.NotebookNode:
    parameters = new_code_cell(
        'client = "NORTHWIND"\n'
        f'mapping = "{MAPPING}"\n'
        "output_dir = None  # default: out/replay/<client>"
    )
    parameters.metadata["tags"] = ["parameters"]
    return notebook([
        new_markdown_cell(
            "# 02 · Batch replay template\n\n"
            "Seasonal re-runs: one template, many clients. Run it with papermill in replay mode "
            "(no widgets, no LLM): each client's **approved** plan runs; a client without one "
            "fails with *approval required* and nothing runs.\n\n"
            "```bash\n"
            "dataeng-magics replay example_notebooks/02_batch_replay.ipynb "
            "--client NORTHWIND --client ACME\n"
            "```"
        ),
        parameters,
        # After the parameters papermill injects, so each client gets its own folder.
        new_code_cell('output_dir = output_dir or f"out/replay/{client}"'),
        new_code_cell("%load_ext dataeng_magics"),
        new_code_cell(
            "%%transform --client {client} --mapping {mapping} --output-dir {output_dir} --replay"
        ),
    ])


def chat_revision() -> nbformat.NotebookNode:
    return notebook([
        new_markdown_cell(
            "# 03 · Revise a plan through chat\n\n"
            "In the panel's **Chat** tab you write feedback in plain English; the planner "
            "revises the plan (never the code) and shows what changed. With no LLM configured "
            "the offline planner understands the rule vocabulary aimed at a column "
            "(`CURRENCY: default 'USD'`) and filters (`filter TRADES: Qty > 0`), and says "
            "plainly what it did not understand. The same chat is available from code:"
        ),
        new_code_cell("%load_ext dataeng_magics"),
        new_code_cell(
            f"%%transform --client NORTHWIND-Q4 --mapping {MAPPING} --output-dir out/northwind-q4"
        ),
        new_code_cell("%transform revise \"CURRENCY: trim, upper, default 'USD'\""),
        new_code_cell("%transform revise \"filter TRADES: Qty > 0\""),
        new_code_cell("%transform revise \"make the amounts prettier\""),
        new_code_cell("%transform approve --reviewer bob"),
        new_code_cell("%transform run"),
        new_code_cell("%transform audit --client NORTHWIND-Q4"),
    ])


def main() -> None:
    for name, build in [("01_onboard_client", onboarding), ("02_batch_replay", replay_template),
                        ("03_revise_with_chat", chat_revision)]:  # fmt: skip
        nb = build()
        for index, cell in enumerate(nb.cells):  # stable ids: a regenerated notebook diffs
            cell.id = f"{name[:2]}-{index:02d}"  # only where its content changed
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(f"wrote {HERE / name}.ipynb")


if __name__ == "__main__":
    main()
