"""The source directory a training job runs from: this library, staged for upload."""

from __future__ import annotations

import shutil
from importlib import metadata
from pathlib import Path

# The AWS PyTorch images provide these; reinstalling them could replace the image's torch.
IMAGE_PACKAGES = {"torch", "numpy", "pandas"}


def requirements() -> str:
    """This library's dependencies minus torch, numpy and pandas (the image provides them)."""
    skip = IMAGE_PACKAGES
    lines = ["# Installed by SageMaker before the entry point; the PyTorch image provides",
             "# torch, numpy and pandas."]
    for spec in metadata.requires("informer-mlops") or []:
        name = spec.split(";")[0].strip()
        base = name.split("[")[0].split("=")[0].split(">")[0].split("<")[0].split("~")[0]
        if ";" not in spec and base.strip().lower() not in skip:
            lines.append(name)
    return "\n".join(lines) + "\n"


def stage_source(target: Path) -> Path:
    """``informer/`` (with ``conf/``), ``sagemaker_jobs/`` and ``requirements.txt``."""
    import informer
    import sagemaker_jobs
    from informer.cli.common import config_dir

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    shutil.copytree(Path(informer.__file__).parent, target / "informer", ignore=ignore)
    if not (target / "informer" / "conf").is_dir():
        shutil.copytree(config_dir(), target / "conf", ignore=ignore)
    shutil.copytree(Path(sagemaker_jobs.__file__).parent, target / "sagemaker_jobs",
                    ignore=ignore)
    (target / "requirements.txt").write_text(requirements())
    return target
