"""Atomic file writes: a temp file in the same directory, then a rename.

The temp file's private mode (``mkstemp`` creates it 0600) is replaced before the rename: a new
file gets ``0666 & ~umask``, like any file the process creates with ``open``; a file that is
replaced keeps its permission bits. A directory built in a temp dir (``mkdtemp``: 0700) gets
``0777 & ~umask`` when :func:`replace_path` moves it into place.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

from informer.errors import InformerError

_UMASK_LOCK = threading.Lock()


def umask() -> int:
    """The process's umask (``/proc/self/status`` where it is shown, else set and restore)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _mode_for(target: Path, fresh: int) -> int:
    """``target``'s permission bits when it exists (a file), else ``fresh & ~umask``."""
    try:
        current = target.lstat()
    except OSError:
        return fresh & ~umask()
    if stat.S_ISREG(current.st_mode):
        return stat.S_IMODE(current.st_mode)
    return fresh & ~umask()


def atomic_write_text(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), _mode_for(path, 0o666))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def replace_path(source: str | Path, target: str | Path) -> Path:
    """Move ``source`` over ``target`` (a file or a whole directory) with renames only; a
    directory gets ``0777 & ~umask`` (a temp directory is private until then)."""
    source, target = Path(source), Path(target)
    if source.is_dir() and not source.is_symlink():
        os.chmod(source, 0o777 & ~umask())
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(source, target)
    return target


def check_writable(path: str | Path, field: str) -> Path:
    """Check, before any work, that a file can be written at ``path`` (its folder may not exist
    yet): :class:`InformerError` naming ``field`` otherwise. Creates nothing that stays."""
    path = Path(path)
    if path.is_dir():
        raise InformerError(f"{field}: {path} is a directory; expected a file path")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise InformerError(f"{field}: cannot write {path}: {folder} is not a directory; "
                            f"expected a path in a writable directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    except OSError as err:
        raise InformerError(f"{field}: cannot write {path} ({err.strerror or err}); expected "
                            f"a path in a writable directory") from err
    os.close(fd)
    os.unlink(probe)
    return path
