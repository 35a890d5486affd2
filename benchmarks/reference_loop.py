"""``informer-train`` with the reference code's network in place of this library's: the same
data, loop, schedule, early stopping and evaluation, a different implementation of the network
(zhouhaoyi/Informer2020's ``models/model.py``, from a checkout the user supplies; none of its
code is in this repository).

    INFORMER_REFERENCE=~/src/Informer2020 python benchmarks/reference_loop.py \
        experiment=etth1_M_48 seed=1 hydra.run.dir=runs/reference_loop/seed1

Takes ``informer-train``'s overrides. The reference network is built with the run's model
settings (its constructor takes the same names) and is fed as the reference code feeds it:
the decoder input is the last ``label_len`` input steps followed by ``pred_len`` zeros. In
eval mode its ProbSparse draws this library's key sample and leaves torch's global generator
alone, so with the same seed and ``model.net.dropout=0`` a run of either network takes the same
batches and the same steps (up to rounding: the two are the same function). The
model artifact is not exported (``model/`` holds this library's network; the checkpoints in
``checkpoints/`` hold the reference network's weights). ``benchmarks/reproduce_paper.py
variant=refnet`` runs it like any other variant, so its figures, per-epoch curves and test MSE
land in the same tables as this library's runs.

Against this library's own runs of the same preset, it tells whether a difference of test MSE
comes from the network's implementation (its random-number draws in dropout and ProbSparse
included) or from elsewhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_network import build_reference, reference_class  # noqa: E402

import informer.module  # noqa: E402
from informer.config import InformerConfig  # noqa: E402
from informer.nn.model import Informer  # noqa: E402
from informer.nn.probsparse import ProbAttention  # noqa: E402

ENV_REFERENCE = "INFORMER_REFERENCE"


def _eval_keys(module: nn.Module, args: tuple) -> None:
    """In eval mode the reference's ProbSparse samples its keys as this library's does: from a
    generator seeded with ``ProbAttention.eval_seed`` anew for every attention call (torch's
    global one here, restored by ``ReferenceNetwork.predict``)."""
    if not module.training:
        torch.manual_seed(ProbAttention.eval_seed)


class ReferenceNetwork(nn.Module):
    """The reference network behind this library's ``predict`` signature:
    ``x [B, seq_len, enc_in]``, marks ``[B, seq_len | label_len + pred_len, mark_dim]`` ->
    ``[B, pred_len, c_out]``."""

    def __init__(self, cls: type, config: InformerConfig) -> None:
        super().__init__()
        self.config = config
        self.reference = build_reference(cls, config)
        for module in self.reference.modules():
            if type(module).__name__ == "ProbAttention":
                module.register_forward_pre_hook(_eval_keys)

    # the start tokens and zero fill exactly as this library's network builds them (it reads
    # only ``self.config``)
    decoder_input = Informer.decoder_input

    def predict_outputs(self, x: torch.Tensor, x_mark: torch.Tensor, y_mark: torch.Tensor
                        ) -> torch.Tensor:
        """The forecast. In eval mode the reference's ProbSparse draws this library's key
        sample (``_eval_keys``) and torch's global generator is left where it was (this
        library's network samples from a generator of its own): runs of both networks seeded
        alike then draw the same batches every epoch, not only the first, and are scored
        alike."""
        if self.training:
            return self.reference(x, x_mark, self.decoder_input(x), y_mark)
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return self.reference(x, x_mark, self.decoder_input(x), y_mark)


    predict = predict_outputs  # a point network: its outputs are its forecast


def use_reference(checkout: Path) -> None:
    """Make ``InformerModule`` build the reference network from ``checkout``."""
    cls = reference_class(checkout)
    informer.module.Informer = lambda config: ReferenceNetwork(cls, config)


def main() -> None:
    checkout = os.environ.get(ENV_REFERENCE)
    if not checkout:
        raise SystemExit(f"error: {ENV_REFERENCE} is not set: expected the path of a checkout "
                         "of zhouhaoyi/Informer2020")
    use_reference(Path(checkout).expanduser())
    from informer.cli import train

    sys.argv = [sys.argv[0], *sys.argv[1:], "export_artifact=false"]
    train.main()


if __name__ == "__main__":
    main()
