"""SageMaker training entry point in a temporary /opt/ml tree: outputs, the model directory,
metric lines, failures, resume after an interruption, the local rehearsal, torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import lightning as L
import pytest

from informer.errors import InformerError
from sagemaker_jobs import local_train
from sagemaker_jobs.metrics import METRIC_DEFINITIONS, METRIC_NAMES, parse_metric_lines
from sagemaker_jobs.train import main, run
from tests.conftest import ETT_DIR

REPO = Path(__file__).resolve().parents[1]
# TINY (tests/conftest.py) as key=value hyperparameters, plus a short test loop.
TINY_HPS = ["experiment=etth1_M_24", "debug=tiny", "trainer.limit_test_batches=2", "plot=false"]


def opt_ml(root: Path) -> Path:
    """An /opt/ml tree with ETTh1 in the training channel."""
    channel = root / "input" / "data" / "training"
    channel.mkdir(parents=True)
    (channel / "ETTh1.csv").symlink_to(ETT_DIR / "ETTh1.csv")
    return root


def as_argv(tokens: list[str]) -> list[str]:
    return [a for t in tokens for a in ("--" + t.split("=", 1)[0], t.split("=", 1)[1])]


# the job, end to end --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """One tiny job through the local rehearsal: the entry point as a script in a subprocess,
    /opt/ml-shaped tree, SageMaker's environment variables and argument spelling."""
    root = tmp_path_factory.mktemp("sm") / "opt_ml"
    code, _ = local_train.run([*TINY_HPS, "plot=true"], ETT_DIR / "ETTh1.csv", root=root,
                              gpus=0)
    assert code == 0
    return root


def test_model_dir_holds_the_artifact_and_the_serving_code(job):
    model = job / "model"
    assert {p.name for p in model.iterdir()} == {"weights.pt", "config.json", "manifest.json",
                                                 "code"}
    code = model / "code"
    assert (code / "inference.py").is_file() and (code / "informer" / "forecast.py").is_file()
    assert "pandas" in (code / "requirements.txt").read_text()
    for lightning_only in ("module.py", "cli", "plots.py", "data/datamodule.py"):
        assert not (code / "informer" / lightning_only).exists(), lightning_only
    with tarfile.open(job / "output" / "model.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"weights.pt", "manifest.json", "code/inference.py"} <= names
    outputs = job / "output" / "data"
    metrics = json.loads((outputs / "metrics.json").read_text())
    assert metrics["test/mse"] > 0 and "test/mse_original" in metrics
    for name in ("config.yaml", "train.log", "csv/metrics.csv", "overrides.json"):
        assert (outputs / name).is_file(), name
    assert list((outputs / "plots").glob("*.png"))
    assert not (outputs / "model").exists()  # the model leaves as model.tar.gz only
    assert "overrides: paths.data_dir=" in (outputs / "train.log").read_text()
    assert (job / "checkpoints" / "last.ckpt").is_file()
    assert not (job / "output" / "failure").exists()


def test_serving_code_runs_without_lightning_hydra_or_the_repository(job):
    """code/ alone (no Lightning, Hydra, matplotlib, sagemaker_jobs) loads and forecasts."""
    script = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {{"lightning", "pytorch_lightning", "hydra", "omegaconf",
                                   "torchmetrics", "matplotlib", "sagemaker_jobs", "mlops"}}:
            raise ImportError("blocked " + name)
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(job / "model" / "code")!r})
import inference, informer, pandas as pd
assert informer.__file__.startswith({str(job / "model" / "code")!r}), informer.__file__
model = inference.model_fn({str(job / "model")!r})
history = pd.read_csv({str(ETT_DIR / "ETTh1.csv")!r}, nrows=100).to_csv(index=False)
body, kind = inference.output_fn(inference.predict_fn(inference.input_fn(history, "text/csv"),
                                                      model), "text/csv")
print(kind, len(body.splitlines()))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=job)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["text/csv", "25"]  # header + pred_len rows


def test_metric_definitions_have_one_capture_group_each():
    for definition in METRIC_DEFINITIONS:
        assert set(definition) == {"Name", "Regex"}
        assert definition["Regex"].count("(") - definition["Regex"].count("(?:") == 1
    assert [d["Name"] for d in METRIC_DEFINITIONS] == list(METRIC_NAMES)


def test_entry_point_prints_one_parseable_line_per_epoch_and_at_test_time(tmp_path, capsys):
    root = opt_ml(tmp_path / "ml")
    run(as_argv([*TINY_HPS, "trainer.max_epochs=2"]), {"SAGEMAKER_BASE_DIR": str(root)})
    found = parse_metric_lines(capsys.readouterr().out)
    assert len(found["train_loss"]) == 2 and len(found["val_loss"]) == 2
    metrics = json.loads((root / "output" / "data" / "metrics.json").read_text())
    for name in ("test_mse", "test_mae", "test_mse_original"):
        key = name.replace("test_", "test/")
        assert found[name] == [pytest.approx(metrics[key], rel=1e-5)], name


# failures --------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, reason", [
    (["--experiment", "etth1_M_24", "--trainer.max_epoch", "3"],
     "hyperparameter --trainer.max_epoch: trainer has no key 'max_epoch'"),
    (["--experiment", "etth1_M_24", "--data.file", "missing.csv"],
     "missing.csv: file not found"),
    (["--experiment", "etth1_M_24", "--data.seq_len", "0"],
     "data.seq_len: expected an integer >= 1, got 0"),
    (["--experiment"], "hyperparameter --experiment: expected a value after it"),
])
def test_user_errors_exit_2_with_one_line_and_the_failure_file(argv, reason, tmp_path, capsys,
                                                               monkeypatch):
    root = opt_ml(tmp_path / "ml")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(root))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and reason in err[0], err
    failure = (root / "output" / "failure").read_text()
    assert failure == err[0].removeprefix("error: ") + "\n"
    assert not (root / "model" / "manifest.json").exists()


def test_a_missing_channel_names_the_channels_the_job_has(tmp_path, capsys):
    root = tmp_path / "ml"
    (root / "input" / "data" / "validation").mkdir(parents=True)
    env = {"SAGEMAKER_BASE_DIR": str(root), "SM_CHANNELS": '["validation", "code"]'}
    with pytest.raises(InformerError, match=r"channel 'training' not found .* \['validation'\]"):
        run(["--experiment", "etth1_M_24"], env)
    run_args = as_argv([*TINY_HPS, "trainer.limit_test_batches=1"]) + ["--channel", "validation"]
    (root / "input" / "data" / "validation" / "ETTh1.csv").symlink_to(ETT_DIR / "ETTh1.csv")
    assert run(run_args, env)["test/mse"] > 0


# resume ----------------------------------------------------------------------------------------
class Interrupt(L.Callback):
    """Stops the process like a spot reclaim: mid-epoch (``at_epoch``) or during the test."""

    def __init__(self, at_epoch: int = -1, in_test: bool = False) -> None:
        self.at_epoch, self.in_test = at_epoch, in_test

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.at_epoch and batch_idx == 2:
            raise SystemExit("interrupted")

    def on_test_start(self, trainer, pl_module):
        if self.in_test:
            raise SystemExit("interrupted")


INTERRUPT = ["--add__callbacks__interrupt___target_=tests.test_sagemaker_train.Interrupt"]


def _weights(root: Path) -> bytes:
    return (root / "model" / "weights.pt").read_bytes()


def test_restarted_job_resumes_from_the_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    argv = as_argv([*TINY_HPS, "trainer.max_epochs=3"])
    whole = opt_ml(tmp_path / "whole")
    expected = run(argv, {"SAGEMAKER_BASE_DIR": str(whole)})

    spot = opt_ml(tmp_path / "spot")
    env = {"SAGEMAKER_BASE_DIR": str(spot)}
    with pytest.raises(SystemExit, match="interrupted"):
        run([*argv, *INTERRUPT, "--add__callbacks__interrupt__at_epoch", "1"], env)
    assert (spot / "checkpoints" / "last.ckpt").is_file()
    assert not (spot / "model" / "manifest.json").exists()
    resumed = run(argv, env)  # the restarted job: same hyperparameters, same /opt/ml tree
    for key in ("train/loss", "val/loss", "test/mse", "test/mae", "epochs"):
        assert resumed[key] == expected[key], key
    assert _weights(spot) == _weights(whole)


def test_local_rehearsal_rerun_in_the_same_tree_resumes(job, capfd):
    code, _ = local_train.run([*TINY_HPS, "trainer.max_epochs=2"], ETT_DIR / "ETTh1.csv",
                              root=job, gpus=0)
    assert code == 0
    out = capfd.readouterr().out
    assert f"resuming from {job / 'checkpoints' / 'last.ckpt'}" in out
    assert len(parse_metric_lines(out)["train_loss"]) == 1  # only the second epoch ran


def test_local_rehearsal_reports_a_user_error(tmp_path, capfd):
    code, root = local_train.run(["experiment=etth1_M_24", "model.net.d_model=15"],
                                 ETT_DIR / "ETTh1.csv", root=tmp_path / "ml", gpus=0)
    assert code == 2
    failure = (root / "output" / "failure").read_text().strip()
    assert failure.startswith("model.net.d_model: expected a multiple of n_heads")
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_write_once(tmp_path):
    """DDP on two CPU processes under torchrun: devices/strategy derived, rank 0 writes."""
    root = opt_ml(tmp_path / "ml")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
         str(REPO / "sagemaker_jobs" / "train.py"), *as_argv([*TINY_HPS, "trainer.max_epochs=2"])],
        env={**os.environ, "SAGEMAKER_BASE_DIR": str(root)}, capture_output=True, text=True,
        timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = parse_metric_lines(proc.stdout)
    assert len(found["train_loss"]) == 2 and len(found["test_mse"]) == 1
    overrides = json.loads((root / "output" / "data" / "overrides.json").read_text())
    assert {"trainer.devices=2", "++trainer.strategy=ddp"} <= set(overrides)
    assert (root / "model" / "manifest.json").is_file()
