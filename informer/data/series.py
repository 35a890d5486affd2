"""A validated, split and scaled series: the one place CSV rows become model-ready tensors."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from informer.data.csv import load_series
from informer.data.splits import STAGES, split_borders
from informer.data.windows import WindowDataset
from informer.errors import InformerError
from informer.schema import DataSchema
from informer.timefeatures import normalize_freq, time_features


def check_windows(seq_len: int, label_len: int, pred_len: int) -> None:
    """Window lengths: ``seq_len >= 1``, ``0 <= label_len <= seq_len``, ``pred_len >= 1``."""
    for name, value, low in (("seq_len", seq_len, 1), ("label_len", label_len, 0),
                             ("pred_len", pred_len, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InformerError(f"data.{name}: expected an integer >= {low}, got {value!r}")
    if label_len > seq_len:
        raise InformerError(f"data.label_len: expected label_len <= seq_len ({seq_len}), "
                            f"got {label_len}")


SCALER_FITS = ("train", "file")


def check_scaler_fit(scaler_fit: str) -> None:
    """``scaler_fit``: the rows the scaler is fit on, ``train`` or ``file`` (every row)."""
    if scaler_fit not in SCALER_FITS:
        raise InformerError(f"data.scaler_fit: expected one of {', '.join(SCALER_FITS)}, "
                            f"got {scaler_fit!r}")


def fit_scaler(values: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-column mean and population std (ddof 0); a constant column gets std 1."""
    mean = values.mean(axis=0)
    std = values.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return mean.tolist(), std.tolist()


@dataclass
class SeriesData:
    """``dates [T]``, raw ``values [T, C]`` (float64, original units), the schema, the borders."""

    dates: pd.DatetimeIndex
    values: np.ndarray
    schema: DataSchema
    borders: dict[str, tuple[int, int]]

    @classmethod
    def fit(cls, path: str | Path, *, target: str = "OT", features: str = "M", freq: str = "h",
            embed: str = "timeF", seq_len: int = 96, label_len: int = 48, pred_len: int = 24,
            split: str = "ratio", train_ratio: float = 0.7, test_ratio: float = 0.2,
            check_freq: bool = True, scaler_fit: str = "train") -> SeriesData:
        """Read ``path`` and fit the scaler on the train rows (``scaler_fit='train'``) or on
        every row of the file (``'file'``: the reference code before its 2021-03 fix, which
        produced the paper's tables; the statistics then see the validation and test rows)."""
        normalize_freq(freq)
        check_windows(seq_len, label_len, pred_len)
        check_scaler_fit(scaler_fit)
        dates, values, columns, source = load_series(path, target, features,
                                                     freq if check_freq else None)
        borders = split_borders(len(values), seq_len, split, train_ratio, test_ratio)
        start, end = borders["train"] if scaler_fit == "train" else (0, len(values))
        mean, std = fit_scaler(values[start:end])
        schema = DataSchema(columns=columns, target=target, features=features, freq=freq,
                            embed=embed, seq_len=seq_len, label_len=label_len,
                            pred_len=pred_len, mean=mean, std=std, input_columns=source)
        return cls(dates, values, schema, borders)

    @classmethod
    def with_schema(cls, path: str | Path, schema: DataSchema, split: str = "ratio",
                    train_ratio: float = 0.7, test_ratio: float = 0.2,
                    check_freq: bool = True) -> SeriesData:
        """Read ``path`` for a trained model: same columns, its stored scaler statistics."""
        dates, values, *_ = load_series(path, schema.target, schema.features,
                                        schema.freq if check_freq else None)
        borders = split_borders(len(values), schema.seq_len, split, train_ratio, test_ratio)
        return cls(dates, values, schema, borders)

    @cached_property
    def scaled(self) -> np.ndarray:
        """Standardised values ``[T, C]`` as float32."""
        return self.schema.scale(self.values).astype(np.float32)

    @cached_property
    def marks(self) -> np.ndarray:
        """Calendar features ``[T, mark_dim]`` for the schema's embedding."""
        return time_features(self.dates, self.schema.freq, self.schema.embed)

    def dataset(self, stage: str) -> WindowDataset:
        if stage not in STAGES:
            raise InformerError(f"split: expected one of {list(STAGES)}, got {stage!r}")
        start, end = self.borders[stage]
        s = self.schema
        return WindowDataset(self.scaled[start:end], self.marks[start:end], s.seq_len,
                             s.label_len, s.pred_len, name=stage)
