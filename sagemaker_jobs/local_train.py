"""``informer-sagemaker-local-train``: rehearse a SageMaker training job on this machine.

``informer-sagemaker-local-train experiment=etth1_M_24 trainer.max_epochs=1 --data ../ETT``

Builds an ``/opt/ml``-shaped tree (``--root``, default a new temporary directory that is kept):
``input/config/{hyperparameters,resourceconfig,inputdataconfig}.json``, the data copied into
``input/data/<channel>``, empty ``model/`` and ``output/``; sets the variables SageMaker SDK v3's
container driver sets (``SM_MODEL_DIR``, ``SM_CHANNEL_<NAME>``, ``SM_HPS``, ``SM_HOSTS``...), passes
the hyperparameters (in the launcher's shell-safe spelling, ``trainer__max_epochs``) as
``--key value`` arguments exactly as its driver does, runs
``sagemaker_jobs/train.py`` in a subprocess and, like SageMaker, tars ``model/`` into
``output/model.tar.gz``. Running again with the same ``--root`` behaves like a spot restart:
``model/``, ``output/`` and ``input/`` are rebuilt, ``checkpoints/`` is kept and training resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

from informer.errors import InformerError
from sagemaker_jobs.container import DEFAULT_CHANNEL
from sagemaker_jobs.hyperparameters import shell_safe

HOST = "algo-1"


def cli_args(hyperparameters: dict[str, str]) -> list[str]:
    """``--key value`` pairs as SageMaker SDK v3's driver builds them (JSON values decoded and
    re-encoded, strings passed as they are)."""
    args: list[str] = []
    for key, value in hyperparameters.items():
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            decoded = value
        args += [f"--{key}", decoded if isinstance(decoded, str) else json.dumps(decoded)]
    return args


def prepare(root: Path, data: Path, hyperparameters: dict[str, str],
            channel: str = DEFAULT_CHANNEL, gpus: int = 0) -> dict[str, str]:
    """Lay out ``root`` like ``/opt/ml`` and return the job's environment variables."""
    for name in ("input", "model", "output"):
        shutil.rmtree(root / name, ignore_errors=True)
    config, channel_dir = root / "input" / "config", root / "input" / "data" / channel
    for path in (config, root / "model", root / "output" / "data", root / "checkpoints"):
        path.mkdir(parents=True, exist_ok=True)
    if data.is_dir():
        shutil.copytree(data, channel_dir)
    elif data.is_file():
        channel_dir.mkdir(parents=True)
        shutil.copy2(data, channel_dir / data.name)
    else:
        raise SystemExit(f"error: --data: {data} not found; expected a CSV file or a directory")
    return container_env(root, hyperparameters, [channel], gpus)


def container_env(root: Path, hyperparameters: dict[str, str], channels: Sequence[str],
                  gpus: int = 0, job_name: str = "local-rehearsal") -> dict[str, str]:
    """Write ``input/config/*.json`` under ``root`` (the job's ``/opt/ml``) for ``channels``
    (already in ``input/data/<channel>``) and return the variables SageMaker's driver sets;
    the data channel (``INFORMER_SM_CHANNEL``) is the first of ``channels``."""
    config = root / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    channel = channels[0]
    resource = {"current_host": HOST, "current_instance_type": "local", "hosts": [HOST],
                "current_group_name": "homogeneousCluster", "network_interface_name": "eth0",
                "instance_groups": [{"instance_group_name": "homogeneousCluster",
                                     "instance_type": "local", "hosts": [HOST]}]}
    inputs = {name: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated",
                     "RecordWrapperType": "None"} for name in channels}
    for name, payload in (("hyperparameters.json", hyperparameters),
                          ("resourceconfig.json", resource), ("inputdataconfig.json", inputs)):
        (config / name).write_text(json.dumps(payload, indent=2) + "\n")
    hps = {k: _decode(v) for k, v in hyperparameters.items()}
    env = {
        "SAGEMAKER_BASE_DIR": str(root), "TRAINING_JOB_NAME": job_name,
        "SM_MODEL_DIR": str(root / "model"), "SM_INPUT_DIR": str(root / "input"),
        "SM_INPUT_DATA_DIR": str(root / "input" / "data"), "SM_INPUT_CONFIG_DIR": str(config),
        "SM_OUTPUT_DIR": str(root / "output"), "SM_OUTPUT_FAILURE": str(root / "output/failure"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "SM_CHANNELS": json.dumps(list(channels)),
        "SM_HPS": json.dumps(hps), "SM_HOSTS": json.dumps([HOST]), "SM_CURRENT_HOST": HOST,
        "SM_CURRENT_HOST_RANK": "0", "SM_HOST_COUNT": "1", "SM_MASTER_ADDR": HOST,
        "SM_MASTER_PORT": "7777", "SM_NUM_GPUS": str(gpus),
        "SM_NUM_CPUS": str(os.cpu_count() or 1), "SM_CURRENT_INSTANCE_TYPE": "local",
        "SM_LOG_LEVEL": "20", "SM_RESOURCE_CONFIG": json.dumps(resource),
        "SM_INPUT_DATA_CONFIG": json.dumps(inputs), "INFORMER_SM_CHANNEL": channel,
        "INFORMER_SM_CHECKPOINT_DIR": str(root / "checkpoints"),
    }
    for name in channels:
        env[f"SM_CHANNEL_{name.upper()}"] = str(root / "input" / "data" / name)
    for key, value in hps.items():
        env[f"SM_HP_{key.replace('-', '_').upper()}"] = (
            value if isinstance(value, str) else json.dumps(value))
    return env


def _decode(value: str) -> object:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def tar_model(root: Path) -> Path:
    """``output/model.tar.gz`` with the contents of ``model/`` at its root, as SageMaker does."""
    target = root / "output" / "model.tar.gz"
    tmp = target.with_name(".model.tar.gz.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        for item in sorted((root / "model").iterdir()):
            tar.add(item, arcname=item.name)
    os.replace(tmp, target)
    return target


def run(tokens: Sequence[str], data: Path, root: Path | None = None,
        channel: str = DEFAULT_CHANNEL, gpus: int | None = None) -> tuple[int, Path]:
    """Rehearse the job; ``(exit code, root)``."""
    hyperparameters = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {token!r}: expected key=value (a config override)")
        try:
            key, value = shell_safe(key, value)  # the spelling the launcher sends
        except InformerError as err:
            raise SystemExit(f"error: {err}") from err
        hyperparameters[key] = value
    root = Path(root or tempfile.mkdtemp(prefix="informer-opt-ml-")).resolve()
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    env = {**os.environ, **prepare(root, Path(data), hyperparameters, channel, gpus)}
    script = Path(__file__).resolve().parent / "train.py"
    proc = subprocess.run([sys.executable, str(script), *cli_args(hyperparameters)], env=env,
                          cwd=root)
    if proc.returncode == 0:
        tar_model(root)
    return proc.returncode, root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="informer-sagemaker-local-train",
                                     description=__doc__.split("\n\n")[1])
    parser.add_argument("tokens", nargs="*", metavar="key=value", help="config overrides, sent "
                        "as hyperparameters (experiment=etth1_M_24 trainer.max_epochs=1 ...)")
    parser.add_argument("--data", required=True, type=Path,
                        help="CSV file or directory for the training channel")
    parser.add_argument("--root", type=Path, help="the /opt/ml tree (default: a new temp dir)")
    parser.add_argument("--channel", default=DEFAULT_CHANNEL, help="data channel name")
    parser.add_argument("--gpus", type=int, help="SM_NUM_GPUS (default: the visible GPUs)")
    args = parser.parse_args(argv)
    code, root = run(args.tokens, args.data, args.root, args.channel, args.gpus)
    failure = root / "output" / "failure"
    if code:
        reason = failure.read_text().strip() if failure.is_file() else f"exit code {code}"
        print(f"local job failed: {reason}\n/opt/ml tree: {root}", file=sys.stderr)
        sys.exit(code)
    print(f"local job completed\n/opt/ml tree: {root}\nmodel: {root / 'output/model.tar.gz'}\n"
          f"outputs: {root / 'output/data'}")


if __name__ == "__main__":
    main()
