"""The model config as Hydra wires it (``model.net``, optimizer and schedule partials, ``debug``)
and the upgrade path from 0.1's flat layout: old overrides, presets, checkpoints, artifacts."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from informer import load_model
from informer.cli.evaluate import load_checkpoint
from informer.cli.train import train
from informer.errors import InformerError
from informer.module import InformerModule
from sagemaker_jobs.hyperparameters import to_overrides
from tests.conftest import ETT_DIR, compose_cfg

OLD = Path(__file__).parent / "fixtures" / "v0_1_0"  # saved by 0.1.0 (see its README.md)
# the network of the 0.1.0 fixture, in today's spelling
OLD_NET = ["model.net.d_model=8", "model.net.n_heads=2", "model.net.d_ff=16",
           "model.net.factor=3", "model.net.e_layers=1"]


def _lrs(module: InformerModule, epochs: int) -> list[float]:
    configured = module.configure_optimizers()
    optimizer, rates = configured["optimizer"], []
    schedule = configured.get("lr_scheduler", {}).get("scheduler")
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if schedule is not None:
            schedule.step()
    return rates


def test_network_optimizer_and_schedule_are_separate_nodes():
    cfg = compose_cfg("train", ["experiment=etth1_M_24"])
    assert set(cfg.model) == {"_target_", "_recursive_", "net", "optimizer", "scheduler",
                              "calibrate"}
    assert (cfg.model.net.seq_len, cfg.model.net.factor) == (48, 3)
    module = InformerModule(net=cfg.model.net, optimizer=cfg.model.optimizer,
                            scheduler=cfg.model.scheduler)
    optimizer = module.configure_optimizers()["optimizer"]
    assert type(optimizer) is torch.optim.Adam and optimizer.defaults["fused"]
    # the paper's "type1": lr for the first two epochs, then halved every epoch
    assert _lrs(module, 4) == pytest.approx([1e-4, 1e-4, 5e-5, 2.5e-5])
    # plain data in the checkpoint's hyper-parameters (loaded with weights_only=True)
    assert module.hparams.optimizer == {"_target_": "torch.optim.Adam", "_partial_": True,
                                        "lr": 1e-4, "fused": True}


def test_optimizer_and_schedule_are_swapped_from_the_command_line():
    cfg = compose_cfg("train", ["experiment=etth1_M_24", "model.optimizer._target_=torch.optim.SGD",
                                "~model.optimizer.fused", "+model.optimizer.momentum=0.9",
                                "model.optimizer.lr=0.01", "model.scheduler=null"])
    module = InformerModule(net=cfg.model.net, optimizer=cfg.model.optimizer,
                            scheduler=cfg.model.scheduler)
    configured = module.configure_optimizers()
    assert type(configured["optimizer"]) is torch.optim.SGD and "lr_scheduler" not in configured
    assert configured["optimizer"].defaults["momentum"] == 0.9
    assert _lrs(module, 3) == [0.01] * 3
    # a callable from Python works too, and is not put into the checkpoint
    sgd = InformerModule(net=dict(cfg.model.net), optimizer=functools.partial(torch.optim.SGD,
                                                                               lr=0.1))
    assert type(sgd.configure_optimizers()["optimizer"]) is torch.optim.SGD
    assert sgd.hparams.optimizer is None


def test_a_bad_optimizer_is_one_line():
    module = InformerModule(net={"d_model": 16, "n_heads": 2},
                            optimizer={"_target_": "torch.optim.Nope", "_partial_": True})
    with pytest.raises(InformerError, match=r"^model.optimizer: Error locating target "
                                            r"'torch.optim.Nope'"):
        module.configure_optimizers()
    with pytest.raises(InformerError, match=r"model.scheduler: expected a config with "
                                            r"_target_, got keys \['decay'\]"):
        InformerModule(scheduler={"decay": 0.5}).configure_optimizers()


def test_debug_presets_compose():
    tiny = compose_cfg("train", ["experiment=etth1_M_336", "debug=tiny"])
    assert (tiny.model.net.d_model, tiny.model.net.pred_len, tiny.trainer.max_epochs) == \
        (16, 336, 1)
    fast = compose_cfg("train", ["experiment=etth1_M_24", "debug=fast_dev_run"])
    assert fast.trainer.fast_dev_run is True and fast.model.net.d_model == 512


def test_fast_dev_run_fits_tests_and_exports(train_cfg, tmp_path):
    cfg = train_cfg("debug=fast_dev_run", "model.net.d_model=16", "model.net.n_heads=2",
                    "model.net.d_ff=32", out=tmp_path / "fast")
    metrics = train(cfg)
    assert metrics["test/windows"] == 32  # one batch
    assert (tmp_path / "fast" / "model" / "weights.pt").is_file()


def test_old_flat_overrides_are_rewritten_with_a_note(tmp_path):
    """informer-train with 0.1's keys runs as with today's, and says so once on stderr."""
    env = {**os.environ, "INFORMER_DATA_DIR": str(ETT_DIR)}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "informer.cli.train", "experiment=etth1_M_24", "debug=tiny",
         "model.d_model=8", "model.lr=0.0002", "model.lr_decay=0.25", "trainer.max_epochs=1",
         "trainer.limit_test_batches=1", "plot=false", "export_artifact=false",
         f"hydra.run.dir={out}"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note: model.d_model is now model.net.d_model (the 0.1 spelling is rewritten)" in \
        proc.stderr.splitlines()
    config = yaml.safe_load((out / "config.yaml").read_text())["model"]
    assert config["net"]["d_model"] == 8 and "d_model" not in config
    assert (config["optimizer"]["lr"], config["scheduler"]["decay"]) == (0.0002, 0.25)


def test_old_sagemaker_hyperparameters_are_rewritten():
    assert to_overrides([("model.d_model", "256"), ("model.lr", "0.001"),
                         ("++model.lr_decay", "0.3"), ("model.net.factor", "3")]) == \
        ["model.net.d_model=256", "model.optimizer.lr=0.001", "++model.scheduler.decay=0.3",
         "model.net.factor=3"]


def test_a_users_old_preset_is_folded_into_model_net(train_cfg, tmp_path):
    """An experiment file of the user's own, written for 0.1 (flat model keys)."""
    presets = tmp_path / "conf" / "experiment"
    presets.mkdir(parents=True)
    (presets / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - etth1_M_24\n  - _self_\n"
        "model:\n  d_model: 8\n  n_heads: 2\n  d_ff: 16\n  lr: 0.0003\n")
    cfg = train_cfg(f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=mine",
                    "trainer.limit_test_batches=1", "plot=false", out=tmp_path / "run")
    assert cfg.model.d_model == 8  # as composed: flat, beside net
    train(cfg)
    loaded = load_model(tmp_path / "run" / "model")
    assert (loaded.net.config.d_model, loaded.net.config.d_ff) == (8, 16)
    ckpt = torch.load(next((tmp_path / "run" / "checkpoints").glob("epoch_*.ckpt")),
                      weights_only=True)
    assert ckpt["hyper_parameters"]["optimizer"]["lr"] == 0.0003
    assert "d_model" not in ckpt["hyper_parameters"]


def test_unknown_flat_field_is_one_line():
    with pytest.raises(InformerError, match=r"^model: unknown field\(s\) \['d_modle'\]"):
        InformerModule(d_modle=8)


def test_a_0_1_checkpoint_and_artifact_load_and_agree():
    old_hparams = torch.load(OLD / "last.ckpt", weights_only=True)["hyper_parameters"]
    assert "lr" in old_hparams and "net" not in old_hparams  # really the old layout
    from_ckpt, data = load_checkpoint(OLD / "last.ckpt")
    from_artifact = load_model(OLD / "model")
    assert data["file"] == "ETTh1.csv"
    assert from_ckpt.net.config == from_artifact.net.config
    torch.manual_seed(0)
    x, x_mark = torch.randn(3, 48, 7), torch.randn(3, 48, 4)
    y_mark = torch.randn(3, 72, 4)
    assert torch.equal(from_ckpt.net.predict(x, x_mark, y_mark),
                       from_artifact.net.predict(x, x_mark, y_mark))


def test_a_0_1_checkpoint_resumes_training(train_cfg, tmp_path):
    ckpt = tmp_path / "old.ckpt"
    shutil.copy(OLD / "last.ckpt", ckpt)
    cfg = train_cfg(*OLD_NET, f"ckpt_path={ckpt}", "trainer.max_epochs=2",
                    "trainer.limit_train_batches=2", "trainer.limit_test_batches=1",
                    "plot=false", out=tmp_path / "resumed")
    metrics = train(cfg)
    assert metrics["epochs"] == 2
    logged = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert logged["test/windows"] == 32
