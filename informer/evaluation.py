"""Evaluate a network on a window dataset without Lightning (used by ``informer-eval``)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from informer.data.windows import WindowDataset, collate_batch
from informer.metrics import N_SUMS, error_sums, metrics_from_sums
from informer.nn.model import Informer
from informer.precision import uses_bf16
from informer.schema import DataSchema


def targets(batch: dict[str, torch.Tensor], pred_len: int, c_out: int) -> torch.Tensor:
    """The true future ``[B, pred_len, c_out]`` of a batch (target column last)."""
    return batch["y"][:, -pred_len:, -c_out:]


def unscale(values: torch.Tensor, schema: DataSchema) -> torch.Tensor:
    """Predicted columns back to original units, ``[..., c_out]``."""
    idx = [schema.columns.index(c) for c in schema.predicted]
    mean = torch.tensor([schema.mean[i] for i in idx], dtype=torch.float64, device=values.device)
    std = torch.tensor([schema.std[i] for i in idx], dtype=torch.float64, device=values.device)
    return values.double() * std + mean


@torch.no_grad()
def evaluate(net: Informer, schema: DataSchema, dataset: WindowDataset, batch_size: int = 256,
             precision: str = "auto") -> dict[str, float]:
    """MAE/MSE/RMSE/MAPE/MSPE over every window, scaled and (``*_original``) in units."""
    net.eval()
    device = next(net.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    scaled = torch.zeros(N_SUMS, dtype=torch.float64)
    original = torch.zeros(N_SUMS, dtype=torch.float64)
    use_bf16 = uses_bf16(precision, device.type)
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            pred = net.predict(batch["x"], batch["x_mark"], batch["y_mark"]).float()
        true = targets(batch, net.config.pred_len, net.config.c_out)
        scaled += error_sums(pred, true).cpu()
        original += error_sums(unscale(pred, schema), unscale(true, schema)).cpu()
    return {**metrics_from_sums(scaled), **metrics_from_sums(original, "_original")}
