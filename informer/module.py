"""Informer as a LightningModule: MSE training, the paper's lr schedule, scaled + unit metrics."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from typing_extensions import override

from informer.checkpointing import rng_states, set_rng_states
from informer.config import InformerConfig
from informer.evaluation import targets, unscale
from informer.metrics import N_SUMS, error_sums, metrics_from_sums
from informer.nn.model import Informer
from informer.schema import DataSchema


class ErrorSums(Metric):
    """Distributed-safe running :func:`~informer.metrics.error_sums`."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sums", default=torch.zeros(N_SUMS, dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        self.sums += error_sums(pred, true).to(self.sums.device)

    def compute(self) -> torch.Tensor:
        return self.sums


class InformerModule(L.LightningModule):
    """Trains :class:`~informer.nn.Informer`.

    Network fields (``d_model``, ``attn``...) are keyword arguments, validated by
    :class:`~informer.config.InformerConfig`. ``schema`` (a :class:`DataSchema` dict, set by the
    train entry from the DataModule) enables metrics in original units and the artifact export.
    """

    def __init__(self, lr: float = 1e-4, lr_decay: float = 0.5,
                 schema: dict[str, Any] | None = None, **net: Any) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = InformerConfig.from_dict(net)
        self.net = Informer(self.config)
        self.schema = DataSchema.from_dict(dict(schema)) if schema else None
        self.results: dict[str, float] = {}  # last val/test metrics at float64 precision
        self.sums = torch.nn.ModuleDict(
            {f"{stage}_{space}": ErrorSums() for stage in ("val", "test")
             for space in ("scaled", "original")})

    @override
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, pred_len, c_out]`` forecast of a window batch."""
        return self.net.predict(batch["x"], batch["x_mark"], batch["y_mark"])

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        pred = self(batch).float()
        true = targets(batch, self.config.pred_len, self.config.c_out)
        loss = F.mse_loss(pred, true)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True,
                 prog_bar=stage != "test", batch_size=pred.size(0), sync_dist=stage != "train")
        if stage != "train":
            self.sums[f"{stage}_scaled"].update(pred, true)
            if self.schema is not None:
                self.sums[f"{stage}_original"].update(unscale(pred, self.schema),
                                                      unscale(true, self.schema))
        return loss

    def _log_metrics(self, stage: str) -> None:
        values = metrics_from_sums(self.sums[f"{stage}_scaled"].compute())
        if self.schema is not None:
            values |= metrics_from_sums(self.sums[f"{stage}_original"].compute(), "_original")
        values = {f"{stage}/{k}": v for k, v in values.items()}
        self.results |= values
        self.log_dict(values, sync_dist=False)
        for metric in self.sums.values():
            metric.reset()

    @override
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    @override
    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    @override
    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    @override
    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    @override
    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the RNG states so a resumed run continues exactly like an uninterrupted one."""
        checkpoint["rng_states"] = rng_states()

    @override
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])

    @override
    def configure_optimizers(self) -> dict[str, Any]:
        """Adam; the paper's "type1" schedule: lr * decay^(epoch-1) from the second epoch on."""
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, fused=True)
        decay = self.hparams.lr_decay
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: decay ** max(0, epoch - 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule,
                                                         "interval": "epoch"}}
