"""A training job killed with SIGKILL and restarted with the same command ends exactly like an
uninterrupted seeded run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from tests.conftest import ETT_DIR, TINY

ARGS = ["experiment=etth1_M_24", *TINY, "trainer.max_epochs=4", "trainer.limit_train_batches=30",
        "trainer.limit_val_batches=2", "trainer.limit_test_batches=3", "plot=false",
        "callbacks.early_stopping.patience=10"]


def command(out) -> list[str]:
    return [sys.executable, "-m", "informer.cli.train", *ARGS, f"hydra.run.dir={out}"]


def test_sigkill_mid_training_then_restart_matches_uninterrupted(tmp_path):
    env = {**os.environ, "INFORMER_DATA_DIR": str(ETT_DIR)}
    whole = subprocess.run(command(tmp_path / "whole"), env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    out = tmp_path / "killed"
    proc = subprocess.Popen(command(out), env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists(), "the job finished before it was killed"

    again = subprocess.run(command(out), env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming from" in again.stderr + again.stdout
    expected = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed = json.loads((out / "metrics.json").read_text())
    for key in ("test/mse", "test/mae", "val/loss", "train/loss", "epochs"):
        assert resumed[key] == expected[key], key
    # the per-epoch log keeps the epochs before the restart, each epoch once, as uninterrupted
    logged = pd.read_csv(out / "csv" / "metrics.csv")
    whole_log = pd.read_csv(tmp_path / "whole" / "csv" / "metrics.csv")
    assert sorted(whole_log["epoch"].dropna().unique()) == [0, 1, 2, 3, 4]  # 4: test metrics
    pd.testing.assert_frame_equal(logged, whole_log)


def test_csv_log_keeps_earlier_epochs_when_a_run_resumes(tmp_path):
    """The configured CSV logger: a restarted run's logger keeps the rows of the epochs before
    the restart, replaces those of the epoch that was cut short, and appends the rest."""
    from hydra.utils import instantiate

    from tests.conftest import compose_cfg

    cfg = compose_cfg("train", ["experiment=etth1_M_24", f"paths.output_dir={tmp_path}"])

    def logger():
        return instantiate(cfg.logger.csv)

    killed = logger()
    for epoch, step in ((0, 9), (1, 19), (2, 24)):  # epoch 2 cut short after step 24
        killed.log_metrics({"train/loss": 1.0 / (epoch + 1), "epoch": epoch}, step=step)
    killed.log_metrics({"lr-Adam": 2e-4}, step=10)  # epoch 1's learning rate: kept
    killed.log_metrics({"lr-Adam": 1e-4}, step=20)  # epoch 2's, logged again after the restart
    killed.save()
    resumed = logger()  # the restart, resuming from the end of epoch 1
    resumed.log_metrics({"lr-Adam": 1e-4}, step=20)  # a row without an epoch
    resumed.log_metrics({"train/loss": 0.3, "epoch": 2}, step=24)
    resumed.log_metrics({"val/loss": 0.5, "epoch": 2}, step=29)
    resumed.log_metrics({"train/loss": 0.2, "epoch": 3}, step=39)
    resumed.save()
    rows = pd.read_csv(tmp_path / "csv" / "metrics.csv").fillna(-1)
    assert rows[["epoch", "step"]].values.tolist() == [
        [0, 9], [1, 19], [-1, 10], [-1, 20], [2, 24], [2, 29], [3, 39]]
    assert rows["train/loss"].tolist()[:5] == [1.0, 0.5, -1, -1, 0.3]
    assert rows["lr-Adam"].tolist()[:4] == [-1, -1, 2e-4, 1e-4]
    assert rows["val/loss"].tolist() == [-1, -1, -1, -1, -1, 0.5, -1]
    fresh = logger()  # a new run from epoch 0 in the same folder replaces the log
    fresh.log_metrics({"train/loss": 2.0, "epoch": 0}, step=0)
    fresh.save()
    assert pd.read_csv(tmp_path / "csv" / "metrics.csv")[["epoch", "step"]].values.tolist() \
        == [[0, 0]]


def test_sigterm_exits_143_with_one_line_and_keeps_the_checkpoint(tmp_path):
    env = {**os.environ, "INFORMER_DATA_DIR": str(ETT_DIR)}
    out = tmp_path / "stopped"
    proc = subprocess.Popen([*command(out), "trainer.max_epochs=1000"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    assert "error: fit stopped by SIGTERM before it finished; run the same command again" \
        in stderr
    assert not (out / "metrics.json").exists() and not (out / "model").exists()
    assert (out / "checkpoints" / "last.ckpt").is_file()


def test_last_checkpoint_is_the_latest_epoch_also_when_it_did_not_improve(train_cfg, tmp_path):
    """A restarted job goes on from the epoch it had reached, not from the best one: with
    ``mode=max`` on a falling validation loss, no epoch after the first is the best."""
    import torch

    from informer.cli.train import train

    out = tmp_path / "run"
    train(train_cfg("trainer.max_epochs=3", "callbacks.model_checkpoint.mode=max",
                    "callbacks.early_stopping.patience=10", "plot=false", out=out))
    checkpoints = out / "checkpoints"
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=True)
    best = sorted(p.name for p in checkpoints.glob("epoch_*.ckpt"))
    assert best == ["epoch_000.ckpt"]  # the first epoch stays the best (mode=max)
    assert last["epoch"] == 2 and last["global_step"] == 3 * 4
    # the best checkpoint's record travels in last.ckpt, so a resumed run tests the same one
    states = [s for k, s in last["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert any(s.get("best_model_path", "").endswith("epoch_000.ckpt") for s in states)
