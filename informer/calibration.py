"""Split-conformal calibration of a quantile network's intervals (conformalized quantile
regression, Romano et al., NeurIPS 2019) on windows it was not trained on (the validation
split).

For a central interval ``[q_lo, q_hi]`` of nominal coverage ``1 - a``, each validation value
``y`` scores ``E = max(q_lo - y, y - q_hi)`` (negative inside the interval); with ``n`` scores of
a variable, the offset is the ``ceil((n + 1)(1 - a))``-th smallest (the largest when that
exceeds ``n``), and the
calibrated interval is ``[q_lo - offset, q_hi + offset]``. Offsets are per interval and output
variable, in scaled units, pooled over windows and horizon steps; they are kept in the network's
config (``InformerConfig.calibration``), so every later stage serves calibrated intervals.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader

from informer.data.windows import WindowDataset, collate_batch
from informer.intervals import intervals
from informer.nn.model import Informer, quantiles_of
from informer.precision import uses_bf16
from informer.scores import targets


@torch.no_grad()
def conformal_offsets(net: Informer, dataset: WindowDataset, batch_size: int = 256,
                      precision: str = "auto") -> list[list[float]]:
    """``[intervals][c_out]`` offsets from every window of ``dataset`` (raw, uncalibrated
    quantiles of ``net``)."""
    config = net.config
    if not config.quantiles:
        raise ValueError("conformal_offsets: the network has no quantiles")
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    use_bf16 = uses_bf16(precision, device.type)
    pairs = intervals(config.quantiles)
    scores: list[list[torch.Tensor]] = [[] for _ in pairs]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            outputs = net.predict_outputs(batch["x"], batch["x_mark"], batch["y_mark"])
        levels = quantiles_of(outputs.float(), config, calibrated=False)
        true = targets(batch, config.pred_len, config.c_out).float()
        for k, (lo, hi, _) in enumerate(pairs):
            score = torch.maximum(levels[..., lo] - true, true - levels[..., hi])
            scores[k].append(score.reshape(-1, config.c_out).cpu())
    net.train(was_training)
    offsets = []
    for (_, _, nominal), chunks in zip(pairs, scores):
        values = torch.cat(chunks).double()  # [n, c_out]
        k = min(math.ceil((values.size(0) + 1) * nominal), values.size(0))
        offsets.append(values.kthvalue(k, dim=0).values.tolist())  # the k-th smallest
    return offsets
