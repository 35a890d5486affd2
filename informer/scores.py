"""The scores of a split, as float64 sums that add up over batches and processes.

One :class:`Scorer` serves the training module's validation/test metrics and
:func:`informer.evaluation.evaluate` alike, so ``informer-train``, ``informer-eval`` and the
SageMaker evaluation step report the same figures:

- point errors (MAE, MSE, RMSE, MAPE, MSPE) scaled and ``_original`` (original units; MAPE and
  MSPE there over the true values at least a tenth of their variable's std from zero);
- ``windows``: how many windows were scored;
- with quantiles: interval coverage, weighted quantile loss and CRPS, scaled and original, of
  the intervals as served (calibrated when the network has a calibration) and, with a
  calibration, ``_raw`` of the uncalibrated ones;
- skill against the seasonal-naive and window-mean forecasts (scaled), overall and by step.
"""

from __future__ import annotations

import torch

from informer import baselines, intervals
from informer.config import InformerConfig
from informer.metrics import N_SUMS, error_sums, metrics_from_sums, percentage_floor
from informer.nn.model import point_of, quantiles_of
from informer.schema import DataSchema

Sums = dict[str, torch.Tensor]


def targets(batch: dict[str, torch.Tensor], pred_len: int, c_out: int) -> torch.Tensor:
    """The true future ``[B, pred_len, c_out]`` of a batch (target column last)."""
    return batch["y"][:, -pred_len:, -c_out:]


def unscale(values: torch.Tensor, schema: DataSchema) -> torch.Tensor:
    """Predicted columns back to original units, ``[..., c_out]``."""
    idx = [schema.columns.index(c) for c in schema.predicted]
    mean = torch.tensor([schema.mean[i] for i in idx], dtype=torch.float64, device=values.device)
    std = torch.tensor([schema.std[i] for i in idx], dtype=torch.float64, device=values.device)
    return values.double() * std + mean


class Scorer:
    """Sums of one batch (:meth:`batch`) and the metrics of summed sums (:meth:`metrics`)."""

    def __init__(self, config: InformerConfig, schema: DataSchema | None = None) -> None:
        self.config, self.schema = config, schema
        self.levels = config.quantiles or []
        self.season = baselines.season_length(schema.freq if schema else config.freq)
        # each predicted variable's std: its percentage errors count from a tenth of it
        self.std = [schema.std[schema.columns.index(v)] for v in schema.predicted] \
            if schema else []

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Name and shape of every sum."""
        out: dict[str, tuple[int, ...]] = {"windows": (), "scaled": (N_SUMS,),
                                           "steps": (1 + len(baselines.BASELINES),
                                                     self.config.pred_len + 1)}
        if self.schema is not None:
            out["original"] = (N_SUMS,)
        if self.levels:
            out["quantiles"] = out["quantiles_raw"] = (intervals.n_sums(self.levels),)
            if self.schema is not None:
                out["quantiles_original"] = out["quantiles"]
        return out

    def zeros(self, device: torch.device | str = "cpu") -> Sums:
        return {k: torch.zeros(s, dtype=torch.float64, device=device)
                for k, s in self.shapes().items()}

    def batch(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> Sums:
        """Sums of one batch: ``outputs`` are the network's raw outputs for ``batch``
        (``[B, pred_len, c_out]``, or ``[..., Q]`` with quantiles)."""
        c = self.config
        outputs = outputs.detach().float()
        pred = point_of(outputs, c)
        true = targets(batch, c.pred_len, c.c_out)
        history = batch["x"][..., -c.c_out:]
        sums = {"windows": torch.tensor(float(pred.size(0)), dtype=torch.float64,
                                        device=pred.device),
                "scaled": error_sums(pred, true),
                "steps": baselines.step_sums(pred, true, history, self.season)}
        if self.schema is not None:
            sums["original"] = error_sums(unscale(pred, self.schema), unscale(true, self.schema),
                                          floor=percentage_floor(self.std, pred.device))
        if self.levels:
            raw = quantiles_of(outputs, c, calibrated=False)
            ordered = quantiles_of(raw, c) if c.calibration else raw
            sums["quantiles"] = intervals.quantile_sums(ordered, true, self.levels)
            sums["quantiles_raw"] = intervals.quantile_sums(raw, true, self.levels) \
                if c.calibration else sums["quantiles"]
            if self.schema is not None:
                sums["quantiles_original"] = intervals.quantile_sums(
                    unscale(ordered.movedim(-1, 1), self.schema).movedim(1, -1),
                    unscale(true, self.schema), self.levels)
        return sums

    def metrics(self, sums: Sums) -> dict[str, float]:
        """Flat metrics (without the split prefix) of sums added over a whole split."""
        out = metrics_from_sums(sums["scaled"])
        if "original" in sums:
            out |= metrics_from_sums(sums["original"], "_original")
        if self.levels:
            out |= intervals.interval_metrics(sums["quantiles"], self.levels)
            if "quantiles_original" in sums:
                out |= intervals.interval_metrics(sums["quantiles_original"], self.levels,
                                                  "_original")
            if self.config.calibration:
                out |= intervals.interval_metrics(sums["quantiles_raw"], self.levels, "_raw")
        out |= baselines.skill_metrics(sums["steps"])
        out["windows"] = float(sums["windows"])
        return out
