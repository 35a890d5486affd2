"""The model directory SageMaker tars into ``model.tar.gz``: ready for the PyTorch serving
container without a repack step.

Layout: the artifact files at the root (``weights.pt``, ``config.json``, ``manifest.json``) and
``code/`` with ``inference.py`` (the handlers), ``requirements.txt`` and a copy of the
``informer`` package without its Lightning, Hydra and plotting modules.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import informer
from informer.files import replace_path

# Not needed to serve a model (and they import Lightning, Hydra or matplotlib).
EXCLUDED = ("cli", "conf", "module.py", "plots.py", "data/datamodule.py", "__pycache__")
# The AWS PyTorch inference images ship torch, numpy and pandas; these lines only check them.
REQUIREMENTS = """\
# informer inference needs torch (from the image), numpy and pandas only.
numpy>=1.24
pandas>=2.0
"""
HANDLERS = Path(__file__).resolve().parent / "inference.py"


def _ignore(root: Path):
    excluded = {root / name for name in EXCLUDED}

    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        return {n for n in names if here / n in excluded or n == "__pycache__"
                or n.endswith((".pyc", ".pyo"))}

    return ignore


def write_code_dir(target: Path) -> Path:
    """``code/``: handlers, requirements and the serving subset of ``informer``."""
    target.mkdir(parents=True, exist_ok=True)
    package = Path(informer.__file__).resolve().parent
    shutil.copytree(package, target / "informer", ignore=_ignore(package))
    shutil.copy2(HANDLERS, target / "inference.py")
    (target / "requirements.txt").write_text(REQUIREMENTS)
    return target


def package_model(artifact: Path, model_dir: Path) -> Path:
    """Fill ``model_dir`` (which may be a mount point, so it is never replaced itself) with the
    artifact and ``code/``. Everything is staged next to it first; the manifest moves last, so
    a reader never sees a manifest without the files it lists."""
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    try:
        for item in artifact.iterdir():
            shutil.copy2(item, staging / item.name)
        write_code_dir(staging / "code")
        manifest = "manifest.json"
        for item in sorted(staging.iterdir(), key=lambda p: p.name == manifest):
            replace_path(item, model_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_dir
