"""Informer as a LightningModule: MSE training, the paper's lr schedule, scaled + unit metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from typing_extensions import override

from informer.checkpointing import rng_states, set_rng_states
from informer.config import InformerConfig
from informer.errors import InformerError, first_line
from informer.evaluation import targets, unscale
from informer.metrics import N_SUMS, error_sums, metrics_from_sums
from informer.nn.model import Informer
from informer.optim import DEFAULT_OPTIMIZER, DEFAULT_SCHEDULER
from informer.schema import DataSchema
from informer.upgrade import fold_legacy_fields

# An optimiser or schedule: a Hydra config (``_target_``, called as a partial) or a callable.
Factory = Mapping[str, Any] | Callable[..., Any]


class ErrorSums(Metric):
    """Distributed-safe running :func:`~informer.metrics.error_sums` and window count."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("sums", default=torch.zeros(N_SUMS, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("windows", default=torch.zeros((), dtype=torch.float64),
                       dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, true: torch.Tensor) -> None:
        """``pred``/``true``: ``[windows, pred_len, c_out]``."""
        self.sums += error_sums(pred, true).to(self.sums.device)
        self.windows += pred.size(0)

    def compute(self) -> dict[str, torch.Tensor]:
        """The sums and window count over every process (synced under torch.distributed)."""
        return {"sums": self.sums, "windows": self.windows}


def _plain(value: Any) -> Any:
    """A Hydra/OmegaConf node as plain dicts and lists (checkpoints load with weights_only)."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        from omegaconf import DictConfig, OmegaConf

        if isinstance(value, DictConfig):
            return OmegaConf.to_container(value, resolve=True)
        return dict(value)
    return value


class InformerModule(L.LightningModule):
    """Trains :class:`~informer.nn.Informer`.

    ``net``: the network's fields (``d_model``, ``attn``...), validated by
    :class:`~informer.config.InformerConfig`. ``optimizer``: called with the parameters,
    ``scheduler``: called with the optimiser (stepped every epoch; ``None`` for none); each a
    Hydra config (``_target_``, instantiated as a partial in :meth:`configure_optimizers`, kept in
    the checkpoint) or a callable such as ``functools.partial(torch.optim.SGD, lr=0.01)``.
    Defaults: the paper's Adam (lr 1e-4) and lr halving from the third epoch. ``schema`` (a
    :class:`DataSchema` dict, set by the train entry from the DataModule) enables metrics in
    original units and the artifact export. 0.1's flat keyword arguments (``d_model=``, ``lr=``,
    ``lr_decay=``; old checkpoints hold them) are folded in (:mod:`informer.upgrade`).
    """

    def __init__(self, net: Mapping[str, Any] | None = None,
                 optimizer: Factory | None = DEFAULT_OPTIMIZER,
                 scheduler: Factory | None = DEFAULT_SCHEDULER,
                 schema: Mapping[str, Any] | None = None, **legacy: Any) -> None:
        super().__init__()
        net, optimizer, scheduler = fold_legacy_fields(
            _plain(net), _plain(optimizer), _plain(scheduler), legacy)
        self.optimizer, self.scheduler = optimizer, scheduler
        schema = _plain(schema)
        self.save_hyperparameters({
            "net": net, "schema": schema,
            # a callable is not kept: checkpoints hold plain data only
            "optimizer": optimizer if isinstance(optimizer, Mapping) else None,
            "scheduler": scheduler if isinstance(scheduler, Mapping) else None})
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
        scaled = self.sums[f"{stage}_scaled"].compute()
        values = metrics_from_sums(scaled["sums"])
        if self.schema is not None:
            values |= metrics_from_sums(self.sums[f"{stage}_original"].compute()["sums"],
                                        "_original")
        values["windows"] = float(scaled["windows"])
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
        """The optimiser over all parameters and, if any, its schedule stepped every epoch."""
        optimizer = _build(self.optimizer, "optimizer")(self.parameters())
        if self.scheduler is None:
            return {"optimizer": optimizer}
        schedule = _build(self.scheduler, "scheduler")(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule,
                                                         "interval": "epoch"}}


def _build(factory: Factory, name: str) -> Callable[..., Any]:
    """A callable from a Hydra config (instantiated as a partial) or the callable itself."""
    if not isinstance(factory, Mapping):
        if not callable(factory):
            raise InformerError(f"model.{name}: expected a config with _target_ or a callable, "
                                f"got {factory!r}")
        return factory
    if "_target_" not in factory:
        raise InformerError(f"model.{name}: expected a config with _target_, got keys "
                            f"{sorted(factory)}")
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(dict(factory), _partial_=True)
    except InstantiationException as err:
        raise InformerError(f"model.{name}: {first_line(err)}") from err
