"""docs/notebook.ipynb, the API tour, runs top to bottom on a kernel of this interpreter with this checkout's code."""

from __future__ import annotations

import os

import pytest

from helpers.paths import REPO, require_quest

NOTEBOOK = REPO / "docs" / "notebook.ipynb"


@pytest.mark.slow
def test_the_notebook_runs_without_errors() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    require_quest()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit the notebook without outputs"
    # The kernel: this interpreter (jupyter_client runs "python" kernels with sys.executable), this
    # checkout's src first on the path, the test session's cache, and the docs folder as its cwd.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("QUESTLAB_STORE", None)
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute(env=env)  # a cell that raises raises CellExecutionError here, naming the cell
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    outputs = "".join(
        str(o.get("data", o.get("text", ""))) for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    for shown in ("Run('tfidf", "task='quest'", "task='ell'", "report.html"):
        assert shown in outputs
