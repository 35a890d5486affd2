"""Seconds per training step at the paper's default config (ETTh1 M, 96/48/24, d_model 512,
n_heads 8, e_layers 2, d_layers 1, d_ff 2048, batch 32), on real ETTh1 batches.

    python benchmarks/train_step.py --steps 10 --precision bf16-mixed [--attn full]
    python benchmarks/train_step.py --record      # fp32 + bf16, prob + full -> docs/benchmarks.md
    python benchmarks/train_step.py --device cuda --precision bf16-mixed   # on a GPU

A step is what the LightningModule does per batch: gather the batch, forward (under bf16
autocast for ``bf16-mixed``, as Lightning does), MSE loss, backward, optimizer step; the network
and the optimizer come from :class:`informer.module.InformerModule` (``--optimizer fused``
swaps in ``Adam(fused=True)``). The single-run form ends with one line ``s_per_step=<float>``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_average, machine, peak_rss_gib, record_section, wait_quiet  # noqa: E402

from informer.config import InformerConfig  # noqa: E402
from informer.data.series import SeriesData  # noqa: E402
from informer.data.sources import ENV_DATA_DIR, resolve_data_file  # noqa: E402
from informer.evaluation import targets  # noqa: E402
from informer.module import InformerModule  # noqa: E402

REFERENCE_FP32 = "1.02-1.08"
# The network before the speed work, and this benchmark's figures for it then (same machine type).
BASELINE_REV = "35fa01d"
BEFORE = {"32-true": 0.715, "bf16-mixed": 0.374}


def make_optimizer(module: InformerModule, kind: str) -> torch.optim.Optimizer:
    """The module's own optimizer, or ``Adam(fused=True)`` with the module's learning rate."""
    if kind == "fused":
        return torch.optim.Adam(module.net.parameters(), lr=module.hparams.optimizer["lr"],
                                fused=True)
    configured = module.configure_optimizers()
    return configured["optimizer"] if isinstance(configured, dict) else configured


def _setup(attn: str, optimizer_kind: str, device: str = "cpu") -> tuple:
    torch.manual_seed(0)
    data_dir = os.environ.get(ENV_DATA_DIR, "data")
    series = SeriesData.fit(resolve_data_file(data_dir, "ETTh1.csv"), split="ett_hour")
    config = InformerConfig(enc_in=7, dec_in=7, c_out=7, attn=attn)
    module = InformerModule(net=config.to_dict()).to(device)
    return series.dataset("train"), config, module, make_optimizer(module, optimizer_kind)


def _stepper(forward, optimizer: torch.optim.Optimizer, dataset, config: InformerConfig,
             batch_size: int, bf16: bool, device: str = "cpu"):  # noqa: ANN001, ANN202
    """``step(i)``: the i-th training step on a fixed random order of windows (``loss.item()``
    waits for the device, so host clocks around steps time the device work too)."""
    order = torch.Generator().manual_seed(0)
    order = torch.randperm(len(dataset), generator=order)
    device_type = torch.device(device).type

    def step(i: int) -> float:
        index = order[(i * batch_size) % (len(dataset) - batch_size):][:batch_size].tolist()
        batch = {k: v.to(device, non_blocking=True)
                 for k, v in dataset.__getitems__(index).items()}
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            pred = forward(batch["x"], batch["x_mark"], batch["y_mark"])
        loss = F.mse_loss(pred.float(), targets(batch, config.pred_len, config.c_out))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def run(steps: int, warmup: int, precision: str, attn: str, batch_size: int,
        optimizer_kind: str = "module", compile_net: bool = False, device: str = "cpu") -> dict:
    dataset, config, module, optimizer = _setup(attn, optimizer_kind, device)
    net = module.net.train()
    forward = torch.compile(net.predict) if compile_net else net.predict
    step = _stepper(forward, optimizer, dataset, config, batch_size, precision != "32-true",
                    device)
    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    seconds = (time.perf_counter() - start) / steps
    gpu = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0
    return {"s_per_step": seconds, "samples_per_s": batch_size / seconds,
            "peak_rss_gib": peak_rss_gib(), "peak_gpu_gib": gpu}


def run_ab(rev: str, rounds: int, steps: int, warmup: int, precision: str, attn: str,
           batch_size: int, optimizer_kind: str = "module") -> dict:
    """This network against the one of git revision ``rev``: same weights, optimizer and
    batches, ``rounds`` interleaved rounds of ``steps`` steps each; fastest round of each."""
    from baseline import baseline_informer

    dataset, config, module, optimizer = _setup(attn, optimizer_kind)
    old = baseline_informer(rev)(config).train()
    # same weights; tensors the old network lacks (the value embedding's bias since 9162a99)
    # stay out
    kept = old.state_dict().keys()
    old.load_state_dict({k: v for k, v in module.net.state_dict().items() if k in kept})
    old_optimizer = type(optimizer)(old.parameters(), **optimizer.defaults)
    bf16 = precision != "32-true"
    steps_of = {"new": _stepper(module.net.train().predict, optimizer, dataset, config,
                                batch_size, bf16),
                "old": _stepper(old.predict, old_optimizer, dataset, config, batch_size, bf16)}
    fastest = interleaved(steps_of, warmup, rounds, steps)
    return {"s_per_step": fastest["new"], "baseline_s_per_step": fastest["old"]}


def interleaved(steppers: dict, warmup: int, rounds: int, steps: int) -> dict[str, float]:
    """Seconds per step of each stepper: ``warmup`` steps each, then ``rounds`` rounds of
    ``steps`` steps taking turns (so drift in machine speed hits all alike); fastest round."""
    times: dict[str, list[float]] = {name: [] for name in steppers}
    for step in steppers.values():
        for i in range(warmup):
            step(i)
    for r in range(rounds):
        for name, step in steppers.items():
            start = time.perf_counter()
            for i in range(steps):
                step(warmup + r * steps + i)
            times[name].append((time.perf_counter() - start) / steps)
    return {name: min(t) for name, t in times.items()}


def _subprocess(args: list[str]) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         check=True).stdout
    pairs = (line.split("=", 1) for line in out.splitlines() if "=" in line)
    return {k: float(v) for k, v in pairs}


def measure(args: argparse.Namespace, attn: str, precision: str, optimizer: str) -> dict:
    """One setting in a fresh process (its own peak RSS), with the load around it."""
    if args.wait_quiet:
        wait_quiet(args.wait_quiet)
    load = load_average()
    result = _subprocess(["--steps", str(args.steps), "--warmup", str(args.warmup),
                          "--precision", precision, "--attn", attn, "--optimizer", optimizer])
    return result | {"load": max(load, load_average())}


def record(args: argparse.Namespace) -> None:
    """Every attention x precision, ``--repeats`` times each (interleaved), fastest recorded;
    then each against ``BASELINE_REV`` in one process, interleaved."""
    combos = [(a, p) for a in ("prob", "full") for p in ("32-true", "bf16-mixed")]
    combos.append(("prob", "bf16-mixed+fused"))
    runs: dict[tuple[str, str], list[dict]] = {c: [] for c in combos}
    for _ in range(args.repeats):
        for attn, precision in combos:
            name, _, opt = precision.partition("+")
            runs[(attn, precision)].append(measure(args, attn, name, opt or "module"))
            last = runs[(attn, precision)][-1]
            print(f"{attn:4s} {precision:16s} {last['s_per_step']:.3f} s/step "
                  f"(load {last['load']:.2f})", flush=True)
    best = {c: min(r, key=lambda v: v["s_per_step"]) for c, r in runs.items()}
    ab = {}
    for attn, precision in combos[:4]:
        if args.wait_quiet:
            wait_quiet(args.wait_quiet)
        try:  # needs the git history
            ab[(attn, precision)] = _subprocess([
                "--baseline", BASELINE_REV, "--rounds", str(args.repeats), "--steps", "5",
                "--warmup", str(args.warmup), "--precision", precision, "--attn", attn])
        except subprocess.CalledProcessError as error:
            print(f"A/B against {BASELINE_REV} failed: {error.stderr[-300:]}", flush=True)
            continue
        print(f"{attn:4s} {precision:16s} A/B: {ab[(attn, precision)]}", flush=True)
    loads = [v["load"] for v in best.values()]
    lines = [
        "## Training step (`benchmarks/train_step.py`)", "",
        "Paper default config: ETTh1 M, seq/label/pred 96/48/24, d_model 512, n_heads 8, "
        "e_layers 2, d_layers 1, d_ff 2048, batch 32; batch gather + forward + MSE + backward + "
        f"optimizer step on real ETTh1 batches, mean of {args.steps} steps after {args.warmup} "
        "warm-up steps, each configuration in its own process (peak RSS of that process), "
        f"{args.repeats} interleaved repeats, fastest repeat shown.", "",
        f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d')}; 1-minute load average "
        f"around the runs shown {min(loads):.2f}-{max(loads):.2f} (other work shares the "
        "cores, and the speed of these shared machines drifts by 10-20% over a day: compare "
        "figures from the same run).", "",
        "| attention | precision | s/step | samples/s | peak RSS (GiB) "
        f"| A/B in one process: {BASELINE_REV} -> now | recorded before ({BASELINE_REV}) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (attn, precision), v in best.items():
        name, _, opt = precision.partition("+")
        label = f"{name}, Adam(fused=True)" if opt else name
        pair = ab.get((attn, precision))
        versus = (f"{pair['baseline_s_per_step']:.3f} -> {pair['s_per_step']:.3f} s "
                  f"({pair['speedup']:.2f}x)") if pair else ""
        before = f"{BEFORE[name]:.3f}" if attn == "prob" and not opt else ""
        lines.append(f"| {attn} | {label} | {v['s_per_step']:.3f} | {v['samples_per_s']:.1f} "
                     f"| {v['peak_rss_gib']:.2f} | {versus} | {before} |")
    lines += ["", "The optimizer is the one `InformerModule.configure_optimizers` returns; the "
              "`Adam(fused=True)` row shows the same step with PyTorch's fused Adam kernel. "
              f"A/B: `python benchmarks/train_step.py --baseline {BASELINE_REV} --precision ...`"
              " trains both networks (same weights, optimizer and batches) in one process, "
              f"{args.repeats} interleaved rounds of 5 steps, fastest round of each.", "",
              f"Reference code (the paper's repository) at the same config on these 2-core "
              f"machines: {REFERENCE_FP32} s/step fp32 (about 30 samples/s), 0.6 s under bf16 "
              "autocast."]
    record_section("train_step", "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--attn", default="prob", choices=["prob", "full"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--optimizer", default="module", choices=["module", "fused"],
                        help="the module's optimizer, or Adam(fused=True)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--baseline", metavar="REV", default="",
                        help="A/B against the network of this git revision, interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="--baseline: rounds per network")
    parser.add_argument("--record", action="store_true",
                        help="run every attention x precision and write docs/benchmarks.md")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before each run wait up to S seconds for idle CPUs")
    parser.add_argument("--repeats", type=int, default=3, help="--record: runs per setting")
    args = parser.parse_args()
    if args.record:
        record(args)
        return
    if args.baseline:
        result = run_ab(args.baseline, args.rounds, args.steps, args.warmup, args.precision,
                        args.attn, args.batch_size, args.optimizer)
        print(f"baseline_s_per_step={result['baseline_s_per_step']:.4f}")
        print(f"speedup={result['baseline_s_per_step'] / result['s_per_step']:.3f}")
        print(f"s_per_step={result['s_per_step']:.4f}")
        return
    result = run(args.steps, args.warmup, args.precision, args.attn, args.batch_size,
                 args.optimizer, args.compile, args.device)
    print(f"samples_per_s={result['samples_per_s']:.2f}")
    print(f"peak_rss_gib={result['peak_rss_gib']:.3f}")
    if args.device.startswith("cuda"):
        print(f"device={torch.cuda.get_device_name(args.device)}")
        print(f"peak_gpu_gib={result['peak_gpu_gib']:.3f}")
    print(f"s_per_step={result['s_per_step']:.4f}")


if __name__ == "__main__":
    main()
