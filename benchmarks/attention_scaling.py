"""Training-step time and peak memory against input length, ProbSparse vs full attention.

    python benchmarks/attention_scaling.py [--quick] [--precision bf16-mixed] [--record]

Model: the paper's defaults (d_model 512, n_heads 8, e_layers 2, d_layers 1, d_ff 2048,
factor 5, distilling) with seq_len L, label_len L/2, pred_len 24, batch 8, 7 variables; a step is
forward + MSE + backward + Adam on random inputs. Every point runs in its own process, so its
peak RSS is the point's own; a point that fails (out of memory, over ``--timeout``) is reported
as such and longer inputs of that attention are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DOCS,
    load_average,
    machine,
    peak_rss_gib,
    record_section,
    wait_quiet,
)

from informer.config import InformerConfig  # noqa: E402
from informer.nn import Informer  # noqa: E402

LENGTHS = (96, 192, 384, 768, 1536, 3072, 6144)
QUICK = (96, 384, 1536)
# The paper's reference code measured on these machines (fp32, batch 8): L -> (s/step, GiB).
REFERENCE = {
    "prob": {384: (0.98, 1.2), 1536: (6.4, 3.0), 3072: (16.1, 6.3)},
    "full": {384: (1.08, 1.3), 1536: (10.3, 5.6), 3072: (42.0, 16.7)},
}
PLOT = DOCS.parent / "attention_scaling.png"
NOTES = """Where O(L log L) holds and where it does not (per training step):

- ProbSparse self-attention proper is O(L log L) in time and memory: u = factor * ceil(ln L)
  queries get full attention rows (with gradients), the lazy ones mean(V) or cumsum(V); in the
  masked decoder about u (1 + ln(L / u)) queries are active and only those are computed.
- Its sparsity measurement is not, as run here: the L * u sampled products q_i . k_j (no
  gradient) are taken from dense q k^T blocks when that is faster than gathering the sampled
  keys, which on this CPU holds up to L_K of about 2 u d (fp32) / 4 u d (bf16), i.e. 5,800 /
  11,500 at d = 64: O(L^2 d) multiply-adds at matrix-product speed, O(L) memory. Longer inputs
  switch to the gather (O(L log L)).
- The decoder's cross-attention is full attention in both variants (as in the paper): about
  (L/2)^2 scores, O(L^2) time. It runs in query blocks whose weights are recomputed in the
  backward pass, so no score matrix is kept: its memory, like full self-attention's, is O(L)
  plus the positions dropped by attention dropout (int32, p = 5% of the scores).
- Embeddings, projections, feed-forward and distilling are O(L) and dominate the step up to
  L ~ 1536; beyond that the quadratic parts take over (growth exponent above 1), for full
  attention much sooner."""


def run_point(length: int, attn: str, precision: str, steps: int, budget_s: float) -> dict:
    """Time ``steps`` training steps (fewer if over ``budget_s``) after one warm-up step."""
    torch.manual_seed(0)
    config = InformerConfig(seq_len=length, label_len=length // 2, pred_len=24, attn=attn)
    net = Informer(config).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    batch = 8
    x = torch.randn(batch, length, config.enc_in)
    x_mark = torch.rand(batch, length, config.mark_dim) - 0.5
    y_mark = torch.rand(batch, config.dec_len, config.mark_dim) - 0.5
    y = torch.randn(batch, config.pred_len, config.c_out)
    bf16 = precision.startswith("bf16")

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = net.predict(x, x_mark, y_mark)
        loss = F.mse_loss(pred.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    times: list[float] = []
    while len(times) < steps and sum(times) < budget_s:
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"s_per_step": sum(times) / len(times), "steps": len(times),
            "peak_rss_gib": peak_rss_gib()}


def measure(length: int, attn: str, args: argparse.Namespace) -> dict | None:
    """The point in a fresh process, ``--repeats`` times; the fastest run (None if failed)."""
    cmd = [sys.executable, __file__, "--point", str(length), attn, "--precision", args.precision,
           "--steps", str(args.steps), "--budget", str(args.budget)]
    best = None
    for _ in range(args.repeats):
        if args.wait_quiet:
            wait_quiet(args.wait_quiet)
        load = load_average()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"L={length} {attn}: over {args.timeout} s", flush=True)
            return None
        values = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        if out.returncode or "s_per_step" not in values:
            print(f"L={length} {attn}: failed (exit {out.returncode}) {out.stderr[-300:]}",
                  flush=True)
            return None
        result = {k: float(v) for k, v in values.items()}
        result["load"] = max(load, load_average())
        print(f"L={length:5d} {attn}: {result['s_per_step']:.3f} s/step, "
              f"{result['peak_rss_gib']:.2f} GiB (load {result['load']:.2f})", flush=True)
        if best is None or result["s_per_step"] < best["s_per_step"]:
            best = result
    return best


def fmt(point: dict | None) -> tuple[str, str]:
    if point is None:
        return "failed", "-"
    return f"{point['s_per_step']:.3f}", f"{point['peak_rss_gib']:.2f}"


def ref(attn: str, length: int) -> str:
    value = REFERENCE[attn].get(length)
    return f"{value[0]} s / {value[1]} GiB" if value else ""


def plot(everything: dict[str, dict]) -> None:
    """Time and memory against L for every measured precision, with the reference points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.4))
    styles = {"bf16-mixed": "o-", "32-true": "s:"}
    for attn, color in (("prob", "tab:blue"), ("full", "tab:red")):
        for precision, results in everything.items():
            points = sorted((n, p) for n, p in results.get(attn, {}).items() if p is not None)
            lengths = [n for n, _ in points]
            label = f"{attn}, this library, {precision}"
            ax_t.plot(lengths, [p["s_per_step"] for _, p in points], styles.get(precision, "o-"),
                      color=color, label=label)
            ax_m.plot(lengths, [p["peak_rss_gib"] for _, p in points],
                      styles.get(precision, "o-"), color=color, label=label)
        ref_points = sorted(REFERENCE[attn].items())
        for ax, i in ((ax_t, 0), (ax_m, 1)):
            ax.plot([n for n, _ in ref_points], [v[i] for _, v in ref_points], "x--",
                    color=color, alpha=0.5, markersize=9, label=f"{attn}, reference code, fp32")
    for ax, title, unit in ((ax_t, "training step", "s / step"),
                            (ax_m, "peak memory", "peak RSS (GiB)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(LENGTHS, [str(n) for n in LENGTHS])
        ax.set_yscale("log")
        ax.set_xlabel("input length L (label_len L/2, pred_len 24, batch 8)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100)


def table(results: dict) -> list[str]:
    """Markdown rows ``L | prob s, GiB | full s, GiB | growth | reference`` for one precision."""
    lines = ["| L | prob s/step | prob GiB | full s/step | full GiB | growth prob / full "
             "| reference prob (fp32) | reference full (fp32) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    previous: dict[str, tuple[int, float]] = {}
    for n in sorted({n for r in results.values() for n in r}):
        cells, growth = [], []
        for attn in ("prob", "full"):
            point = results.get(attn, {}).get(n)
            cells += list(fmt(point)) if n in results.get(attn, {}) else ["", ""]
            exponent = "-"
            if point is not None and attn in previous:
                n0, t0 = previous[attn]
                exponent = f"{math.log(point['s_per_step'] / t0) / math.log(n / n0):.2f}"
            if point is not None:
                previous[attn] = (n, point["s_per_step"])
            growth.append(exponent)
        lines.append(f"| {n} | {' | '.join(cells)} | {' / '.join(growth)} "
                     f"| {ref('prob', n)} | {ref('full', n)} |")
    return lines


def record(everything: dict[str, dict], args: argparse.Namespace) -> None:
    loads = [p["load"] for r in everything.values() for pts in r.values() for p in pts.values()
             if p] or [0.0]
    lines = [
        "## Scaling with input length (`benchmarks/attention_scaling.py`)", "",
        "Training step (forward + MSE + backward + Adam) at d_model 512, n_heads 8, e_layers 2, "
        "d_layers 1, d_ff 2048, factor 5, batch 8, seq_len L, label_len L/2, pred_len 24; mean "
        f"of up to {args.steps} steps after one warm-up step, each point in its own process "
        "(peak RSS of that process, Python and torch included).", "",
        f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d')}; 1-minute load average "
        f"around the points {min(loads):.2f}-{max(loads):.2f} (fastest run kept where a point "
        "was repeated).", "",
    ]
    for precision in ("bf16-mixed", "32-true"):
        if precision in everything:
            lines += [f"### `{precision}`", "", *table(everything[precision]), ""]
    lines += ["Growth: the exponent k in time ~ L^k from the previous length (1 linear, about "
              "1.1 for L log L, 2 quadratic).", "", f"![scaling]({PLOT.name})", "", NOTES]
    record_section("attention_scaling", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"lengths {QUICK} only")
    parser.add_argument("--lengths", type=int, nargs="*", help="override the lengths")
    parser.add_argument("--attn", nargs="*", default=["prob", "full"])
    parser.add_argument("--precision", default="bf16-mixed", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0,
                        help="stop timing a point after this many seconds of steps")
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds per point")
    parser.add_argument("--record", action="store_true",
                        help="write the table to docs/benchmarks.md and the plot to docs/")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before each run wait up to S seconds for idle CPUs")
    parser.add_argument("--repeats", type=int, default=1, help="runs per point (fastest kept)")
    parser.add_argument("--results", default="",
                        help="JSON file to merge results into (lets a sweep run in parts)")
    parser.add_argument("--point", nargs=2, metavar=("L", "ATTN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.point:
        result = run_point(int(args.point[0]), args.point[1], args.precision, args.steps,
                           args.budget)
        print(f"steps={result['steps']}")
        print(f"peak_rss_gib={result['peak_rss_gib']:.3f}")
        print(f"s_per_step={result['s_per_step']:.4f}")
        return
    lengths = args.lengths or list(QUICK if args.quick else LENGTHS)
    saved = Path(args.results) if args.results else None
    everything: dict[str, dict] = {}
    if saved is not None and saved.exists():  # merge with earlier runs (JSON keys are strings)
        everything = {prec: {attn: {int(n): p for n, p in points.items()}
                             for attn, points in by_attn.items()}
                      for prec, by_attn in json.loads(saved.read_text()).items()}
    results = everything.setdefault(args.precision, {"prob": {}, "full": {}})
    for attn in args.attn:
        for n in lengths:
            results.setdefault(attn, {})[n] = point = measure(n, attn, args)
            if saved is not None:
                saved.write_text(json.dumps(everything, indent=1))
            if point is None:
                break
    print(f"load after: {load_average():.2f}")
    if args.record:
        record(everything, args)
        plot(everything)


if __name__ == "__main__":
    main()
