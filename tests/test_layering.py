"""The direction of imports: the network and the forecasting path run in an inference
container without Lightning, Hydra, SageMaker or ``mlops``; ``sagemaker_jobs`` never imports
``mlops``; and no package has an import circle (a module-level or a function-level import)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("informer", "sagemaker_jobs", "mlops")
# what the inference container's code path imports: the network, the artifact, the forecaster,
# the serving handlers, the Batch Transform
SERVING = ("informer.nn", "informer.artifact", "informer.forecast", "sagemaker_jobs.inference",
           "sagemaker_jobs.serve", "sagemaker_jobs.transform")
NOT_IN_SERVING = ("lightning", "pytorch_lightning", "hydra", "omegaconf", "sagemaker", "mlops",
                  "boto3")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The modules an ``import`` or ``from ... import`` anywhere in ``path`` names: with
    ``from a import b``, ``a.b`` when that is a module of ``modules``, else ``a``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                names.add(sub if sub in modules else node.module)
    return names


def graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports, less its own packages (a submodule reading
    its package's ``__init__``, which Python has run first, is no circle)."""
    files = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    return {name: {m for m in imports_of(path, set(files))
                   if m in files and m != name and not name.startswith(m + ".")}
            for name, path in files.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each import circle once, as the path from its smallest module back to it."""
    found = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in sorted(edges[node]):
            if nxt == start:
                found.append(path + [start])
            elif nxt > start and nxt not in path:
                walk(start, nxt, path + [nxt])

    for start in sorted(edges):
        walk(start, start, [start])
    return found


def test_no_package_has_an_import_circle():
    assert circles(graph()) == []


def test_a_circle_is_seen():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_sagemaker_jobs_never_imports_mlops():
    edges = graph()
    offenders = {name: sorted(m for m in deps if m.split(".")[0] == "mlops")
                 for name, deps in edges.items() if name.startswith("sagemaker_jobs")}
    assert {k: v for k, v in offenders.items() if v} == {}
    # the scan reads the imports (a sagemaker_jobs module imports another one)
    assert "sagemaker_jobs.container" in edges["sagemaker_jobs.train"]


@pytest.mark.parametrize("module", SERVING)
def test_the_serving_path_imports_no_training_or_aws_framework(module):
    code = (f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & "
            f"set({list(NOT_IN_SERVING)!r})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]", f"{module} pulls in {proc.stdout.strip()}"
