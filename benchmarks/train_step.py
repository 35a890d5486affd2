"""Seconds per training step at the paper's default config (ETTh1 M, 96/48/24, d_model 512,
n_heads 8, e_layers 2, d_layers 1, d_ff 2048, batch 32), on real ETTh1 batches.

    python benchmarks/train_step.py --steps 10 --precision bf16-mixed [--attn full]
    python benchmarks/train_step.py --record      # fp32 + bf16, prob + full -> docs/benchmarks.md

A step is what the LightningModule does per batch: forward, MSE loss, backward, Adam step.
The single-run form ends with one line ``s_per_step=<float>``.
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
from common import machine, peak_rss_gib, record_section  # noqa: E402

from informer.config import InformerConfig  # noqa: E402
from informer.data.series import SeriesData  # noqa: E402
from informer.data.sources import ENV_DATA_DIR, resolve_data_file  # noqa: E402
from informer.evaluation import targets  # noqa: E402
from informer.nn import Informer  # noqa: E402

REFERENCE_FP32 = "1.02-1.08"


def run(steps: int, warmup: int, precision: str, attn: str, batch_size: int) -> dict:
    torch.manual_seed(0)
    data_dir = os.environ.get(ENV_DATA_DIR, "data")
    series = SeriesData.fit(resolve_data_file(data_dir, "ETTh1.csv"), split="ett_hour")
    dataset = series.dataset("train")
    config = InformerConfig(enc_in=7, dec_in=7, c_out=7, attn=attn)
    net = Informer(config).train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    bf16 = precision.startswith("bf16")
    order = torch.randperm(len(dataset))

    def step(i: int) -> float:
        index = order[(i * batch_size) % (len(dataset) - batch_size):][:batch_size].tolist()
        batch = dataset.__getitems__(index)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = net.predict(batch["x"], batch["x_mark"], batch["y_mark"])
        loss = F.mse_loss(pred.float(), targets(batch, config.pred_len, config.c_out))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    seconds = (time.perf_counter() - start) / steps
    return {"s_per_step": seconds, "samples_per_s": batch_size / seconds,
            "peak_rss_gib": peak_rss_gib()}


def record(args: argparse.Namespace) -> None:
    rows = []
    for attn in ("prob", "full"):
        for precision in ("32-true", "bf16-mixed"):
            cmd = [sys.executable, __file__, "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "--precision", precision, "--attn", attn]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
            rows.append((attn, precision, float(values["s_per_step"]),
                         float(values["samples_per_s"]), float(values["peak_rss_gib"])))
            print(f"{attn:4s} {precision:10s} {rows[-1][2]:.3f} s/step", flush=True)
    lines = [
        "## Training step (`benchmarks/train_step.py`)", "",
        "Paper default config: ETTh1 M, seq/label/pred 96/48/24, d_model 512, n_heads 8, "
        "e_layers 2, d_layers 1, d_ff 2048, batch 32; forward + MSE + backward + Adam on real "
        f"ETTh1 batches, mean of {args.steps} steps after {args.warmup} warm-up steps, "
        "each configuration in its own process (peak RSS of that process).", "",
        f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d')}.", "",
        "| attention | precision | s/step | samples/s | peak RSS (GiB) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {a} | {p} | {s:.3f} | {n:.1f} | {r:.2f} |" for a, p, s, n, r in rows]
    lines += ["", f"Reference code (the paper's repository) at the same config on these 2-core "
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
    parser.add_argument("--record", action="store_true",
                        help="run every attention x precision and write docs/benchmarks.md")
    args = parser.parse_args()
    if args.record:
        record(args)
        return
    result = run(args.steps, args.warmup, args.precision, args.attn, args.batch_size)
    print(f"samples_per_s={result['samples_per_s']:.2f}")
    print(f"peak_rss_gib={result['peak_rss_gib']:.3f}")
    print(f"s_per_step={result['s_per_step']:.4f}")


if __name__ == "__main__":
    main()
