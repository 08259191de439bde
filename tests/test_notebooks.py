"""Every notebook is a py:percent file paired with an output-free .ipynb holding the same cells."""

from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("*.py"))


def _cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_every_notebook_is_paired():
    assert SCRIPTS, "no notebooks found"
    assert {p.stem for p in SCRIPTS} == {p.stem for p in NOTEBOOKS.glob("*.ipynb")}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_ipynb_is_in_sync_and_has_no_outputs(script):
    ipynb = jupytext.read(script.with_suffix(".ipynb"))
    assert _cells(jupytext.read(script)) == _cells(ipynb), f"run: jupytext --sync {script}"
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"{script.stem} has outputs"
    assert "ipynb" in ipynb.metadata["jupytext"]["formats"] and "py:percent" in ipynb.metadata["jupytext"]["formats"]
