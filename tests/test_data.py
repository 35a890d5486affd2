"""Splits, window counts, scaler statistics, calendar features and batch contents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from informer.data.datamodule import ETTDataModule
from informer.data.series import SeriesData
from informer.data.splits import split_borders
from informer.errors import InformerError
from informer.timefeatures import future_dates, mark_dim, time_features
from tests.conftest import write_series


def test_etth1_windows_and_borders(ett_dir):
    dm = ETTDataModule(data_dir=str(ett_dir), file="ETTh1.csv", seq_len=96, label_len=48,
                       pred_len=24, split="ett_hour")
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 8521, "val": 2857,
                                                          "test": 2857}
    assert dm.series.borders == {"train": (0, 8640), "val": (8544, 11520),
                                 "test": (11424, 14400)}
    # the test loader visits every window: no drop_last
    assert sum(b["x"].size(0) for b in dm.test_dataloader()) == 2857


def test_ettm1_borders_are_four_times_hourly(ett_dir):
    dm = ETTDataModule(data_dir=str(ett_dir), file="ETTm1.csv", freq="15min", seq_len=96,
                       label_len=48, pred_len=24, split="ett_minute")
    dm.setup()
    assert dm.series.borders == {"train": (0, 34560), "val": (34464, 46080),
                                 "test": (45984, 57600)}
    assert len(dm.datasets["test"]) == 57600 - 45984 - 96 - 24 + 1


def test_scaler_fit_on_train_rows_only(ett_dir):
    dm = ETTDataModule(data_dir=str(ett_dir), file="ETTh1.csv", split="ett_hour")
    schema = dm.schema
    assert schema.columns[-1] == "OT"
    assert schema.mean[-1] == pytest.approx(17.1283, abs=1e-4)
    assert schema.std[-1] == pytest.approx(9.1765, abs=1e-4)
    raw = pd.read_csv(ett_dir / "ETTh1.csv")["OT"].to_numpy()
    assert schema.mean[-1] == pytest.approx(raw[:8640].mean(), rel=1e-12)
    assert schema.std[-1] == pytest.approx(raw[:8640].std(ddof=0), rel=1e-12)
    assert schema.mean[-1] != pytest.approx(raw.mean(), rel=1e-3)
    etth2 = ETTDataModule(data_dir=str(ett_dir), file="ETTh2.csv", split="ett_hour").schema
    assert (etth2.mean[-1], etth2.std[-1]) == (pytest.approx(26.8720, abs=1e-4),
                                               pytest.approx(11.5847, abs=1e-4))



def test_scaler_fit_file_uses_every_row_as_the_papers_runs(ett_dir):
    """``scaler_fit=file``: the statistics of the whole ETTh1 file (17,420 rows, past the
    14,400 the splits use), as the reference code had them when the paper's tables were made."""
    dm = ETTDataModule(data_dir=str(ett_dir), file="ETTh1.csv", split="ett_hour",
                       scaler_fit="file")
    raw = pd.read_csv(ett_dir / "ETTh1.csv").iloc[:, 1:].to_numpy()
    assert len(raw) == 17420
    np.testing.assert_allclose(dm.schema.mean, raw.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(dm.schema.std, raw.std(axis=0), rtol=1e-12)
    assert dm.schema.std[-1] == pytest.approx(8.567, abs=1e-3)  # OT; 9.1765 on the train rows
    dm.setup()  # the windows do not change, only their scale
    assert {k: len(v) for k, v in dm.datasets.items()} == {"train": 8521, "val": 2857,
                                                          "test": 2857}


def test_scaler_fit_rejects_unknown_rows(tmp_path):
    path = write_series(tmp_path / "s.csv", n=200)
    with pytest.raises(InformerError, match=r"^data\.scaler_fit: expected one of train, file, "
                                            r"got 'all'$"):
        SeriesData.fit(path, split="ratio", seq_len=10, label_len=5, pred_len=5,
                       scaler_fit="all")
    with pytest.raises(InformerError, match=r"^data\.scaler_fit"):
        ETTDataModule(data_dir=str(tmp_path), file="s.csv", scaler_fit="test")

def test_scaler_ignores_rows_after_train(tmp_path):
    path = write_series(tmp_path / "s.csv", n=200)
    before = SeriesData.fit(path, split="ratio", seq_len=10, label_len=5, pred_len=5).schema
    frame = pd.read_csv(path)
    frame.loc[150:, "OT"] = 1e6  # beyond the 70% train rows
    frame.to_csv(path, index=False)
    after = SeriesData.fit(path, split="ratio", seq_len=10, label_len=5, pred_len=5).schema
    assert before.mean == after.mean and before.std == after.std


def test_ratio_split_matches_reference_arithmetic():
    borders = split_borders(1000, 96, "ratio")
    assert borders == {"train": (0, 700), "val": (604, 800), "test": (704, 1000)}


@pytest.mark.parametrize(("features", "columns", "c_out"), [
    ("M", ["a", "b", "OT"], 3), ("S", ["OT"], 1), ("MS", ["a", "b", "OT"], 1)])
def test_features_select_columns(tmp_path, features, columns, c_out):
    path = write_series(tmp_path / "s.csv", columns=("OT", "a", "b"))
    s = SeriesData.fit(path, features=features, seq_len=12, label_len=6, pred_len=4).schema
    assert s.columns == columns  # target moved last
    assert (s.enc_in, s.c_out) == (len(columns), c_out)


def test_batch_windows_follow_the_rows(tmp_path):
    path = write_series(tmp_path / "s.csv", n=300)
    series = SeriesData.fit(path, seq_len=12, label_len=6, pred_len=4)
    ds = series.dataset("val")
    start = series.borders["val"][0]
    batch = ds.__getitems__([0, 5])
    assert batch["x"].shape == (2, 12, 3) and batch["y"].shape == (2, 10, 3)
    assert torch.equal(batch["x"][1], torch.from_numpy(series.scaled[start + 5:start + 17]))
    assert torch.equal(batch["y"][1], torch.from_numpy(series.scaled[start + 11:start + 21]))
    assert torch.equal(batch["y"][:, :6], batch["x"][:, -6:])  # start tokens
    assert torch.equal(batch["y_mark"][1], torch.from_numpy(series.marks[start + 11:start + 21]))
    single = ds[5]
    assert torch.equal(single["x"], batch["x"][1])
    assert len(ds) == series.borders["val"][1] - start - 12 - 4 + 1


def test_scaled_values_are_standardised(tmp_path):
    path = write_series(tmp_path / "s.csv", n=500)
    series = SeriesData.fit(path, seq_len=12, label_len=6, pred_len=4)
    train = series.scaled[: series.borders["train"][1]].astype(np.float64)
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(train.std(0), 1, atol=1e-6)


def test_timef_values_for_known_timestamps():
    stamps = pd.to_datetime(["2016-07-01 00:00", "2018-06-26 19:45"])
    hourly = time_features(stamps, "h", "timeF")
    # hour/23, dayofweek/6, (day-1)/30, (dayofyear-1)/365, each - 0.5
    np.testing.assert_allclose(hourly[0], [-0.5, 4 / 6 - 0.5, -0.5, 182 / 365 - 0.5], atol=1e-6)
    np.testing.assert_allclose(hourly[1], [19 / 23 - 0.5, 1 / 6 - 0.5, 25 / 30 - 0.5,
                                           176 / 365 - 0.5], atol=1e-6)
    minute = time_features(stamps, "15min", "timeF")
    assert minute.shape == (2, 5)
    np.testing.assert_allclose(minute[1, 0], 45 / 59 - 0.5, atol=1e-6)
    np.testing.assert_allclose(minute[:, 1:], hourly, atol=1e-6)
    assert time_features(stamps, "d", "timeF").shape == (2, 3)
    np.testing.assert_allclose(time_features(stamps, "d", "timeF"), hourly[:, 1:], atol=1e-6)
    assert hourly.min() >= -0.5 and hourly.max() <= 0.5


def test_integer_calendar_columns():
    stamps = pd.to_datetime(["2016-07-01 00:00", "2018-06-26 19:45"])
    assert time_features(stamps, "15min", "fixed").tolist() == [[7, 1, 4, 0, 0],
                                                                [6, 26, 1, 19, 3]]
    assert time_features(stamps, "h", "learned").tolist() == [[7, 1, 4, 0], [6, 26, 1, 19]]
    assert mark_dim("w", "timeF") == 2 and mark_dim("t", "timeF") == 5


def test_future_dates_step_by_freq():
    last = pd.Timestamp("2018-06-26 19:00")
    assert list(future_dates(last, "h", 2)) == [pd.Timestamp("2018-06-26 20:00"),
                                                pd.Timestamp("2018-06-26 21:00")]
    assert future_dates(pd.Timestamp("2018-06-26 19:45"), "15min", 1)[0] == \
        pd.Timestamp("2018-06-26 20:00")
    assert future_dates(last, "t", 1)[0] == pd.Timestamp("2018-06-26 19:01")


def test_loaders_shuffle_and_drop_last_only_for_training(tmp_path):
    write_series(tmp_path / "s.csv", n=400)
    dm = ETTDataModule(data_dir=str(tmp_path), file="s.csv", split="ratio", seq_len=12,
                       label_len=6, pred_len=4, batch_size=32)
    dm.setup()
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert train.drop_last and not val.drop_last
    assert sum(b["x"].size(0) for b in val) == len(dm.datasets["val"])
