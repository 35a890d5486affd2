"""The random draws of one training-mode forward of this library's network against the reference
code's (zhouhaoyi/Informer2020, a checkout the user supplies; none of its code is here), call by
call: could the two networks, seeded alike, draw the same random numbers?

    python benchmarks/random_draws.py --reference ~/src/Informer2020 [--record]

Both networks are built with the same weights (ETTh1 M 96/48/48 at the paper's sizes, dropout
0.05, ProbSparse) and run one training-mode forward on the same batch after the same
``torch.manual_seed``, this library's with PyTorch's ``F.dropout`` in place of its sparse
dropout (``benchmarks/dropout_noise.py``'s ``stock_dropout``). Every call that draws from torch's
global generator (dropout, ``randint``, ``rand``, ...) is logged with the shape it draws. The
table pairs the calls in order: the same call and shape draws the same numbers; the same call
over the same number of elements in another layout draws the same numbers into other positions;
a call over fewer elements leaves the two generators out of step from there on.

Ends with one ``key=value`` line per figure.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, record_section  # noqa: E402
from dropout_noise import seeded_pair, setting, stock_dropout  # noqa: E402
from reference_network import copy_weights, reference_class, reference_forward  # noqa: E402
from reproduce_paper import HEADER, RESULTS  # noqa: E402

# torch calls that draw from a generator (the global one unless given ``generator=``)
RANDOM = {"dropout", "alpha_dropout", "feature_alpha_dropout", "bernoulli", "bernoulli_", "rand",
          "rand_like", "randn", "randn_like", "randint", "randint_like", "randperm",
          "multinomial", "uniform_", "normal_", "geometric_", "exponential_", "random_"}

Draw = tuple[str, tuple[int, ...]]


class _Log(TorchFunctionMode):
    """Records ``(call, shape drawn)`` of every draw from the global generator."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Draw] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in RANDOM and kwargs.get("generator") is None and isinstance(out, torch.Tensor):
            self.calls.append((name, tuple(out.shape)))
        return out


def draws(forward: Callable, batch: dict, seed: int = 7) -> list[Draw]:
    """The global-generator draws of ``forward(x, x_mark, y_mark)`` on ``batch``, in order."""
    log = _Log()
    with torch.no_grad(), log:
        torch.manual_seed(seed)
        forward(batch["x"], batch["x_mark"], batch["y_mark"])
    return log.calls


def verdict(ref: Draw | None, ours: Draw | None) -> str:
    """How one pair of calls compares (see the module docstring)."""
    if ref is None or ours is None:
        return "only one side draws"
    if ref[0] != ours[0]:
        return "another call"
    if ref[1] == ours[1]:
        return "same"
    if math.prod(ref[1]) == math.prod(ours[1]):
        return "same elements, other layout"
    return "fewer elements" if math.prod(ours[1]) < math.prod(ref[1]) else "more elements"


def table(ref: list[Draw], ours: list[Draw]) -> tuple[list[str], dict[str, float]]:
    """Markdown rows pairing the calls in order, and the counts of each verdict."""
    rows = ["| # | reference code | this library (stock dropout) | draws |",
            "| ---: | --- | --- | --- |"]
    counts = {"calls_reference": float(len(ref)), "calls_ours": float(len(ours))}
    for i in range(max(len(ref), len(ours))):
        a = ref[i] if i < len(ref) else None
        b = ours[i] if i < len(ours) else None
        kind = verdict(a, b)
        key = "pairs_" + kind.replace(",", "").replace(" ", "_")
        counts[key] = counts.get(key, 0.0) + 1
        cells = [f"`{d[0]}` {list(d[1])}" if d else "-" for d in (a, b)]
        rows.append(f"| {i} | {cells[0]} | {cells[1]} | {kind} |")
    return rows, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True,
                        help="a checkout of zhouhaoyi/Informer2020")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--record", action="store_true", help="write docs/results.md")
    args = parser.parse_args()
    cls = reference_class(args.reference.expanduser())
    config, batch = setting(args.batch_size)
    ours, ref = seeded_pair(cls, config)
    copy_weights(ours, ref)
    ref_calls = draws(reference_forward(ref, ours), batch)
    with stock_dropout():
        our_calls = draws(ours.predict, batch)
    rows, counts = table(ref_calls, our_calls)
    for line in rows:
        print(line)
    if args.record:
        body = "\n".join([
            "Produced by `python benchmarks/random_draws.py --reference <checkout> --record` on "
            f"{machine()}: ETTh1 M 96/48/48, dropout {config.dropout}, ProbSparse, one "
            f"training-mode forward of a batch of {args.batch_size} from the same weights and "
            f"seed. Recorded {time.strftime('%Y-%m-%d')}.", "", *rows])
        record_section("random_draws", body, RESULTS, HEADER)
        print(f"wrote {RESULTS}")
    for key, value in counts.items():
        print(f"{key}={value:g}")


if __name__ == "__main__":
    main()
