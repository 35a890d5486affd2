"""The network of an earlier git revision, importable next to the current one (for A/B timing).

``baseline_informer("35fa01d")`` reads ``informer/nn/*.py`` of that revision with ``git show``
(read-only), writes them to a temporary package ``informer_baseline_<rev>.nn`` and returns its
``Informer`` class; the rest (config, data) is the current code.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def baseline_informer(rev: str) -> type:
    """``Informer`` as of git revision ``rev``."""
    package = f"informer_baseline_{re.sub(r'[^0-9A-Za-z]', '_', rev)}"
    target = Path(tempfile.mkdtemp(prefix="informer-baseline-")) / package
    (target / "nn").mkdir(parents=True)
    (target / "__init__.py").write_text("")
    for path in _git("ls-tree", "--name-only", rev, "informer/nn/").split():
        source = _git("show", f"{rev}:{path}").replace("informer.nn", f"{package}.nn")
        (target / "nn" / Path(path).name).write_text(source)
    sys.path.insert(0, str(target.parent))
    return importlib.import_module(f"{package}.nn").Informer
