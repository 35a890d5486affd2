"""Forecasts past the data and backtests from the artifact alone (informer.forecast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from informer.artifact import save_artifact
from informer.config import InformerConfig
from informer.errors import InformerError
from informer.forecast import Forecaster
from informer.nn import Informer
from informer.schema import DataSchema
from tests.conftest import ETT_DIR


def constant_artifact(path, freq="h", features="M", columns=("a", "b", "OT"), seq_len=16,
                      pred_len=5, bias=(0.5, -1.0, 2.0)):
    """An artifact whose network always predicts ``bias`` (scaled), for exact unit checks."""
    columns = list(columns)
    mean = [10.0 * (i + 1) for i in range(len(columns))]
    std = [0.5 * (i + 1) for i in range(len(columns))]
    schema = DataSchema(columns=columns, target="OT", features=features, freq=freq,
                        embed="timeF", seq_len=seq_len, label_len=8, pred_len=pred_len,
                        mean=mean, std=std, input_columns=columns)
    config = InformerConfig(enc_in=len(columns), dec_in=len(columns), c_out=schema.c_out,
                            seq_len=seq_len, label_len=8, pred_len=pred_len, d_model=8,
                            n_heads=2, d_ff=16, freq=freq)
    net = Informer(config)
    with torch.no_grad():
        net.projection.weight.zero_()
        net.projection.bias.copy_(torch.tensor(bias[: schema.c_out]))
    return save_artifact(path, net, schema), schema


def history(n, freq, columns=("a", "b", "OT"), start="2018-06-01"):
    dates = pd.date_range(start, periods=n, freq=freq)
    rng = np.random.default_rng(0)
    return pd.DataFrame({"date": dates, **{c: rng.normal(size=n) for c in columns}})


@pytest.mark.parametrize(("freq", "last", "first_future", "second_future"), [
    ("h", "2018-06-26 19:00", "2018-06-26 20:00", "2018-06-26 21:00"),
    ("15min", "2018-06-26 19:45", "2018-06-26 20:00", "2018-06-26 20:15"),
    ("D", "2018-06-26", "2018-06-27", "2018-06-28"),
])
def test_future_timestamps_follow_the_artifact_freq(tmp_path, freq, last, first_future,
                                                    second_future):
    path, _ = constant_artifact(tmp_path / "m", freq=freq)
    df = history(40, freq, start=pd.Timestamp(last) - 39 * pd.tseries.frequencies.to_offset(freq))
    assert df["date"].iloc[-1] == pd.Timestamp(last)
    out = Forecaster.from_artifact(path).forecast(df)
    assert list(out.columns) == ["date", "a", "b", "OT"]
    assert out["date"].iloc[0] == pd.Timestamp(first_future)
    assert out["date"].iloc[1] == pd.Timestamp(second_future)
    assert len(out) == 5


@pytest.mark.parametrize(("features", "columns", "expected"), [
    ("M", ["a", "b", "OT"], {"a": 0.5 * 0.5 + 10, "b": -1.0 * 1.0 + 20, "OT": 2.0 * 1.5 + 30}),
    ("S", ["OT"], {"OT": 0.5 * 0.5 + 10}),
    ("MS", ["a", "b", "OT"], {"OT": 0.5 * 1.5 + 30}),
])
def test_inverse_scaling_is_exact(tmp_path, features, columns, expected):
    path, schema = constant_artifact(tmp_path / "m", features=features, columns=columns)
    out = Forecaster.from_artifact(path).forecast(history(30, "h", columns))
    assert list(out.columns) == ["date", *expected]
    for column, value in expected.items():
        np.testing.assert_allclose(out[column].to_numpy(), value, rtol=1e-6)


def test_s_model_accepts_the_training_csv_columns(tmp_path):
    path, _ = constant_artifact(tmp_path / "m", features="S", columns=["OT"])
    loaded = Forecaster.from_artifact(path)
    loaded.schema.input_columns = ["a", "b", "OT"]
    assert len(loaded.forecast(history(30, "h", ("a", "b", "OT")))) == 5


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda df: df.drop(columns=["b"]), "input: missing column(s) ['b']"),
    (lambda df: df.assign(extra=1.0), "input: unexpected column(s) ['extra']"),
    (lambda df: df.tail(10), "input: 10 rows; expected at least seq_len = 16 rows"),
    (lambda df: df.drop(index=5), "input: column 'date' line 7: expected 2018-06-01 05:00:00 one "
                                  "step ('h') after 2018-06-01 04:00:00"),
    (lambda df: df.assign(a=df["a"].where(df.index != 3)), "input: column 'a' line 5: expected "
                                                           "a finite number, got a missing value"),
    (lambda df: df.drop(columns=["date"]), "input: no 'date' column"),
])
def test_bad_history(tmp_path, mutate, message):
    path, _ = constant_artifact(tmp_path / "m")
    with pytest.raises(InformerError) as err:
        Forecaster.from_artifact(path).forecast(mutate(history(30, "h")))
    assert message in str(err.value)


def test_backtest_frame_layout_and_unknown_future(tmp_path):
    path, _ = constant_artifact(tmp_path / "m")
    df = history(60, "h")
    result = Forecaster.from_artifact(path).backtest(df, start=df["date"].iloc[40], stride=3)
    frame = result.frame
    assert list(frame.columns) == ["origin", "date", "step", "a", "a_actual", "b", "b_actual",
                                   "OT", "OT_actual"]
    origins = frame["origin"].drop_duplicates()
    assert list(origins) == list(df["date"].iloc[40:60:3])
    first = frame[frame["origin"] == origins.iloc[0]]
    assert list(first["step"]) == [1, 2, 3, 4, 5]
    assert list(first["date"]) == list(df["date"].iloc[41:46])
    np.testing.assert_array_equal(first["OT_actual"], df["OT"].iloc[41:46])
    last = frame[frame["origin"] == df["date"].iloc[58]]  # 1 known step, 4 past the data
    assert last["OT_actual"].isna().tolist() == [False, True, True, True, True]
    assert list(result.by_step["step"]) == [1, 2, 3, 4, 5]
    err = (frame["OT"] - frame["OT_actual"]).abs()
    known = frame[["a_actual", "b_actual", "OT_actual"]].notna().all(axis=1)
    assert result.metrics["windows"] == len(origins) and err[known].notna().all()


def test_backtest_metrics_equal_informer_eval(trained, tmp_path):
    env = {**os.environ, "INFORMER_DATA_DIR": str(ETT_DIR)}
    proc = subprocess.run([sys.executable, "-m", "informer.cli.forecast",
                           f"model={trained / 'model'}", f"input={ETT_DIR / 'ETTh1.csv'}",
                           f"output={tmp_path / 'bt.csv'}", "mode=backtest", "plot=true",
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    bt = json.loads((tmp_path / "bt_metrics.json").read_text())
    train_metrics = json.loads((trained / "metrics.json").read_text())
    assert bt["windows"] == 2857
    for key in ("mse", "mae", "mse_original", "mae_original"):
        assert bt[key] == pytest.approx(train_metrics[f"test/{key}"], rel=1e-6), key
    frame = pd.read_csv(tmp_path / "bt.csv")
    assert len(frame) == 2857 * 24 and frame["origin"].iloc[0] == "2017-10-23T23:00:00"
    by_step = pd.read_csv(tmp_path / "bt_by_step.csv")
    assert by_step["mse"].mean() == pytest.approx(bt["mse"], rel=1e-9)
    for png in ("bt_origins.png", "bt_error_by_step.png"):
        assert (tmp_path / png).stat().st_size > 10_000
    assert (trained / "plots" / "test_split_origins.png").stat().st_size > 10_000


def test_forecast_cli_writes_the_documented_csv(trained, tmp_path):
    source = pd.read_csv(ETT_DIR / "ETTh1.csv").tail(100)
    source.to_csv(tmp_path / "history.csv", index=False)
    proc = subprocess.run([sys.executable, "-m", "informer.cli.forecast",
                           f"model={trained / 'model'}", f"input={tmp_path / 'history.csv'}",
                           f"output={tmp_path / 'out' / 'forecast.csv'}", "plot=true",
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = pd.read_csv(tmp_path / "out" / "forecast.csv")
    assert list(out.columns) == ["date", "HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    assert list(out["date"][:2]) == ["2018-06-26T20:00:00", "2018-06-26T21:00:00"]
    assert len(out) == 24 and out.notna().all().all()
    assert (tmp_path / "out" / "forecast.png").stat().st_size > 10_000
    source.tail(20).to_csv(tmp_path / "short.csv", index=False)
    proc = subprocess.run([sys.executable, "-m", "informer.cli.forecast",
                           f"model={trained / 'model'}", f"input={tmp_path / 'short.csv'}",
                           f"output={tmp_path / 'out' / 'forecast.csv'}",
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"error: {tmp_path / 'short.csv'}: 20 rows; expected at least "
                                   "seq_len = 48 rows of history")
    assert len(pd.read_csv(tmp_path / "out" / "forecast.csv")) == 24  # untouched



def test_artifact_saved_without_the_value_conv_bias_loads_unchanged(tmp_path):
    """Artifacts written before the value embedding's conv had a bias (as the reference code)
    still load, with a zero bias: the same forecasts."""
    from informer.artifact import MANIFEST, WEIGHTS, load_model
    from informer.data.sources import sha256_file

    _, schema = constant_artifact(tmp_path / "constant")
    torch.manual_seed(0)
    net = Informer(InformerConfig(enc_in=3, dec_in=3, c_out=3, seq_len=16, label_len=8,
                                  pred_len=5, d_model=8, n_heads=2, d_ff=16))
    key = "enc_embedding.value_embedding.token_conv.bias"
    with torch.no_grad():
        net.state_dict()[key].zero_()
    path = save_artifact(tmp_path / "m", net, schema)
    state = torch.load(path / WEIGHTS, weights_only=True)
    del state[key]
    torch.save(state, path / WEIGHTS)  # the old layout, with a matching manifest
    manifest = json.loads((path / MANIFEST).read_text())
    manifest["files"][WEIGHTS] = sha256_file(path / WEIGHTS)
    (path / MANIFEST).write_text(json.dumps(manifest))
    legacy = load_model(path).net
    assert torch.equal(legacy.state_dict()[key], torch.zeros(8))
    x, y = torch.randn(2, 16, 3), torch.randn(2, 13, 3)
    xm, ym = torch.rand(2, 16, 4), torch.rand(2, 13, 4)
    expected = net.eval()(x, xm, y, ym)
    assert expected.std() > 0 and torch.equal(legacy(x, xm, y, ym), expected)
