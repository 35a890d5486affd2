"""The notebooks in ``notebooks/``: committed without outputs, and each one executed top to bottom
by nbclient in a fresh kernel, in a working directory of its own, with no AWS credentials and at
the seconds-long size the notebooks pick under ``INFORMER_NOTEBOOK_SMOKE=1`` (``debug=tiny``)."""

from __future__ import annotations

import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO

NOTEBOOK_DIR = REPO / "notebooks"
# name -> the figures (PNG outputs) it shows at least; 03 also shows the dashboard inline
NOTEBOOKS = {"01_train_forecast.ipynb": 7, "02_pipeline.ipynb": 0, "03_mlops.ipynb": 1}
# boto3 finds no credentials: the launcher and pipeline cells take their offline branch
NO_CREDENTIALS = {"AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull,
                  "AWS_EC2_METADATA_DISABLED": "true"}
UNSET = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
         "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
         "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE",
         "INFORMER_MLOPS_HOME", "SAGEMAKER_ROLE_ARN")


def read(name: str) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(notebook)
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [o for cell in notebook.cells for o in cell.get("outputs", [])]


def test_the_notebooks_are_the_three_of_the_lab():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    cells = [c for c in read(name).cells if c.cell_type == "code"]
    assert cells
    dirty = [i for i, c in enumerate(cells) if c.outputs or c.execution_count is not None]
    assert dirty == [], f"{name}: code cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_top_to_bottom(name, tmp_path, ett_dir, monkeypatch):
    monkeypatch.setenv("INFORMER_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("INFORMER_DATA_DIR", str(ett_dir))
    for key, value in NO_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    for key in UNSET:
        monkeypatch.delenv(key, raising=False)
    notebook = read(name)
    # raises CellExecutionError, with the cell and its traceback, on any error
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    shown = outputs(notebook)
    assert not [o for o in shown if o.output_type == "error"]
    figures = [o for o in shown if "image/png" in o.get("data", {})]
    assert len(figures) >= NOTEBOOKS[name]
    if name.startswith("03"):
        assert any("<iframe srcdoc=" in o.get("data", {}).get("text/html", "") for o in shown)
    assert any(tmp_path.iterdir())  # it wrote where it ran, not into the checkout
