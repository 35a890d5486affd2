"""LightningDataModule for ETT-style CSV files."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from typing_extensions import override

from informer.data.series import SeriesData, check_scaler_fit, check_windows
from informer.data.sources import resolve_data_file
from informer.data.windows import WindowDataset, collate_batch
from informer.errors import InformerError
from informer.schema import DataSchema, check_features


class ETTDataModule(L.LightningDataModule):
    """Train/val/test sliding windows of one CSV (``date`` + numeric columns).

    ``split='ett_hour'``/``'ett_minute'`` use the paper's fixed ETT borders, ``'ratio'`` uses
    ``train_ratio``/``test_ratio`` (70/20 by default, validation in between). The scaler is fit
    on the train rows (``scaler_fit='file'``: on every row, as the paper's runs); batches are
    dicts of ``x``, ``x_mark``, ``y``, ``y_mark`` (see
    :class:`~informer.data.windows.WindowDataset`).
    """

    def __init__(self, data_dir: str = "data", file: str = "ETTh1.csv", target: str = "OT",
                 features: str = "M", freq: str = "h", embed: str = "timeF",
                 seq_len: int = 96, label_len: int = 48, pred_len: int = 24,
                 split: str = "ett_hour", train_ratio: float = 0.7, test_ratio: float = 0.2,
                 batch_size: int = 32, eval_batch_size: int | None = None,
                 num_workers: int = 0, download: bool = True, check_freq: bool = True,
                 scaler_fit: str = "train") -> None:
        super().__init__()
        check_features(features)
        check_windows(seq_len, label_len, pred_len)
        check_scaler_fit(scaler_fit)
        self.save_hyperparameters(logger=False)
        self.series: SeriesData | None = None

    @property
    def path(self) -> Path:
        return Path(self.hparams.data_dir).expanduser() / self.hparams.file

    @override
    def prepare_data(self) -> None:
        resolve_data_file(self.hparams.data_dir, self.hparams.file, self.hparams.download)

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.series is not None:
            return
        h = self.hparams
        path = resolve_data_file(h.data_dir, h.file, h.download)
        self.series = SeriesData.fit(
            path, target=h.target, features=h.features, freq=h.freq, embed=h.embed,
            seq_len=h.seq_len, label_len=h.label_len, pred_len=h.pred_len, split=h.split,
            train_ratio=h.train_ratio, test_ratio=h.test_ratio, check_freq=h.check_freq,
            scaler_fit=h.scaler_fit)
        self.datasets = {s: self.series.dataset(s) for s in ("train", "val", "test")}
        if len(self.datasets["train"]) < h.batch_size:
            raise InformerError(
                f"data.batch_size: the train split has {len(self.datasets['train'])} windows, "
                f"fewer than one batch of {h.batch_size} (training drops partial batches)")

    @property
    def schema(self) -> DataSchema:
        if self.series is None:
            self.setup()
        return self.series.schema

    def _loader(self, dataset: WindowDataset, train: bool) -> DataLoader:
        """Under torch.distributed, each rank reads its own share: shuffled and padded for
        training, unrepeated for val/test so that metrics cover every window exactly once."""
        h = self.hparams
        sampler = None
        if dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
            sampler = (DistributedSampler(dataset, world, rank, shuffle=True, drop_last=True)
                       if train else range(rank, len(dataset), world))
        return DataLoader(dataset, batch_size=h.batch_size if train else
                          (h.eval_batch_size or h.batch_size),
                          shuffle=train and sampler is None, sampler=sampler, drop_last=train,
                          num_workers=h.num_workers, collate_fn=collate_batch,
                          persistent_workers=h.num_workers > 0)

    @override
    def train_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["train"], train=True)

    @override
    def val_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["val"], train=False)

    @override
    def test_dataloader(self) -> DataLoader:
        return self._loader(self.datasets["test"], train=False)
