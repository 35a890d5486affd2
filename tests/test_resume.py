"""A training job killed with SIGKILL and restarted with the same command ends exactly like an
uninterrupted seeded run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

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
