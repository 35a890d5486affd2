"""This library's network against the reference code's (zhouhaoyi/Informer2020, a checkout the
user supplies; none of its code is in this repository), at the paper's default config (ETTh1 M,
seq/label/pred 96/48/24, d_model 512, n_heads 8, e_layers 2, d_layers 1, d_ff 2048, ProbSparse).

    python benchmarks/reference_network.py --reference ~/src/Informer2020 [--steps 10] [--record]

1. ``init``: each network built after the same ``torch.manual_seed``; the largest difference
   between their initial weights (parameters paired in order; 1x1 convolutions as linears).
2. ``forward``: this library's weights copied into the reference network; the largest
   difference between their forecasts on the same batch: full attention in eval mode, and
   ProbSparse in training mode with dropout 0 (sampled keys drawn from the same seed in both).
3. ``train``: from the same weights, dropout 0, ``--train-steps`` Adam steps on the same
   batches; the loss of every step in both, and the largest difference between the two
   trained networks' forecasts on the next batch.
4. ``data``: the reference code's ETTh1 windows (``data/data_loader.py``, ``timeF`` marks)
   against this library's at the same lengths: window counts of the train, validation and
   test splits, and the largest difference of any input, target or calendar mark.
5. ``speed``: seconds per training step (batch gather, forward, MSE, backward, optimizer step)
   of the reference network in fp32 (how it trains), and of this one in fp32 and bf16-mixed,
   ``--rounds`` interleaved rounds of ``--steps`` steps on the same batches; fastest round.

Ends with one ``key=value`` line per figure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine, record_section  # noqa: E402
from train_step import _setup, _stepper, interleaved  # noqa: E402

from informer.config import InformerConfig  # noqa: E402
from informer.data.series import SeriesData  # noqa: E402
from informer.data.sources import ENV_DATA_DIR, resolve_data_file  # noqa: E402
from informer.evaluation import targets  # noqa: E402
from informer.nn.model import Informer  # noqa: E402


def reference_class(directory: Path) -> type:
    """The reference code's ``Informer`` (``models/model.py`` of a checkout)."""
    if not (directory / "models" / "model.py").is_file():
        raise SystemExit(f"error: --reference {directory}: expected a checkout of "
                         "zhouhaoyi/Informer2020 (no models/model.py there)")
    sys.path.insert(0, str(directory))
    return importlib.import_module("models.model").Informer


def build_reference(cls: type, c: InformerConfig) -> torch.nn.Module:
    """The reference network with the same hyperparameters as ``c``."""
    return cls(c.enc_in, c.dec_in, c.c_out, c.seq_len, c.label_len, c.pred_len,
               factor=c.factor, d_model=c.d_model, n_heads=c.n_heads, e_layers=c.e_layers,
               d_layers=c.d_layers, d_ff=c.d_ff, dropout=c.dropout, attn=c.attn,
               embed="timeF", freq="h", activation=c.activation, distil=c.distil, mix=c.mix,
               device=torch.device("cpu"))


def paired(ours: torch.nn.Module, ref: torch.nn.Module) -> list[tuple[str, torch.Tensor, str,
                                                                       torch.Tensor]]:
    """Both state dicts in order (the reference's fixed positional tables left out, which this
    library computes rather than stores); fails loudly if they do not pair up."""
    a = list(ours.state_dict().items())
    b = [(k, v) for k, v in ref.state_dict().items() if not k.endswith("position_embedding.pe")]
    if len(a) != len(b) or any(x.numel() != y.numel() for (_, x), (_, y) in zip(a, b)):
        raise SystemExit(f"error: the networks do not pair up ({len(a)} against {len(b)} "
                         "tensors); is --reference the Informer2020 code?")
    return [(ka, va, kb, vb) for (ka, va), (kb, vb) in zip(a, b)]


def copy_weights(ours: torch.nn.Module, ref: torch.nn.Module, into_ours: bool = False) -> None:
    """This library's weights into the reference network (or, ``into_ours``, the other way)."""
    with torch.no_grad():
        for _, va, _, vb in paired(ours, ref):
            dst, src = (va, vb) if into_ours else (vb, va)
            dst.copy_(src.reshape(dst.shape))


def max_weight_diff(ours: torch.nn.Module, ref: torch.nn.Module) -> float:
    return max(float((va.reshape(vb.shape).double() - vb.double()).abs().max()) if va.numel()
               else 0.0 for _, va, _, vb in paired(ours, ref))


def reference_forward(ref: torch.nn.Module, net: Informer):  # noqa: ANN201
    """``predict``'s signature for the reference network (same decoder input)."""
    return lambda x, x_mark, y_mark: ref(x, x_mark, net.decoder_input(x), y_mark)


def check_init(cls: type, config: InformerConfig, seed: int = 2021) -> float:
    torch.manual_seed(seed)
    ours = Informer(config)
    torch.manual_seed(seed)
    return max_weight_diff(ours, build_reference(cls, config))


def twins(cls: type, config: InformerConfig, train: bool) -> tuple[Informer, torch.nn.Module]:
    """This network and the reference one with its weights, in training mode with dropout 0
    (``train``) or in eval mode."""
    if train:
        config = InformerConfig(**(config.to_dict() | {"dropout": 0.0}))
    torch.manual_seed(0)
    ours = Informer(config).train(train)
    ref = build_reference(cls, config).train(train)
    copy_weights(ours, ref)
    return ours, ref


def seeded_forecast(forward, batch: dict) -> torch.Tensor:  # noqa: ANN001
    """The forecast of ``batch`` with the global RNG (ProbSparse's sampling) seeded alike."""
    with torch.no_grad():
        torch.manual_seed(7)
        return forward(batch["x"], batch["x_mark"], batch["y_mark"])


def check_forward(cls: type, config: InformerConfig, batch: dict, train: bool) -> float:
    """Largest forecast difference from the same weights; ``train``: training mode with
    dropout 0 (ProbSparse samples from the global RNG, seeded alike; in eval mode this library
    samples from a generator of its own, for forecasts that do not depend on the RNG state)."""
    ours, ref = twins(cls, config, train)
    a = seeded_forecast(ours.predict, batch)
    return float((a - seeded_forecast(reference_forward(ref, ours), batch)).abs().max())


def check_training(cls: type, config: InformerConfig, dataset, steps: int,  # noqa: ANN001
                   batch_size: int = 32) -> dict[str, float]:
    ours, ref = twins(cls, config, train=True)
    nets = {"ours": (ours.predict, torch.optim.Adam(ours.parameters(), lr=1e-4)),
            "reference": (reference_forward(ref, ours), torch.optim.Adam(ref.parameters(),
                                                                         lr=1e-4))}
    losses: dict[str, list[float]] = {name: [] for name in nets}
    for i in range(steps):
        batch = dataset.__getitems__(list(range(i * batch_size, (i + 1) * batch_size)))
        for name, (forward, optimizer) in nets.items():
            torch.manual_seed(100 + i)
            pred = forward(batch["x"], batch["x_mark"], batch["y_mark"])
            loss = F.mse_loss(pred, targets(batch, config.pred_len, config.c_out))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[name].append(loss.item())
    gap = max(abs(a - b) / b for a, b in zip(losses["ours"], losses["reference"]))
    print("train losses, ours:     ", " ".join(f"{v:.6f}" for v in losses["ours"]))
    print("train losses, reference:", " ".join(f"{v:.6f}" for v in losses["reference"]))
    batch = dataset.__getitems__(list(range(steps * batch_size, (steps + 1) * batch_size)))
    a, b = (seeded_forecast(forward, batch) for forward, _ in nets.values())
    return {"train_loss_rel_diff": gap, "train_forecast_diff": float((a - b).abs().max())}


def check_data(config: InformerConfig) -> dict[str, float]:
    """Reference windows against ours (ETTh1 M, the paper's 12/4/4-month split, train-rows
    scaler): 1.0 where every split has as many windows, and the largest difference of any
    value of ``x``, ``y`` and their marks (needs :func:`reference_class` called first)."""
    loader = importlib.import_module("data.data_loader")
    path = resolve_data_file(os.environ.get(ENV_DATA_DIR, "data"), "ETTh1.csv")
    lengths = [config.seq_len, config.label_len, config.pred_len]
    series = SeriesData.fit(path, split="ett_hour", seq_len=lengths[0], label_len=lengths[1],
                            pred_len=lengths[2])
    same_counts, worst = 1.0, 0.0
    for split in ("train", "val", "test"):
        ref = loader.Dataset_ETT_hour(root_path=str(path.parent), flag=split, size=lengths,
                                      features="M", data_path=path.name, target="OT",
                                      timeenc=1, freq="h")
        ours = series.dataset(split)
        if len(ref) != len(ours):
            same_counts = 0.0
            continue
        items = [ref[i] for i in range(len(ref))]
        batch = ours.__getitems__(list(range(len(ours))))
        for j, key in enumerate(("x", "y", "x_mark", "y_mark")):
            theirs = np.stack([item[j] for item in items])
            worst = max(worst, float(np.abs(theirs - batch[key].numpy()).max()))
    return {"data_same_window_counts": same_counts, "data_max_diff": worst}


def speed(cls: type, setup: tuple, steps: int, warmup: int, rounds: int,
          batch_size: int) -> dict[str, float]:
    """``setup``: ``train_step._setup``'s dataset, config, module and optimizer."""
    dataset, config, module, optimizer = setup
    net = module.net.train()
    ref = build_reference(cls, config).train()
    copy_weights(net, ref)
    ref_optimizer = torch.optim.Adam(ref.parameters(), lr=1e-4)  # as the reference trains
    steppers = {
        "reference_fp32": _stepper(reference_forward(ref, net), ref_optimizer, dataset, config,
                                   batch_size, False),
        "ours_fp32": _stepper(net.predict, optimizer, dataset, config, batch_size, False),
        "ours_bf16": _stepper(net.predict, optimizer, dataset, config, batch_size, True)}
    fastest = interleaved(steppers, warmup, rounds, steps)
    return {f"s_per_step_{name}": seconds for name, seconds in fastest.items()}


def record(figures: dict[str, float], args: argparse.Namespace, load: float) -> None:
    ref = figures["s_per_step_reference_fp32"]
    rows = [f"| {name} | {figures[f's_per_step_{key}']:.3f} | "
            f"{ref / figures[f's_per_step_{key}']:.2f}x |"
            for name, key in (("reference network, fp32", "reference_fp32"),
                              ("this library, fp32", "ours_fp32"),
                              ("this library, bf16-mixed", "ours_bf16"))]
    body = "\n".join([
        "## Against the reference network (`benchmarks/reference_network.py`)", "",
        "The reference code's network (zhouhaoyi/Informer2020, a checkout outside this "
        "repository) and this library's, at the paper's default config, in one process on "
        f"the same batches: {args.rounds} interleaved rounds of {args.steps} steps after "
        f"{args.warmup} warm-up steps, fastest round. Machine: {machine()}; 1-minute load "
        f"average up to {load:.2f}. Measured {time.strftime('%Y-%m-%d')}.", "",
        "| network | s/step | speed-up over the reference |", "| --- | ---: | ---: |", *rows,
        "", "Same function: built after the same seed, the two draw initial weights that "
        f"differ by at most {figures['init_weight_diff']:.1e}; with the same weights, their "
        f"forecasts differ by at most {figures['forward_diff_full_eval']:.1e} (full attention, "
        f"eval mode) and {figures['forward_diff_prob_train']:.1e} (ProbSparse, training mode, "
        "dropout 0, keys sampled from the same seed); with dropout 0, "
        f"{args.train_steps} Adam steps on the same batches give losses within "
        f"{figures['train_loss_rel_diff']:.1e} of each other (relative), after which the two "
        f"trained networks' forecasts differ by at most {figures['train_forecast_diff']:.1e} "
        "(fp32; standardised data, whose values are of order 1). Same data: the reference "
        "code's ETTh1 loader gives "
        + ("as many" if figures["data_same_window_counts"] else "NOT as many")
        + " train, validation and test windows as this library's, whose inputs, targets and "
        f"calendar marks differ from its by at most {figures['data_max_diff']:.1e}."])
    record_section("reference_network", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="a checkout of zhouhaoyi/Informer2020")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--record", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    cls = reference_class(args.reference.expanduser())
    setup = _setup("prob", "module")
    dataset, config = setup[0], setup[1]
    batch = dataset.__getitems__(list(range(args.batch_size)))
    full = InformerConfig(**(config.to_dict() | {"attn": "full"}))
    figures = {"init_weight_diff": check_init(cls, config),
               "forward_diff_full_eval": check_forward(cls, full, batch, train=False),
               "forward_diff_prob_train": check_forward(cls, config, batch, train=True),
               **check_training(cls, config, dataset, args.train_steps),
               **check_data(config)}
    load = load_average()
    figures |= speed(cls, setup, args.steps, args.warmup, args.rounds, args.batch_size)
    if args.record:
        record(figures, args, max(load, load_average()))
    for key, value in figures.items():
        print(f"{key}={value:.6g}")


if __name__ == "__main__":
    main()
