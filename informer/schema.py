"""The data contract a trained model carries: columns, target, frequency, window lengths and
the train-split scaler statistics. Produced by the DataModule, stored in the model artifact and
used by every later stage to turn CSV rows into model inputs and predictions back into units."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from informer.errors import InformerError

FEATURES = ("M", "S", "MS")


def check_features(features: str) -> str:
    if features not in FEATURES:
        raise InformerError(
            f"data.features: expected one of {list(FEATURES)} (M: all->all, S: target->target, "
            f"MS: all->target), got {features!r}"
        )
    return features


@dataclass
class DataSchema:
    """``columns``: model input columns in order (target last); ``mean``/``std``: per column;
    ``input_columns``: every value column of the training CSV (inputs may carry them)."""

    columns: list[str]
    target: str
    features: str
    freq: str
    embed: str
    seq_len: int
    label_len: int
    pred_len: int
    mean: list[float]
    std: list[float]
    input_columns: list[str] | None = None

    @property
    def predicted(self) -> list[str]:
        """Columns the model outputs: all of them for M, the target for S and MS."""
        return list(self.columns) if self.features == "M" else [self.target]

    @property
    def enc_in(self) -> int:
        return len(self.columns)

    @property
    def c_out(self) -> int:
        return len(self.predicted)

    def scale(self, values: np.ndarray) -> np.ndarray:
        """Standardise ``[..., len(columns)]`` with the train-split statistics."""
        return (values - np.asarray(self.mean)) / np.asarray(self.std)

    def unscale(self, values: np.ndarray) -> np.ndarray:
        """Back to original units for predicted columns ``[..., c_out]``."""
        idx = [self.columns.index(c) for c in self.predicted]
        return values * np.asarray(self.std)[idx] + np.asarray(self.mean)[idx]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DataSchema:
        try:
            return cls(**values)
        except TypeError as err:
            raise InformerError(f"artifact schema: {err}") from err
