"""Sliding windows over a scaled series, gathered as whole batches (no per-item pandas work)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from informer.errors import InformerError

Batch = dict[str, torch.Tensor]


def window_count(n_rows: int, seq_len: int, pred_len: int) -> int:
    return n_rows - seq_len - pred_len + 1


class WindowDataset(Dataset):
    """Windows of ``values [T, C]`` and calendar ``marks [T, M]``; item i is the window that starts
    at row i. A batch holds ``x [B, seq_len, C]``, ``x_mark [B, seq_len, M]`` and the decoder span
    ``y [B, label_len + pred_len, C]``, ``y_mark [B, label_len + pred_len, M]``.

    ``__getitems__`` lets the DataLoader fetch a batch with one gather per tensor; use
    :func:`collate_batch` as its ``collate_fn``.
    """

    def __init__(self, values: torch.Tensor | np.ndarray, marks: torch.Tensor | np.ndarray,
                 seq_len: int, label_len: int, pred_len: int, name: str = "split") -> None:
        self.values = torch.as_tensor(values, dtype=torch.float32)
        self.marks = torch.as_tensor(marks)
        if self.marks.is_floating_point():
            self.marks = self.marks.float()
        self.seq_len, self.label_len, self.pred_len = seq_len, label_len, pred_len
        self.n_windows = window_count(len(self.values), seq_len, pred_len)
        if self.n_windows < 1:
            raise InformerError(
                f"data: the {name} split has {len(self.values)} rows but seq_len + pred_len = "
                f"{seq_len + pred_len} needs at least that many; use shorter windows or more data"
            )
        self._enc = torch.arange(seq_len)
        self._dec = torch.arange(seq_len - label_len, seq_len + pred_len)

    def __len__(self) -> int:
        return self.n_windows

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        start = torch.as_tensor(indices, dtype=torch.long).unsqueeze(1)
        enc, dec = start + self._enc, start + self._dec
        return {"x": self.values[enc], "x_mark": self.marks[enc],
                "y": self.values[dec], "y_mark": self.marks[dec]}

    def __getitem__(self, index: int) -> Batch:
        if not -self.n_windows <= index < self.n_windows:
            raise IndexError(index)
        return {k: v[0] for k, v in self.__getitems__([index % self.n_windows]).items()}


def collate_batch(batch: Batch) -> Batch:
    """The batch is already stacked by :meth:`WindowDataset.__getitems__`."""
    return batch
