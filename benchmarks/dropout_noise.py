"""Training-mode noise of this library's network against the reference code's: does dropout on
(and ProbSparse's key sampling) give the same loss and gradient, on average and in spread?

    python benchmarks/dropout_noise.py --reference ~/src/Informer2020 [--draws 64] [--record]

The checks in ``reference_network.py`` train with dropout 0, where both networks are the same
function and take the same steps. With dropout on the two codes draw their random numbers
differently (this library's CPU dropout draws only the dropped positions, from geometric gaps,
``informer/nn/dropout.py``), so equality cannot be checked draw by draw; it can in
distribution. From the same weights and one batch of ETTh1 windows (M, 96/48/48, the paper's
dropout 0.05), ``--draws`` training-mode forward and backward passes of each arm give:

- the loss: mean and its standard error;
- the mean gradient ``g`` (all parameters, in the reference's order) and the gradient noise
  ``tr Cov = E|g_i - g|^2``;
- against the reference arm: ``z`` = the distance of the two mean gradients squared, over
  what two independent means of that noise would give (``tr Cov_a / n_a + tr Cov_b / n_b``).
  1 means no difference beyond sampling noise; a systematic difference makes it grow with
  ``--draws``.

Arms: ``reference`` (its network, fp32), ``ours`` (fp32, the sparse dropout), ``ours_stock``
(fp32, PyTorch's ``F.dropout``), ``ours_bf16`` (bf16 autocast, as the presets train here) and
``control``: ours with dropout 0.06 instead of 0.05, a difference the test should find.

Ends with one ``key=value`` line per figure.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, record_section  # noqa: E402
from reference_checkpoints import parse_setting  # noqa: E402
from reference_network import (  # noqa: E402
    build_reference,
    copy_weights,
    paired,
    reference_class,
    reference_forward,
)
from reproduce_paper import HEADER, RESULTS  # noqa: E402

import informer.nn.dropout as dropout_module  # noqa: E402
from informer.config import InformerConfig  # noqa: E402
from informer.data.series import SeriesData  # noqa: E402
from informer.data.sources import ENV_DATA_DIR, resolve_data_file  # noqa: E402
from informer.evaluation import targets  # noqa: E402
from informer.nn.model import Informer  # noqa: E402

CONTROL_DROPOUT = 0.06
# the reference setting whose checkpoints fit the network measured here (its name's fields)
SETTING = {"features": "M", "seq": "96", "label": "48", "pred": "48", "dm": "512", "nh": "8",
           "el": "2", "dl": "1", "df": "2048", "attn": "prob", "fc": "5"}


@contextlib.contextmanager
def stock_dropout() -> Iterator[None]:
    """This library's dropout falls back to ``F.dropout`` (PyTorch's per-element mask)."""
    fast = dropout_module._fast
    dropout_module._fast = lambda x, p: False
    try:
        yield
    finally:
        dropout_module._fast = fast


def gradient_params(ours: torch.nn.Module, ref: torch.nn.Module
                    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The parameters (not buffers) of both networks, paired in state-dict order."""
    ours_params = dict(ours.named_parameters())
    ref_params = dict(ref.named_parameters())
    pairs = [(ours_params[ka], ref_params[kb]) for ka, _, kb, _ in paired(ours, ref)
             if ka in ours_params]
    return [a for a, _ in pairs], [b for _, b in pairs]


class Moments:
    """Running sums of the loss and the flat gradient ``[n_params]`` over draws."""

    def __init__(self, size: int) -> None:
        self.n, self.loss, self.loss2, self.sq = 0, 0.0, 0.0, 0.0
        self.grad = torch.zeros(size, dtype=torch.float64)

    def add(self, loss: float, grad: torch.Tensor) -> None:
        self.n += 1
        self.loss += loss
        self.loss2 += loss * loss
        self.grad += grad
        self.sq += float(grad.square().sum())

    def mean_grad(self) -> torch.Tensor:
        return self.grad / self.n

    def noise(self) -> float:
        """Unbiased ``tr Cov`` of one draw's gradient."""
        return (self.sq - self.n * float(self.mean_grad().square().sum())) / (self.n - 1)

    def loss_mean_se(self) -> tuple[float, float]:
        mean = self.loss / self.n
        var = (self.loss2 - self.n * mean * mean) / (self.n - 1)
        return mean, math.sqrt(max(var, 0.0) / self.n)


def draw(forward: Callable, params: list[torch.Tensor], batch: dict, config: InformerConfig,
         bf16: bool) -> tuple[float, torch.Tensor]:
    """One training-mode loss and its flat float64 gradient."""
    for p in params:
        p.grad = None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        pred = forward(batch["x"], batch["x_mark"], batch["y_mark"])
    loss = F.mse_loss(pred.float(), targets(batch, config.pred_len, config.c_out))
    loss.backward()
    return loss.item(), torch.cat([p.grad.reshape(-1).double() for p in params])


def setting(batch_size: int) -> tuple[InformerConfig, dict]:
    """The measured network's config (ETTh1 M 96/48/48, the paper's sizes) and the first
    ``batch_size`` training windows."""
    path = resolve_data_file(os.environ.get(ENV_DATA_DIR, "data"), "ETTh1.csv")
    series = SeriesData.fit(path, split="ett_hour", seq_len=96, label_len=48, pred_len=48)
    config = InformerConfig(enc_in=7, dec_in=7, c_out=7, seq_len=96, label_len=48, pred_len=48)
    return config, series.dataset("train").__getitems__(list(range(batch_size)))


def seeded_pair(cls: type, config: InformerConfig) -> tuple[Informer, torch.nn.Module]:
    """This network and the reference one built after seed 0, in training mode (weights not
    yet shared)."""
    torch.manual_seed(0)
    return Informer(config).train(), build_reference(cls, config).train()


def arms(cls: type, config: InformerConfig, checkpoint: Path | None
         ) -> dict[str, tuple[Callable, list, bool, Callable]]:
    """name -> (forward, parameters, bf16, context), all from one set of weights: the initial
    ones of seed 0, or a reference checkpoint's."""
    ours, ref = seeded_pair(cls, config)
    if checkpoint is None:
        copy_weights(ours, ref)
    else:
        ref.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        copy_weights(ours, ref, into_ours=True)
    control = Informer(InformerConfig(**(config.to_dict() | {"dropout": CONTROL_DROPOUT})))
    control.load_state_dict(ours.state_dict())
    control.train()
    ours_params, ref_params = gradient_params(ours, ref)
    control_params, _ = gradient_params(control, ref)
    plain = contextlib.nullcontext
    return {"reference": (reference_forward(ref, ours), ref_params, False, plain),
            "ours": (ours.predict, ours_params, False, plain),
            "ours_stock": (ours.predict, ours_params, False, stock_dropout),
            "ours_bf16": (ours.predict, ours_params, True, plain),
            "control": (control.predict, control_params, False, plain)}


def compare(arms: dict[str, tuple[Callable, list, bool, Callable]], config: InformerConfig,
            batch: dict, draws: int) -> dict[str, dict[str, float]]:
    """Per arm: loss mean and standard error, mean gradient norm, gradient noise, and against
    the first arm (the reference) ``z`` and the loss difference in standard errors."""
    moments: dict[str, Moments] = {}
    for index, (name, arm) in enumerate(arms.items()):
        forward, params, bf16, context = arm
        moments[name] = Moments(sum(p.numel() for p in params))
        started = time.perf_counter()
        with context():
            for i in range(draws):
                torch.manual_seed(1000 * index + i)  # independent draws, arm to arm
                moments[name].add(*draw(forward, params, batch, config, bf16))
        print(f"{name}: {draws} draws in {time.perf_counter() - started:.0f} s", flush=True)
    ref = next(iter(moments.values()))
    ref_loss, ref_se = ref.loss_mean_se()
    figures: dict[str, dict[str, float]] = {}
    for name, m in moments.items():
        mean, se = m.loss_mean_se()
        figures[name] = {"loss": mean, "loss_se": se, "noise": m.noise(),
                         "grad_norm": float(m.mean_grad().norm())}
        if m is not ref:
            distance = float((m.mean_grad() - ref.mean_grad()).square().sum())
            figures[name] |= {"z": distance / (m.noise() / m.n + ref.noise() / ref.n),
                              "loss_diff_se": (mean - ref_loss) / math.hypot(se, ref_se)}
    return figures


def table(figures: dict[str, dict[str, float]]) -> list[str]:
    rows = ["| arm | loss (mean ± se) | loss vs reference (se) | mean gradient norm | "
            "gradient noise tr Cov | noise vs reference | z (mean gradient vs reference) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    ref_noise = next(iter(figures.values()))["noise"]
    for name, f in figures.items():
        diff = f"{f['loss_diff_se']:+.1f}" if "z" in f else "-"
        z = f"{f['z']:.2f}" if "z" in f else "-"
        rows.append(f"| {name} | {f['loss']:.5f} ± {f['loss_se']:.5f} | {diff} | "
                    f"{f['grad_norm']:.4f} | {f['noise']:.4f} | {f['noise'] / ref_noise:.3f} | "
                    f"{z} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="a checkout of zhouhaoyi/Informer2020")
    parser.add_argument("--draws", type=int, default=64, help="passes per arm (>= 2)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--checkpoint", type=Path, help="start from the weights of a reference "
                        "run (its checkpoints/<setting>/checkpoint.pth) instead of seed 0's")
    parser.add_argument("--record", action="store_true", help="write docs/results.md")
    args = parser.parse_args()
    if args.draws < 2:
        raise SystemExit(f"error: --draws {args.draws}: expected at least 2")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise SystemExit(f"error: --checkpoint {args.checkpoint}: no such file")
    if args.checkpoint is not None:
        fields = parse_setting(args.checkpoint.parent.name)
        if any(fields[k] != v for k, v in SETTING.items()):
            raise SystemExit(f"error: --checkpoint {args.checkpoint}: expected a run of ETTh1 M "
                             "96/48/48 at the paper's sizes (the setting in its directory's "
                             "name)")
    cls = reference_class(args.reference.expanduser())
    config, batch = setting(args.batch_size)
    figures = compare(arms(cls, config, args.checkpoint), config, batch, args.draws)
    for line in table(figures):
        print(line)
    if args.record:
        body = "\n".join([
            f"Produced by `python benchmarks/dropout_noise.py --reference <checkout> --draws "
            f"{args.draws}{' --checkpoint <run>' if args.checkpoint else ''} --record` on "
            f"{machine()}: ETTh1 M 96/48/48, dropout "
            f"{config.dropout}, ProbSparse, one batch of {args.batch_size} training windows, "
            f"{args.draws} training-mode passes an arm from the same weights ("
            + (f"reference run {parse_setting(args.checkpoint.parent.name)['des']}'s trained ones"
               if args.checkpoint else
               "seed 0's initial ones") + f"; control: dropout "
            f"{CONTROL_DROPOUT}). Recorded {time.strftime('%Y-%m-%d')}.", "",
            *table(figures)])
        section = "dropout_noise_trained" if args.checkpoint else "dropout_noise"
        record_section(section, body, RESULTS, HEADER)
        print(f"wrote {RESULTS}")
    for name, values in figures.items():
        for key, value in values.items():
            print(f"{name}_{key}={value:.6g}")


if __name__ == "__main__":
    main()
