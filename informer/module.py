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
from informer.intervals import pinball_loss
from informer.nn.model import Informer
from informer.optim import DEFAULT_OPTIMIZER, DEFAULT_SCHEDULER
from informer.schema import DataSchema
from informer.scores import Scorer, targets
from informer.upgrade import fold_legacy_fields

# An optimiser or schedule: a Hydra config (``_target_``, called as a partial) or a callable.
Factory = Mapping[str, Any] | Callable[..., Any]


class SplitSums(Metric):
    """Distributed-safe running :class:`~informer.scores.Scorer` sums of a split."""

    full_state_update = False

    def __init__(self, scorer: Scorer) -> None:
        super().__init__()
        self.scorer = scorer
        for name, shape in scorer.shapes().items():
            self.add_state(name, default=torch.zeros(shape, dtype=torch.float64),
                           dist_reduce_fx="sum")

    def update(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        for name, value in self.scorer.batch(outputs, batch).items():
            state = getattr(self, name)
            state += value.to(state.device)

    def compute(self) -> dict[str, float]:
        """The split's metrics over every process (sums synced under torch.distributed)."""
        return self.scorer.metrics({name: getattr(self, name) for name in self.scorer.shapes()})


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
    original units and the artifact export. ``calibrate``: for a quantile network, calibrate
    its intervals on the whole validation split (split-conformal, :mod:`informer.calibration`)
    when testing starts, with the weights under test; test metrics then report the calibrated
    intervals and (``_raw``) the uncalibrated ones. 0.1's flat keyword arguments
    (``d_model=``, ``lr=``, ``lr_decay=``; old checkpoints hold them) are folded in
    (:mod:`informer.upgrade`).
    """

    def __init__(self, net: Mapping[str, Any] | None = None,
                 optimizer: Factory | None = DEFAULT_OPTIMIZER,
                 scheduler: Factory | None = DEFAULT_SCHEDULER,
                 schema: Mapping[str, Any] | None = None, calibrate: bool = True,
                 **legacy: Any) -> None:
        super().__init__()
        net, optimizer, scheduler = fold_legacy_fields(
            _plain(net), _plain(optimizer), _plain(scheduler), legacy)
        self.optimizer, self.scheduler = optimizer, scheduler
        schema = _plain(schema)
        self.save_hyperparameters({
            "net": net, "schema": schema, "calibrate": calibrate,
            # a callable is not kept: checkpoints hold plain data only
            "optimizer": optimizer if isinstance(optimizer, Mapping) else None,
            "scheduler": scheduler if isinstance(scheduler, Mapping) else None})
        self.config = InformerConfig.from_dict(net)
        self.net = Informer(self.config)
        self.schema = DataSchema.from_dict(dict(schema)) if schema else None
        self.results: dict[str, float] = {}  # last val/test metrics at float64 precision
        scorer = Scorer(self.config, self.schema)
        self.sums = torch.nn.ModuleDict({stage: SplitSums(scorer) for stage in ("val", "test")})

    @override
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The network's outputs for a window batch: ``[B, pred_len, c_out]``, or
        ``[B, pred_len, c_out, Q]`` with quantiles."""
        return self.net.predict_outputs(batch["x"], batch["x_mark"], batch["y_mark"])

    def loss(self, outputs: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """MSE of the point forecast, or the pinball loss over the quantiles."""
        if self.config.quantiles:
            return pinball_loss(outputs, true, self.config.quantiles)
        return F.mse_loss(outputs, true)

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        outputs = self(batch).float()
        true = targets(batch, self.config.pred_len, self.config.c_out)
        loss = self.loss(outputs, true)
        self.log(f"{stage}/loss", loss, on_step=stage == "train", on_epoch=True,
                 prog_bar=stage != "test", batch_size=outputs.size(0),
                 sync_dist=stage != "train")
        if stage != "train":
            self.sums[stage].update(outputs, batch)
        return loss

    def _log_metrics(self, stage: str) -> None:
        values = {f"{stage}/{k}": v for k, v in self.sums[stage].compute().items()}
        self.results |= values
        self.log_dict(values, sync_dist=False)
        self.sums[stage].reset()

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
    def on_test_start(self) -> None:
        """Calibrate a quantile network's intervals on the validation split (every window, in
        every process alike) before the test split is scored."""
        datasets = getattr(self.trainer.datamodule, "datasets", None) or {}
        if self.config.quantiles and self.hparams.calibrate and "val" in datasets:
            from informer.calibration import conformal_offsets

            self.config.calibration = conformal_offsets(
                self.net, datasets["val"], precision=str(self.trainer.precision))

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
