"""A registered version's ``model.tar.gz`` unpacked where ``informer-eval`` and
``informer-forecast`` read it (``models/<group>/v<version>/``)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def unpack_model(model_tar: Path, target: Path) -> Path:
    """The artifact of ``model.tar.gz`` at ``target``, replaced in one rename."""
    from informer.files import replace_path
    from mlops.local.client import safe_extract

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        safe_extract(model_tar, Path(tmp) / "model")
        replace_path(Path(tmp) / "model", target)
    return target
