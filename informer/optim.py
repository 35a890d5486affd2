"""Optimiser and learning-rate schedule of the paper, as Hydra partial targets.

``conf/model/informer.yaml`` names them with ``_partial_: true``; the LightningModule calls the
partials with its parameters (the optimiser) and its optimiser (the schedule).
"""

from __future__ import annotations

from functools import partial

import torch

from informer.errors import InformerError

# The paper's Adam at lr 1e-4, halved after every epoch from the second ("type1").
DEFAULT_OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1.0e-4,
                     "fused": True}
DEFAULT_SCHEDULER = {"_target_": "informer.optim.epoch_decay", "_partial_": True, "decay": 0.5}


def _factor(decay: float, first: int, epoch: int) -> float:
    return decay ** max(0, epoch - first)


def epoch_decay(optimizer: torch.optim.Optimizer, decay: float = 0.5,
                first_epoch: int = 1) -> torch.optim.lr_scheduler.LambdaLR:
    """``lr * decay^(epoch - first_epoch)`` from epoch ``first_epoch`` on (0-based epochs), the
    paper's "type1" schedule with the defaults: epochs 0 and 1 at lr, epoch 2 at lr/2..."""
    if not 0.0 < float(decay) <= 1.0:
        raise InformerError(f"model.scheduler.decay: expected a factor in (0, 1], got {decay!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, partial(_factor, float(decay),
                                                                int(first_epoch)))
