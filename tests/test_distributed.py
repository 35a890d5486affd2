"""Every validation and test window counted once when SageMaker runs the job on several processes.

The jobs run as SageMaker runs them: SDK v3's own torchrun driver builds each host's command
from ``SM_*`` variables, and that command starts ``sagemaker_jobs/train.py``, whose override
builder turns the cluster into trainer settings. Two "hosts" rendezvous on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from informer.cli.evaluate import load_any, series_of
from informer.evaluation import evaluate
from sagemaker_jobs.hyperparameters import encode_key
from tests.conftest import ETT_DIR, REPO

HPS = {"experiment": "etth1_M_24", "debug": "tiny", "trainer.limit_val_batches": "1.0",
       "trainer.precision": "32-true", "plot": "false"}
HOSTS = ["algo-1", "algo-2"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _host_env(root: Path, host: str, port: int) -> dict[str, str]:
    """What SageMaker sets on ``host`` of a two-instance CPU job launched with Torchrun()."""
    channel = root / "input" / "data" / "training"
    channel.mkdir(parents=True)
    shutil.copy(ETT_DIR / "ETTh1.csv", channel)
    return {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "OMP_NUM_THREADS": "1",
            "SM_HOSTS": json.dumps(HOSTS), "SM_CURRENT_HOST": host, "SM_HOST_COUNT": "2",
            "SM_CURRENT_HOST_RANK": str(HOSTS.index(host)), "SM_MASTER_ADDR": "127.0.0.1",
            "SM_MASTER_PORT": str(port), "SM_NUM_GPUS": "0", "SM_NUM_CPUS": "1",
            "SM_CURRENT_INSTANCE_TYPE": "ml.c5.xlarge",
            "SM_ENTRY_SCRIPT": str(REPO / "sagemaker_jobs" / "train.py"),
            "SM_DISTRIBUTED_CONFIG": json.dumps({"process_count_per_node": None}),
            "SM_HPS": json.dumps({encode_key(k): v for k, v in HPS.items()})}


def _sdk_torchrun_command(env: dict[str, str]) -> list[str]:
    """The command SDK v3's torchrun driver runs on a host (its own ``create_commands``)."""
    drivers = Path(pytest.importorskip("sagemaker.train").__file__).parent / "container_drivers"
    driver = drivers / "distributed_drivers" / "torchrun_driver.py"
    code = ("import json, runpy, sys; ns = runpy.run_path(sys.argv[1], run_name='driver'); "
            "print(json.dumps(ns['create_commands']()))")
    proc = subprocess.run([sys.executable, "-c", code, str(driver)], env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory) -> Path:
    """A two-host job on loopback; returns rank 0's /opt/ml tree."""
    base, port = tmp_path_factory.mktemp("cluster"), _free_port()
    envs = [_host_env(base / host, host, port) for host in HOSTS]
    commands = [_sdk_torchrun_command(env) for env in envs]
    assert commands[1][:5] == ["torchrun", "--nnodes=2", "--nproc_per_node=1",
                               "--master_addr=127.0.0.1", f"--master_port={port}"]
    procs = [subprocess.Popen(cmd, env=env, cwd=base, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
             for cmd, env in zip(commands, envs)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-3000:]
    return base / HOSTS[0]


def test_two_hosts_count_every_validation_and_test_window_once(two_hosts):
    data = two_hosts / "output" / "data"
    overrides = json.loads((data / "overrides.json").read_text())
    assert {"trainer.accelerator=cpu", "trainer.devices=1", "++trainer.num_nodes=2",
            "++trainer.strategy=ddp"} <= set(overrides)
    metrics = json.loads((data / "metrics.json").read_text())
    loaded, run_data = load_any(two_hosts / "model")  # unpacked by package_model
    series = series_of(loaded, run_data, str(ETT_DIR))
    for split in ("val", "test"):
        windows = len(series.dataset(split))
        assert metrics[f"{split}/windows"] == windows, split  # 2857 test windows, not 1429
        exact = evaluate(loaded.net, loaded.schema, series.dataset(split), precision="32-true")
        for key in ("mse", "mae", "mse_original"):
            assert metrics[f"{split}/{key}"] == pytest.approx(exact[key], rel=1e-5), (split, key)
    assert metrics["test/windows"] == 2857


def test_lightning_sampler_is_refused_in_one_line(tmp_path):
    env = {**os.environ, "INFORMER_DATA_DIR": str(ETT_DIR)}
    proc = subprocess.run(
        [sys.executable, "-m", "informer.cli.train", "experiment=etth1_M_24", "debug=tiny",
         "++trainer.use_distributed_sampler=true", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: trainer.use_distributed_sampler: expected false; the data module shards "
        "windows across processes itself (each validation/test window counted once), and "
        "Lightning's sampler would shard them again")
    assert not (tmp_path / "run" / "metrics.json").exists()
