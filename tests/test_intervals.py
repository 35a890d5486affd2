"""Quantile forecasts and skill against naive baselines: equations, network outputs, and what
the artifact, ``informer-eval``, forecasts and backtests report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from informer import baselines, intervals
from informer.artifact import save_artifact
from informer.cli.train import train
from informer.config import InformerConfig
from informer.errors import InformerError
from informer.evaluation import evaluate
from informer.forecast import Forecaster, quantile_column
from informer.nn import Informer
from informer.schema import DataSchema
from informer.scores import Scorer
from tests.conftest import ETT_DIR

LEVELS = [0.1, 0.5, 0.9]


def test_pinball_loss_equation():
    outputs = torch.tensor([[1.0, 2.0, 3.0]])  # one value's 0.1/0.5/0.9 quantiles
    true = torch.tensor([2.5])
    # y above a level: q (y - y_q); below: (1 - q) (y_q - y)
    expected = [0.1 * 1.5, 0.5 * 0.5, 0.1 * 0.5]
    assert intervals.pinball(outputs, true, LEVELS)[0].tolist() == pytest.approx(expected)
    assert float(intervals.pinball_loss(outputs, true, LEVELS)) == pytest.approx(
        sum(expected) / 3)


def test_coverage_wql_and_crps_from_sums():
    true = torch.tensor([0.0, 1.0, 2.0, 10.0])
    outputs = torch.tensor([[-1.0, 0.0, 1.0]] * 4)  # the 80% interval is [-1, 1]
    sums = intervals.quantile_sums(outputs, true, LEVELS)
    assert sums.shape == (intervals.n_sums(LEVELS),)
    got = intervals.interval_metrics(sums, LEVELS)
    assert got["coverage_80"] == 0.5  # 0 and 1 inside, 2 and 10 outside
    loss = intervals.pinball(outputs, true, LEVELS).sum(0)  # per level
    assert got["wql"] == pytest.approx(float((2 * loss).sum() / 3 / 13.0))
    assert got["crps"] == pytest.approx(float((2 * loss).sum() / 3 / 4))
    # summing batches' sums gives the whole set's figures
    halves = intervals.quantile_sums(outputs[:2], true[:2], LEVELS) + \
        intervals.quantile_sums(outputs[2:], true[2:], LEVELS)
    assert torch.allclose(halves, sums)


@pytest.mark.parametrize(("freq", "season"), [("h", 24), ("15min", 96), ("D", 7), ("B", 5),
                                              ("W", 52), ("MS", 12), ("YS", None)])
def test_season_length_follows_the_frequency(freq, season):
    assert baselines.season_length(freq) == season


def test_naive_forecasts_and_skill_equations():
    x = torch.arange(30.0).reshape(1, 30, 1)  # history 0..29, season 24
    fc = baselines.naive_forecasts(x, 26, 24)
    # step h repeats the value one season before it: t + h - 24 (t = 29), then a season back
    assert fc["seasonal_naive"][0, :, 0].tolist() == [float(v) for v in
                                                      list(range(6, 30)) + [6, 7]]
    assert torch.all(fc["window_mean"] == 14.5)
    assert "seasonal_naive" not in baselines.naive_forecasts(x[:, :20], 4, 24)  # too short

    true = torch.full((1, 2, 1), 30.0)
    pred = torch.full((1, 2, 1), 29.0)
    sums = baselines.step_sums(pred, true, x, 24)
    got = baselines.skill_metrics(sums)
    # seasonal naive predicts 6 and 7: squared errors 576 and 529; the model's are 1 and 1
    assert got["mse_seasonal_naive"] == pytest.approx((576 + 529) / 2)
    assert got["skill_seasonal_naive"] == pytest.approx(1 - 2 / (576 + 529))
    assert got["skill_window_mean"] == pytest.approx(1 - 2 / (2 * 15.5**2))
    assert baselines.skill_by_step(sums)["skill_seasonal_naive"] == pytest.approx(
        [1 - 1 / 576, 1 - 1 / 529])


@pytest.mark.parametrize("revin", [False, True])
def test_quantile_network_outputs_every_level_sorted(revin):
    config = InformerConfig(enc_in=3, dec_in=3, c_out=3, seq_len=16, label_len=8, pred_len=4,
                            d_model=16, n_heads=2, d_ff=16, quantiles=LEVELS, revin=revin)
    net = Informer(config).eval()
    x, x_mark, y_mark = torch.randn(2, 16, 3), torch.randn(2, 16, 4), torch.randn(2, 12, 4)
    raw = net.predict_outputs(x, x_mark, y_mark)
    assert raw.shape == (2, 4, 3, 3)
    levels = net.predict_quantiles(x, x_mark, y_mark)
    assert torch.all(levels[..., 1:] >= levels[..., :-1])
    assert torch.equal(net.predict(x, x_mark, y_mark), levels[..., 1])  # the 0.5 level


@pytest.mark.parametrize("bad", [[], [0.5, 0.1], [0.0, 0.5], [0.5, 1.0], [0.2, 0.2]])
def test_bad_quantiles_are_one_line(bad):
    with pytest.raises(InformerError, match=r"^model.net.quantiles: expected a non-empty, "
                                            r"strictly increasing list of levels in \(0, 1\)"):
        InformerConfig(quantiles=bad)


def quantile_artifact(path, spread=(-1.0, 0.0, 1.0)):
    """A 3-variable hourly artifact whose levels are ``spread`` (scaled) for every value."""
    columns = ["a", "b", "OT"]
    schema = DataSchema(columns=columns, target="OT", features="M", freq="h", embed="timeF",
                        seq_len=48, label_len=8, pred_len=6, mean=[10.0, 20.0, 30.0],
                        std=[1.0, 2.0, 4.0], input_columns=columns)
    config = InformerConfig(enc_in=3, dec_in=3, c_out=3, seq_len=48, label_len=8, pred_len=6,
                            d_model=8, n_heads=2, d_ff=16, quantiles=LEVELS)
    net = Informer(config)
    with torch.no_grad():
        net.projection.weight.zero_()
        net.projection.bias.copy_(torch.tensor(spread).repeat(3))
    return save_artifact(path, net, schema)


def test_forecast_and_backtest_carry_quantile_columns(tmp_path):
    forecaster = Forecaster.from_artifact(quantile_artifact(tmp_path / "q"))
    dates = pd.date_range("2020-01-01", periods=200, freq="h")
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"date": dates, "a": 10 + rng.normal(size=200),
                       "b": 20 + 2 * rng.normal(size=200), "OT": 30 + 4 * rng.normal(size=200)})
    out = forecaster.forecast(df)
    assert list(out.columns) == ["date", "a", "a_p10", "a_p50", "a_p90", "b", "b_p10", "b_p50",
                                 "b_p90", "OT", "OT_p10", "OT_p50", "OT_p90"]
    # levels in original units: mean + level * std; the point is the 0.5 level
    assert out["OT_p10"].tolist() == pytest.approx([26.0] * 6)
    assert out["OT_p90"].tolist() == pytest.approx([34.0] * 6)
    assert out["OT"].equals(out["OT_p50"])
    result = forecaster.backtest(df, stride=10)
    assert [c for c in result.frame.columns if c.startswith("OT")] == \
        ["OT", "OT_p10", "OT_p50", "OT_p90", "OT_actual"]
    # values are N(mean, std) in units: the +-1 std band holds about 68% of them
    assert 0.55 < result.metrics["coverage_80"] < 0.8
    assert result.metrics["coverage_80"] == result.metrics["coverage_80_original"]
    assert {"skill_seasonal_naive", "skill_window_mean"} <= set(result.by_step.columns)
    assert quantile_column("OT", 0.025) == "OT_p2.5"
    # the first step lands at the training mean: the jump from each origin's last value,
    # in units of each variable's standard deviation over the rows the backtest covers
    starts = range(0, 200 - 48 - 6 + 1, 10)
    span = df[["a", "b", "OT"]].to_numpy()
    last = span[[i + 47 for i in starts]]
    expected = np.mean(np.abs(np.array([10.0, 20.0, 30.0]) - last) / span.std(axis=0))
    assert result.metrics["level_jump"] == pytest.approx(expected)


@pytest.fixture(scope="module")
def quantile_run(tmp_path_factory, ett_dir):
    from tests.conftest import compose_cfg

    out = tmp_path_factory.mktemp("quantile") / "run"
    cfg = compose_cfg("train", ["experiment=etth1_M_24", "debug=tiny", "model.net.revin=true",
                                "model.net.quantiles=[0.1,0.5,0.9]", "trainer.max_epochs=2",
                                "trainer.limit_test_batches=20", "trainer.precision=32-true",
                                "plot=false", f"paths.output_dir={out}",
                                f"paths.data_dir={ett_dir}"])
    return out, train(cfg)


def test_training_reports_intervals_and_skill_as_evaluate_does(quantile_run):
    out, metrics = quantile_run
    for key in ("test/coverage_80", "test/wql", "test/crps", "test/wql_original",
                "test/skill_seasonal_naive", "test/skill_window_mean", "val/coverage_80"):
        assert math.isfinite(metrics[key]), key
    assert 0.0 < metrics["test/coverage_80"] < 1.0
    from informer import load_model
    from informer.cli.evaluate import series_of

    loaded = load_model(out / "model")
    assert loaded.net.config.quantiles == LEVELS
    # calibrated on the validation split before the test; both figures reported
    assert len(loaded.net.config.calibration) == 1 and len(loaded.net.config.calibration[0]) == 7
    assert math.isfinite(metrics["test/coverage_80_raw"])
    series = series_of(loaded, loaded.info["run"]["data"], str(ETT_DIR))
    # the run tested its first 20 batches of 32 windows
    exact = evaluate(loaded.net, loaded.schema, _Windows(series.dataset("test"), 20 * 32),
                     precision="32-true")
    for key in ("mse", "coverage_80", "coverage_80_raw", "wql", "crps", "skill_seasonal_naive",
                "windows"):
        assert metrics[f"test/{key}"] == pytest.approx(exact[key], rel=1e-5), key


def test_backtest_scores_the_served_intervals_as_evaluate_does(quantile_run):
    """The calibration is applied once: a backtest of the test split and informer-eval's
    evaluate() give the same calibrated and raw coverage."""
    from informer import load_model
    from informer.cli.evaluate import series_of
    from informer.data.csv import read_csv

    out, _ = quantile_run
    loaded = load_model(out / "model")
    series = series_of(loaded, loaded.info["run"]["data"], str(ETT_DIR))
    exact = evaluate(loaded.net, loaded.schema, series.dataset("test"), precision="32-true")
    backtest = Forecaster(loaded, precision="32-true").backtest(read_csv(ETT_DIR / "ETTh1.csv"))
    for key in ("coverage_80", "coverage_80_raw", "wql", "skill_seasonal_naive"):
        assert backtest.metrics[key] == pytest.approx(exact[key], rel=1e-6), key


class _Windows(torch.utils.data.Dataset):
    """The first ``n`` windows of a WindowDataset, fetched as whole batches."""

    def __init__(self, dataset, n):
        self.dataset, self.n = dataset, n

    def __len__(self):
        return self.n

    def __getitems__(self, indices):
        return self.dataset.__getitems__(indices)


def test_scorer_leaves_out_an_undefined_baseline():
    config = InformerConfig(enc_in=1, dec_in=1, c_out=1, seq_len=12, label_len=4, pred_len=4,
                            d_model=8, n_heads=2, d_ff=8)
    scorer = Scorer(config)  # hourly: a season of 24 rows does not fit in 12
    batch = {"x": torch.randn(5, 12, 1), "y": torch.randn(5, 8, 1)}
    metrics = scorer.metrics(scorer.batch(torch.randn(5, 4, 1), batch))
    assert "skill_seasonal_naive" not in metrics and "skill_window_mean" in metrics


def test_conformal_calibration_moves_the_bounds_to_the_validation_quantile():
    """One variable, constant raw levels -1/0/1: the offset is the ceil((n+1)0.8)/n quantile
    of max(q_lo - y, y - q_hi) over the validation values, and it widens the served interval."""
    from informer.calibration import conformal_offsets
    from informer.data.windows import WindowDataset
    from informer.nn.model import quantiles_of

    config = InformerConfig(enc_in=1, dec_in=1, c_out=1, seq_len=8, label_len=4, pred_len=2,
                            d_model=8, n_heads=2, d_ff=8, quantiles=LEVELS)
    net = Informer(config)
    with torch.no_grad():
        net.projection.weight.zero_()
        net.projection.bias.copy_(torch.tensor([-1.0, 0.0, 1.0]))
    values = torch.linspace(-3, 3, 40).reshape(-1, 1)
    dataset = WindowDataset(values, torch.zeros(40, 4), 8, 4, 2)
    (offset,), = conformal_offsets(net, dataset, precision="32-true")
    future = torch.stack([values[i + 8:i + 10, 0] for i in range(len(dataset))]).flatten()
    scores = torch.maximum(-1 - future, future - 1).sort().values.double()
    n = len(scores)
    assert offset == pytest.approx(float(scores[math.ceil((n + 1) * 0.8) - 1]))
    config.calibration = [[offset]]
    served = quantiles_of(torch.tensor([[-1.0, 0.0, 1.0]]), config)
    assert served[0].tolist() == pytest.approx([-1 - offset, 0.0, 1 + offset])
    inside = ((future >= -1 - offset) & (future <= 1 + offset)).double().mean()
    assert inside >= 0.8
    with pytest.raises(InformerError, match=r"^model.net.calibration: expected 1 rows of 1"):
        InformerConfig(enc_in=1, dec_in=1, c_out=1, quantiles=LEVELS, calibration=[[1.0, 2.0]])
