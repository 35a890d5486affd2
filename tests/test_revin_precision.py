"""RevIN (``model.net.revin``) and the ``auto`` precision choice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from informer.config import InformerConfig
from informer.errors import InformerError
from informer.nn import Informer
from informer.nn.revin import RevIN
from informer.precision import resolve_precision, trainer_device_type, uses_bf16
from tests.test_network import inputs

SHAPES = {"M": (5, 5), "MS": (5, 1), "S": (1, 1)}


def revin_net(features: str, enc_in_override: int | None = None) -> Informer:
    enc_in, c_out = SHAPES[features]
    enc_in = enc_in_override or enc_in
    torch.manual_seed(0)
    c = InformerConfig(enc_in=enc_in, dec_in=enc_in, c_out=c_out, seq_len=32, label_len=16,
                       pred_len=8, d_model=16, n_heads=2, d_ff=32, revin=True)
    return Informer(c).eval()


def test_revin_normalises_each_window_and_channel():
    x = torch.randn(4, 50, 3) * torch.tensor([1.0, 10.0, 100.0]) + torch.tensor([-5.0, 0, 7e3])
    revin = RevIN(3)
    z, (mean, std) = revin.normalize(x)
    assert z.shape == x.shape and mean.shape == std.shape == (4, 1, 3)
    torch.testing.assert_close(z.mean(dim=1), torch.zeros(4, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(dim=1, unbiased=False), torch.ones(4, 3), atol=1e-3, rtol=0)


def test_revin_denormalize_inverts_normalize_with_learned_affine():
    revin = RevIN(4)
    with torch.no_grad():
        revin.weight.copy_(torch.tensor([0.5, 2.0, 1.5, 3.0]))
        revin.bias.copy_(torch.tensor([1.0, -1.0, 0.2, 0.0]))
    x = torch.randn(2, 30, 4) * 3 + 11
    z, stats = revin.normalize(x)
    torch.testing.assert_close(revin.denormalize(z, stats), x, atol=1e-4, rtol=1e-5)
    # the outputs map to the last c_out input channels (the target for S and MS)
    torch.testing.assert_close(revin.denormalize(z[..., -1:], stats), x[..., -1:], atol=1e-4,
                               rtol=1e-5)


@pytest.mark.parametrize("features", list(SHAPES))
def test_revin_forecasts_follow_shift_and_scale_of_the_input(features):
    """With RevIN the forecast of ``a * x + b`` is ``a * forecast(x) + b`` for each window."""
    net = revin_net(features)
    c = net.config
    x, xm, ym = inputs(c, batch=4)
    a, b = torch.tensor([3.0, 0.5, 10.0, 2.0]).view(4, 1, 1), torch.tensor(-7.0)
    with torch.no_grad():
        y = net.predict(x, xm, ym)
        y_affine = net.predict(a * x + b, xm, ym)
    assert y.shape == (4, c.pred_len, c.c_out)
    torch.testing.assert_close(y_affine, a * y + b, atol=2e-4, rtol=2e-4)


def test_revin_parameters_train_and_are_in_the_state_dict():
    net = revin_net("M").train()
    x, xm, ym = inputs(net.config)
    net.predict(x, xm, ym).square().mean().backward()
    assert net.revin.weight.grad is not None and net.revin.bias.grad is not None
    assert {"revin.weight", "revin.bias"} <= set(net.state_dict())
    assert "revin.weight" not in Informer(InformerConfig()).state_dict()


def test_revin_validation():
    with pytest.raises(InformerError, match=r"^model\.net\.revin: expected true or false"):
        InformerConfig(revin="yes")
    with pytest.raises(InformerError, match=r"^model\.net\.revin: expected dec_in == enc_in"):
        InformerConfig(enc_in=3, dec_in=4, c_out=3, revin=True)


def test_revin_round_trips_through_the_artifact(tmp_path):
    from informer.artifact import load_model, save_artifact
    from informer.data.series import SeriesData
    from tests.conftest import write_series

    schema = SeriesData.fit(write_series(tmp_path / "s.csv"), features="MS", seq_len=32,
                            label_len=16, pred_len=8).schema
    net = revin_net("MS", enc_in_override=schema.enc_in)
    loaded = load_model(save_artifact(tmp_path / "model", net, schema))
    assert loaded.net.config.revin
    x, xm, ym = inputs(net.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded.net.predict(x, xm, ym), net.predict(x, xm, ym))


def test_auto_precision_follows_the_hardware(monkeypatch):
    import informer.precision as precision

    for fast, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert resolve_precision("auto", "cpu") == expected
        assert uses_bf16("auto") is fast
    assert resolve_precision("32-true") == "32-true"
    assert resolve_precision("bf16-mixed") == "bf16-mixed"
    assert resolve_precision("auto", "mps") == "32-true"
    assert trainer_device_type("cpu") == "cpu" and trainer_device_type("gpu") == "cuda"
    with pytest.raises(InformerError, match=r"^precision: expected one of .*got 'fp8'"):
        resolve_precision("fp8")


def test_train_config_resolves_auto_precision(train_cfg, monkeypatch):
    """The run's saved config records the precision actually used, not ``auto``."""
    import informer.precision as precision
    from informer.cli.train import train

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    cfg = train_cfg("trainer.max_epochs=1", "trainer.limit_train_batches=1",
                    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "plot=false",
                    "export_artifact=false", "model.net.revin=true")
    assert cfg.trainer.precision == "auto"
    metrics = train(cfg)
    saved = (Path(cfg.paths.output_dir) / "config.yaml").read_text()
    assert "precision: 32-true" in saved and "revin: true" in saved
    assert metrics["test/mse"] > 0 and (Path(cfg.paths.output_dir) / "metrics.json").is_file()
