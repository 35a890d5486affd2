"""The source directory a training job runs from: this library, staged for upload."""

from __future__ import annotations

import re
import shutil
from importlib import metadata
from pathlib import Path

# The AWS PyTorch images provide these; reinstalling them could replace the image's torch.
IMAGE_PACKAGES = {"torch", "numpy", "pandas"}


def requirements(torch_version: str | None = None) -> str:
    """This library's dependencies minus torch, numpy and pandas (the image provides them),
    each pinned to the version installed here (the versions the definition was built and
    tested with), and, with ``torch_version`` (the image's PyTorch), ``torch==<version>``: pip
    then finds torch satisfied by the image's build (``2.6.0`` matches ``2.6.0+cpu``) and fails
    on a dependency that needs another torch instead of replacing the image's."""
    lines = ["# Installed by SageMaker before the entry point; the PyTorch image provides",
             "# torch, numpy and pandas."]
    for spec in metadata.requires("informer-mlops") or []:
        if ";" in spec:
            continue
        name = re.split(r"[\[<>=~!;\s]", spec.strip(), maxsplit=1)[0]
        if name.lower() not in IMAGE_PACKAGES:
            lines.append(f"{name}=={metadata.version(name)}")
    if torch_version:
        lines.append(f"torch=={torch_version}  # the image's own; never replaced")
    return "\n".join(lines) + "\n"


def stage_source(target: Path, torch_version: str | None = None) -> Path:
    """``informer/`` (with ``conf/``), ``sagemaker_jobs/`` and ``requirements.txt``
    (:func:`requirements` for the image's ``torch_version``)."""
    import informer
    import sagemaker_jobs
    from informer.cli.common import config_dir

    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*")
    shutil.copytree(Path(informer.__file__).parent, target / "informer", ignore=ignore)
    if not (target / "informer" / "conf").is_dir():
        shutil.copytree(config_dir(), target / "conf", ignore=ignore)
    shutil.copytree(Path(sagemaker_jobs.__file__).parent, target / "sagemaker_jobs",
                    ignore=ignore)
    (target / "requirements.txt").write_text(requirements(torch_version))
    return target
