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

from informer.data.windows import WindowDataset
from informer.evaluation import iter_outputs
from informer.intervals import intervals
from informer.nn.model import Informer, quantiles_of
from informer.scores import targets


@torch.no_grad()
def conformal_offsets(net: Informer, dataset: WindowDataset, batch_size: int = 256,
                      precision: str = "auto") -> list[list[float]]:
    """``[intervals][c_out]`` offsets from every window of ``dataset`` (raw, uncalibrated
    quantiles of ``net``)."""
    config = net.config
    if not config.quantiles:
        raise ValueError("conformal_offsets: the network has no quantiles")
    pairs = intervals(config.quantiles)
    scores: list[list[torch.Tensor]] = [[] for _ in pairs]
    for outputs, batch in iter_outputs(net, dataset, batch_size, precision):
        levels = quantiles_of(outputs, config, calibrated=False)
        true = targets(batch, config.pred_len, config.c_out).float()
        for k, (lo, hi, _) in enumerate(pairs):
            score = torch.maximum(levels[..., lo] - true, true - levels[..., hi])
            scores[k].append(score.reshape(-1, config.c_out).cpu())
    offsets = []
    for (_, _, nominal), chunks in zip(pairs, scores):
        values = torch.cat(chunks).double()  # [n, c_out]
        k = min(math.ceil((values.size(0) + 1) * nominal), values.size(0))
        offsets.append(values.kthvalue(k, dim=0).values.tolist())  # the k-th smallest
    return offsets
