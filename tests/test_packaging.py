"""The distributions as a stranger gets them: ``python -m build`` writes an sdist holding every
source tree, the wheel is built from that sdist, and installed in a clean venv (no system
site-packages, so this checkout's editable install cannot stand in for a missing package) every
console script answers ``--help``."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DOCUMENTED = {"informer-train", "informer-eval", "informer-forecast", "informer-mlops",
              "informer-sagemaker", "informer-sagemaker-local-train", "informer-serve",
              "informer-transform"}
PACKAGES = ("informer", "sagemaker_jobs", "mlops")
SDIST_TREES = (*PACKAGES, "conf", "benchmarks", "tests", "docs")


def tracked(*trees: str) -> list[str]:
    """Files git tracks under ``trees`` (the checkout's own, not another session's temp files)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", *trees], cwd=REPO, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [name for name in out.split("\0") if name and (REPO / name).is_file()]


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> tuple[Path, Path]:
    """``(sdist, wheel)`` from ``python -m build`` (sdist first, the wheel built from it)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (sdist,), (wheel,) = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    return sdist, wheel


def scripts(wheel: Path) -> dict[str, str]:
    """The wheel's console scripts: ``{name: "module:function"}``."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser(delimiters=("=",))
        parser.optionxform = str  # keep the names' case
        parser.read_string(zf.read(name).decode())
    return dict(parser["console_scripts"])


def test_the_wheel_declares_every_documented_console_script(dists):
    assert set(scripts(dists[1])) >= DOCUMENTED


def test_sdist_holds_every_source_tree_license_and_changelog(dists):
    sdist, _ = dists
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = [name for name in tracked(*SDIST_TREES) if name not in names]
    assert not missing, f"missing from the sdist: {missing[:10]}"
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"):
        assert name in names


def test_wheel_holds_the_packages_their_data_files_conf_and_license(dists):
    _, wheel = dists
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for target in scripts(wheel).values():  # the module behind every console script
        module = target.split(":")[0].replace(".", "/")
        assert f"{module}.py" in names, target
    sources = [n for n in tracked(*PACKAGES) if not n.endswith(".pyc")]
    missing = [n for n in sources if n not in names]
    assert not missing, f"missing from the wheel: {missing[:10]}"
    assert "mlops/infra/template.yaml" in names  # read by informer-mlops at run time
    conf = [f"informer/{name}" for name in tracked("conf")]
    assert conf and not [n for n in conf if n not in names]  # conf/ as informer/conf
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: Apache-2.0" in metadata
    assert "Project-URL: Changelog, " in metadata and "Classifier: " in metadata


def test_wheel_installs_in_a_clean_venv_and_every_console_script_runs(dists, tmp_path):
    _, wheel = dists
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    bin_dir = env_dir / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"  # this machine's build, no download
    install = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q",
                              "--no-compile", str(wheel), torch_pin],
                             capture_output=True, text=True, env=env, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]

    check = ("import informer, mlops, sagemaker_jobs\n"
             "from informer.cli.common import config_dir\n"
             "from mlops.cli import TEMPLATE\n"
             "assert TEMPLATE.is_file(), TEMPLATE\n"
             "print(informer.__file__, mlops.__file__, sagemaker_jobs.__file__, config_dir())\n")
    found = subprocess.run([str(bin_dir / "python"), "-c", check], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr[-3000:]
    site = str(env_dir.resolve())
    assert all(path.startswith(site) for path in found.stdout.split()), found.stdout

    helps = {}
    for script in scripts(wheel):
        result = subprocess.run([str(bin_dir / script), "--help"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, f"{script}: {result.stderr[-3000:]}"
        assert "usage:" in result.stdout or "powered by Hydra" in result.stdout, script
        helps[script] = result.stdout
    assert "quickstart" in helps["informer-train"]  # the presets come from informer/conf
