"""End-to-end training on ETTh1 with a tiny network: outputs, artifact, eval, reproducibility."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from informer import load_model
from informer.artifact import MANIFEST, WEIGHTS
from informer.cli.evaluate import load_checkpoint
from informer.cli.train import train
from informer.data.series import SeriesData
from informer.errors import InformerError
from tests.conftest import ETT_DIR, TINY, compose_cfg


def test_run_directory_holds_every_output(trained):
    assert (trained / "config.yaml").is_file() and (trained / ".hydra").is_dir()
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert {p.name for p in (trained / "model").iterdir()} == {"weights.pt", "config.json",
                                                                "manifest.json"}
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("test/mse", "test/mae", "test/rmse", "test/mape", "test/mspe",
                "test/mse_original", "test/mae_original", "val/loss", "train/loss"):
        assert isinstance(metrics[key], float), key
    assert metrics["test/rmse"] == pytest.approx(metrics["test/mse"] ** 0.5)
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["data"]["seq_len"] == 48 and config["model"]["net"]["factor"] == 3  # resolved
    assert config["model"]["net"]["d_model"] == 16


def test_artifact_round_trip_predicts_like_the_checkpoint(trained):
    loaded = load_model(trained / "model")
    schema = loaded.schema
    assert schema.columns == ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert (schema.target, schema.freq, schema.seq_len, schema.label_len, schema.pred_len) == \
        ("OT", "h", 48, 48, 24)
    assert schema.std[-1] == pytest.approx(9.1765, abs=1e-4)
    assert not loaded.net.training
    best = next((trained / "checkpoints").glob("epoch_*.ckpt"))
    from_ckpt, data = load_checkpoint(best)
    assert data["file"] == "ETTh1.csv"
    batch = SeriesData.with_schema(ETT_DIR / "ETTh1.csv", schema, split="ett_hour") \
        .dataset("test").__getitems__(list(range(8)))
    with torch.no_grad():
        a = loaded.net.predict(batch["x"], batch["x_mark"], batch["y_mark"])
        b = from_ckpt.net.predict(batch["x"], batch["x_mark"], batch["y_mark"])
    assert a.shape == (8, 24, 7)
    assert torch.equal(a, b)


def test_eval_reproduces_the_training_test_metrics(trained, tmp_path):
    metrics = json.loads((trained / "metrics.json").read_text())
    proc = subprocess.run([sys.executable, "-m", "informer.cli.evaluate",
                           f"model_path={trained / 'model'}", f"hydra.run.dir={tmp_path}"],
                          env={**os.environ, "INFORMER_DATA_DIR": str(ETT_DIR)},
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    assert evaluated["test/windows"] == 2857
    for key in ("mse", "mae", "mse_original", "mae_original"):
        assert evaluated[f"test/{key}"] == pytest.approx(metrics[f"test/{key}"], rel=1e-5), key
    assert f"test/mse={evaluated['test/mse']:.6f}" in proc.stdout


def test_tampered_weights_are_refused(trained, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained / "model", copy)
    with open(copy / WEIGHTS, "r+b") as handle:
        handle.seek(200)
        byte = handle.read(1)
        handle.seek(200)
        handle.write(bytes([byte[0] ^ 1]))
    with pytest.raises(InformerError, match="weights.pt: sha256 does not match manifest.json"):
        load_model(copy)
    manifest = json.loads((trained / "model" / MANIFEST).read_text())
    manifest["format_version"] = 99
    shutil.copy(trained / "model" / WEIGHTS, copy / WEIGHTS)
    (copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InformerError, match="artifact format 99 is newer than this library"):
        load_model(copy)
    with pytest.raises(InformerError, match="not a model artifact directory"):
        load_model(tmp_path / "nothing")


def test_seeded_runs_are_bit_identical(train_cfg, tmp_path):
    runs = []
    for name in ("a", "b"):
        cfg = train_cfg("trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
                        "trainer.limit_test_batches=2", out=tmp_path / name)
        metrics = train(cfg)
        runs.append((metrics, torch.load(tmp_path / name / "model" / WEIGHTS,
                                         weights_only=True)))
    (m1, w1), (m2, w2) = runs
    assert m1["test/mse"] == m2["test/mse"] and m1["train/loss"] == m2["train/loss"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # another seed, run without a logger (the lr monitor is left out, not an error)
    other = train(train_cfg("seed=3", "logger=none", "trainer.limit_train_batches=3",
                            "trainer.limit_val_batches=1", "trainer.limit_test_batches=2",
                            out=tmp_path / "c"))
    assert other["train/loss"] != m1["train/loss"]


def test_overrides_and_experiment_presets_compose(ett_dir):
    cfg = compose_cfg("train", ["experiment=etth1_S_168", "model=informer_stack",
                                "model.net.d_model=256", "trainer.max_epochs=2"])
    assert (cfg.data.features, cfg.data.seq_len, cfg.data.label_len, cfg.data.pred_len) == \
        ("S", 720, 336, 168)
    net = cfg.model.net
    assert (net.seq_len, net.pred_len, net.d_model) == (720, 168, 256)
    assert list(net.s_layers) == [3, 2, 1] and net.e_layers == 2
    assert cfg.trainer.max_epochs == 2 and cfg.task_name == "etth1_S_168"
    m2 = compose_cfg("train", ["experiment=ettm2_M_288"])
    assert (m2.data.file, m2.data.freq, m2.data.split) == ("ETTm2.csv", "15min", "ett_minute")
    assert compose_cfg("train", ["experiment=etth1_M_24"]).model.net.factor == 3
    assert compose_cfg("train", []).data.data_dir == str(ett_dir)  # INFORMER_DATA_DIR


def test_every_paper_preset_builds_a_valid_model():
    from informer.config import InformerConfig

    presets = [f"{d}_{f}_{h}" for d in ("etth1", "etth2") for f in ("M", "S")
               for h in (24, 48, 168, 336, 720)]
    presets += [f"{d}_{f}_{h}" for d in ("ettm1", "ettm2") for f in ("M", "S")
                for h in (24, 48, 96, 288, 672)]
    for name in presets:
        cfg = compose_cfg("train", [f"experiment={name}"])
        assert cfg.data.pred_len == int(name.rsplit("_", 1)[1])
        InformerConfig(**cfg.model.net)


def test_multirun_sweep_writes_one_run_per_value(tmp_path):
    env = {**os.environ, "INFORMER_DATA_DIR": str(ETT_DIR)}
    proc = subprocess.run(
        [sys.executable, "-m", "informer.cli.train", "-m", "experiment=etth1_M_24", *TINY,
         "trainer.limit_test_batches=1", "export_artifact=false", "model.net.d_model=8,16",
         f"hydra.sweep.dir={tmp_path}"], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i, d_model in enumerate((8, 16)):
        config = yaml.safe_load((tmp_path / str(i) / "config.yaml").read_text())
        assert config["model"]["net"]["d_model"] == d_model
        assert (tmp_path / str(i) / "metrics.json").is_file()


def test_ddp_on_two_cpu_processes_tests_every_window_once(tmp_path):
    env = {**os.environ, "INFORMER_DATA_DIR": str(ETT_DIR)}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "informer.cli.train", "experiment=etth1_M_24", *TINY,
         "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "plot=false",
         f"hydra.run.dir={out}"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    evaluated = subprocess.run([sys.executable, "-m", "informer.cli.evaluate",
                                f"model={out / 'model'}", f"hydra.run.dir={tmp_path / 'ev'}"],
                               env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    exact = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["test/mse"] == pytest.approx(exact["test/mse"], rel=1e-6)
