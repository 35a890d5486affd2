"""On a CUDA machine: a bf16 fit, CPU/GPU forecast agreement, and the two-GPU window count.

Skipped where torch sees no CUDA device (CI, the CPU machines); they run wherever one is lent.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from informer import load_model
from informer.cli.train import train
from informer.data.csv import read_csv
from informer.forecast import Forecaster
from tests.conftest import ETT_DIR, REPO

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_bf16_fit_of_a_few_steps_on_the_gpu(train_cfg, tmp_path):
    cfg = train_cfg("trainer=gpu", "trainer.limit_train_batches=5",
                    "trainer.limit_test_batches=4", "plot=false", out=tmp_path / "gpu")
    metrics = train(cfg)
    assert cfg.trainer.precision == "bf16-mixed"
    assert math.isfinite(metrics["train/loss"]) and math.isfinite(metrics["test/mse"])
    assert metrics["test/windows"] == 4 * 32
    assert (tmp_path / "gpu" / "model" / "weights.pt").is_file()


def test_gpu_forecast_equals_the_cpu_forecast(trained):
    history = read_csv(ETT_DIR / "ETTh1.csv").iloc[-500:]
    cpu = Forecaster(load_model(trained / "model"), precision="32-true").forecast(history)
    gpu = Forecaster(load_model(trained / "model", map_location="cuda"),
                     precision="32-true").forecast(history)
    assert list(gpu["date"]) == list(cpu["date"])
    columns = [c for c in cpu.columns if c != "date"]
    torch.testing.assert_close(torch.tensor(gpu[columns].to_numpy()),
                               torch.tensor(cpu[columns].to_numpy()), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_gpus_as_sagemaker_runs_them_count_every_window_once(tmp_path):
    """One host with two GPUs: the entry point's overrides (trainer=gpu, devices=2, ddp)."""
    root = tmp_path / "ml"
    channel = root / "input" / "data" / "training"
    channel.mkdir(parents=True)
    shutil.copy(ETT_DIR / "ETTh1.csv", channel)
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(root), "SM_HOSTS": '["algo-1"]',
           "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "2"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "sagemaker_jobs" / "train.py"), "--experiment", "etth1_M_24",
         "--debug", "tiny", "--trainer.limit_val_batches", "1.0", "--plot", "false"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = root / "output" / "data"
    overrides = json.loads((data / "overrides.json").read_text())
    assert {"trainer=gpu", "trainer.devices=2", "++trainer.strategy=ddp"} <= set(overrides)
    metrics = json.loads((data / "metrics.json").read_text())
    assert metrics["test/windows"] == 2857 and metrics["val/windows"] == 2857
