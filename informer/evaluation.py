"""Evaluate a network on a window dataset without Lightning (used by ``informer-eval``)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from informer.data.windows import Batch, WindowDataset, collate_batch
from informer.nn.model import Informer
from informer.precision import uses_bf16
from informer.schema import DataSchema
from informer.scores import Scorer, targets, unscale

__all__ = ["evaluate", "iter_outputs", "targets", "unscale"]


@torch.no_grad()
def iter_outputs(net: Informer, dataset: WindowDataset, batch_size: int = 256,
                 precision: str = "auto") -> Iterator[tuple[torch.Tensor, Batch]]:
    """``(raw outputs as float32, batch)`` for every window of ``dataset`` in order, in eval
    mode (restored afterwards) under ``precision``: the loop every scoring pass shares."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    use_bf16 = uses_bf16(precision, device.type)
    try:
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                outputs = net.predict_outputs(batch["x"], batch["x_mark"], batch["y_mark"])
            yield outputs.float(), batch
    finally:
        net.train(was_training)


def evaluate(net: Informer, schema: DataSchema, dataset: WindowDataset, batch_size: int = 256,
             precision: str = "auto") -> dict[str, float]:
    """Every window's scores (:class:`~informer.scores.Scorer`): point errors scaled and
    (``*_original``) in units, intervals for a quantile network, skill against the naive
    baselines, ``windows``."""
    scorer = Scorer(net.config, schema)
    sums = scorer.zeros()
    for outputs, batch in iter_outputs(net, dataset, batch_size, precision):
        for name, value in scorer.batch(outputs, batch).items():
            sums[name] += value.cpu()
    return scorer.metrics(sums)
