"""Processing and training jobs of a pipeline definition, run on this machine.

A job gets an ``/opt/ml``-shaped tree (``SAGEMAKER_BASE_DIR``): its inputs are downloaded from
the local object store to their ``LocalPath``, the entry point its request names runs with this
Python, and its outputs are uploaded back where the request says. The entry points honoured
are the ones SageMaker SDK v3 writes: a processing job's ``runproc.sh`` (unpack
``sourcedir.tar.gz``, run ``python3 <script> "$@"``) and a training job's ``sm_train.sh`` with its
basic script driver (``sourcecode.json``'s entry script with the hyperparameters as
``--key value``). The image's packages are this environment's: the pinned requirements the
scripts would install are compared with what is installed and a difference is logged.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlops.local.definition import DefinitionError
from mlops.local.state import StateDir

OPT_ML = "/opt/ml/"
# the lines of the SDK's runproc.sh that do nothing a local job needs to repeat
_RUNPROC_SKIP = re.compile(r"^(#.*|set -e|echo .*|ls -la|if .*|fi|else|then|exit 1|"
                           r"pip uninstall --yes typing|python3 \S+install_requirements\.py .*)$")


class JobFailed(Exception):
    """The job's process failed; the message is its reason (its last ``error:`` line)."""


def container_path(root: Path, local_path: str, where: str) -> Path:
    """``LocalPath`` (under ``/opt/ml/``) inside the job's tree ``root``."""
    if not str(local_path).startswith(OPT_ML) or ".." in Path(local_path).parts:
        raise DefinitionError(f"{where}: expected a path under {OPT_ML}, got {local_path!r}")
    return root / str(local_path)[len(OPT_ML):].strip("/")


def download(state: StateDir, uri: str, target: Path, where: str) -> None:
    """The objects under the S3 prefix ``uri`` into ``target`` (an object named exactly
    ``uri`` lands as ``target/<its name>``)."""
    source = state.s3_path(str(uri))
    target.mkdir(parents=True, exist_ok=True)
    if source.is_file():
        shutil.copy2(source, target / source.name)
    elif source.is_dir() and any(p.is_file() for p in source.rglob("*")):
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        raise JobFailed(f"{where}: no S3 objects found under {uri}")


def upload(state: StateDir, source: Path, uri: str) -> None:
    """Every file under ``source`` to the prefix ``uri`` (replacing what was there)."""
    target = state.s3_path(str(uri).rstrip("/"))
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)


def requirement_notes(requirements: Path) -> list[str]:
    """Pinned requirements this environment does not satisfy (one note each)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.requirements import InvalidRequirement, Requirement

    notes = []
    if not requirements.is_file():
        return notes
    for line in requirements.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        try:
            req = Requirement(line)
            installed = version(req.name)
        except (InvalidRequirement, PackageNotFoundError):
            notes.append(f"requirement {line!r}: not installed here")
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            notes.append(f"requirement {line!r}: this environment has {installed}")
    return notes


def run_logged(command: list[str], env: dict[str, str], cwd: Path, log: Path,
               timeout: float | None, on_line: Callable[[str], None] | None = None) -> None:
    """Run ``command``, its output appended to ``log`` and each line handed to ``on_line``
    as it comes; a failure raises :class:`JobFailed` with the last ``error:`` line."""
    start = time.monotonic()
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {shlex.join(command)}\n")
        handle.flush()
        proc = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            handle.write(line)
            handle.flush()
            if on_line:
                on_line(line.rstrip("\n"))
            if timeout and time.monotonic() - start > timeout:
                proc.kill()
        code = proc.wait()
    if timeout and time.monotonic() - start > timeout:
        raise JobFailed(f"the job ran past StoppingCondition.MaxRuntimeInSeconds ({timeout:g} s)")
    if code:
        errors = [ln for ln in log.read_text().splitlines() if ln.startswith("error:")]
        reason = errors[-1][len("error: "):] if errors else f"exit code {code}"
        raise JobFailed(f"{reason} (log: {log})")


def runproc_script(path: Path, where: str) -> tuple[str, str]:
    """``(code directory, script)`` of the SDK's ``runproc.sh``; any other command is refused."""
    if not path.is_file():
        raise JobFailed(f"{where}: {path.name} was not among the job's inputs")
    code_dir = script = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#!") or _RUNPROC_SKIP.match(line):
            continue
        if match := re.fullmatch(r"cd (\S+)", line):
            code_dir = match.group(1)
        elif line == "tar -xzf sourcedir.tar.gz":
            continue
        elif match := re.fullmatch(r'python3 (\S+) "\$@"', line):
            script = match.group(1)
        else:
            raise DefinitionError(f"{where}: the local backend runs the SDK's runproc.sh, and "
                                  f"this one also runs {line!r}")
    if not code_dir or not script:
        raise DefinitionError(f"{where}: expected the SDK's runproc.sh (cd <code>; "
                              f"python3 <script> \"$@\")")
    return code_dir, script


def processing_command(root: Path, args: dict[str, Any], where: str) -> tuple[list[str], Path,
                                                                             Path]:
    """``(command, working directory, requirements)`` of a processing job's entry point."""
    from mlops.local.client import safe_extract

    app = args.get("AppSpecification") or {}
    entry = list(app.get("ContainerEntrypoint") or [])
    arguments = [str(a) for a in app.get("ContainerArguments") or []]
    field = f"{where}.AppSpecification.ContainerEntrypoint"
    if len(entry) == 2 and entry[0] == "/bin/bash":
        code_dir, script = runproc_script(container_path(root, entry[1], field), field)
        cwd = container_path(root, code_dir, field)
        if (cwd / "sourcedir.tar.gz").is_file():
            safe_extract(cwd / "sourcedir.tar.gz", cwd)
        return [sys.executable, script, *arguments], cwd, cwd / "requirements.txt"
    if len(entry) >= 2 and entry[0] in ("python3", "python"):
        script = container_path(root, entry[1], field)
        return [sys.executable, str(script), *entry[2:], *arguments], script.parent, \
            script.parent / "requirements.txt"
    raise DefinitionError(f"{field}: the local backend runs /bin/bash <runproc.sh> or python3 "
                          f"<script>, not {entry!r}")


def training_command(root: Path, args: dict[str, Any], where: str) -> tuple[list[str], Path,
                                                                           Path]:
    """The entry script the SDK's ``sm_train.sh`` and basic script driver would run."""
    from sagemaker_jobs.local_train import cli_args

    spec = args.get("AlgorithmSpecification") or {}
    field = f"{where}.AlgorithmSpecification"
    command = " ".join(str(a) for a in [*(spec.get("ContainerEntrypoint") or []),
                                         *(spec.get("ContainerArguments") or [])])
    if "/opt/ml/input/data/sm_drivers/sm_train.sh" not in command or \
            not command.startswith("/bin/bash -c "):
        raise DefinitionError(f"{field}.ContainerEntrypoint: the local backend runs the SDK's "
                              f"sm_train.sh from the sm_drivers channel, not {command!r}")
    drivers = root / "input" / "data" / "sm_drivers"
    try:
        source = json.loads((drivers / "sourcecode.json").read_text())
        distributed = json.loads((drivers / "distributed.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise JobFailed(f"{where}: the sm_drivers channel has no readable sourcecode.json and "
                        f"distributed.json ({err})") from err
    if distributed or source.get("command"):
        raise DefinitionError(f"{where}: the local backend runs the basic script driver (no "
                              f"distributed driver, no command), got {distributed or source}")
    code = root / "input" / "data" / "code"
    hyperparameters = {k: str(v) for k, v in (args.get("HyperParameters") or {}).items()}
    return [sys.executable, str(code / source["entry_script"]),
            *cli_args(hyperparameters)], code, code / str(source.get("requirements") or "")


def job_environment(root: Path, args: dict[str, Any]) -> dict[str, str]:
    env = {**os.environ, **{k: str(v) for k, v in (args.get("Environment") or {}).items()}}
    env["SAGEMAKER_BASE_DIR"] = str(root)
    return env
