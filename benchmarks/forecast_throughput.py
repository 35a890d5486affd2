"""Backtest throughput (windows/s) over the ETTh1 test split (2857 origins) at several batch
sizes and precisions, and the latency of one ``forecast`` call, at the paper's default config.

    python benchmarks/forecast_throughput.py [--model <artifact dir>] [--record]

Without ``--model`` a seeded default-config network (untrained) is exported to a temp dir:
throughput does not depend on the weights. With a trained artifact the script also shows that
bf16 metrics stay within 1% of fp32.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, record_section  # noqa: E402

from informer.artifact import save_artifact  # noqa: E402
from informer.config import InformerConfig  # noqa: E402
from informer.data.series import SeriesData  # noqa: E402
from informer.data.sources import ENV_DATA_DIR, resolve_data_file  # noqa: E402
from informer.forecast import Forecaster  # noqa: E402
from informer.nn import Informer  # noqa: E402


def default_artifact(csv: Path, directory: Path) -> Path:
    torch.manual_seed(0)
    schema = SeriesData.fit(csv, split="ett_hour").schema
    return save_artifact(directory, Informer(InformerConfig()), schema,
                         run_config={"data": {"split": "ett_hour"}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="artifact directory (default: untrained default config)")
    parser.add_argument("--batch-sizes", default="1,16,32,64,256")
    parser.add_argument("--record", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    csv = resolve_data_file(os.environ.get(ENV_DATA_DIR, "data"), "ETTh1.csv")
    df = pd.read_csv(csv)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else default_artifact(csv, Path(tmp) / "model")
        rows, metrics = [], {}
        for precision in ("32-true", "bf16-mixed"):
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                forecaster = Forecaster.from_artifact(model, batch_size=batch,
                                                      precision=precision)
                if batch == 1:  # 2857 single windows take long; time the first 200
                    dates = forecaster.validate(df)[0]
                    first, _ = forecaster.default_origins(len(df))
                    seq = forecaster.schema.seq_len
                    span = (dates[first + seq - 1], dates[first + seq + 198])
                else:
                    span = (None, None)
                forecaster.backtest(df, *span) if batch > 1 else None  # warm-up
                start = time.perf_counter()
                result = forecaster.backtest(df, *span)
                seconds = time.perf_counter() - start
                windows = int(result.metrics["windows"])
                rows.append((precision, batch, windows / seconds, seconds, windows))
                if batch > 1:
                    metrics[precision] = result.metrics["mse"]
                print(f"{precision:10s} batch {batch:4d}: {windows / seconds:8.1f} windows/s "
                      f"({windows} windows in {seconds:.2f} s)", flush=True)
            history = df.tail(forecaster.schema.seq_len + 10)
            forecaster.forecast(history)
            start = time.perf_counter()
            for _ in range(20):
                forecaster.forecast(history)
            latency = (time.perf_counter() - start) / 20
            rows.append((precision, "forecast()", 1 / latency, latency, 1))
            print(f"{precision:10s} single forecast() latency: {latency * 1e3:.1f} ms", flush=True)
        drift = abs(metrics["bf16-mixed"] - metrics["32-true"]) / metrics["32-true"]
        print(f"test MSE fp32 {metrics['32-true']:.6f}, bf16 {metrics['bf16-mixed']:.6f} "
              f"({drift:.3%} apart)")
    if args.record:
        lines = [
            "## Forecast throughput (`benchmarks/forecast_throughput.py`)", "",
            "Rolling backtest over the ETTh1 test split (2857 origins; batch 1 times the first "
            "200) at the paper's default config (d_model 512, 96/48/24, ProbSparse), "
            f"model: {'`' + args.model + '`' if args.model else 'untrained, seeded'}; "
            "windows/s include reading, scaling, batching and assembling the output frame.", "",
            f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d')}.", "",
            "| precision | batch | windows/s | seconds | windows |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        lines += [f"| {p} | {b} | {w:.1f} | {s:.3f} | {n} |" for p, b, w, s, n in rows]
        lines += ["", f"Test MSE: fp32 {metrics['32-true']:.6f}, bf16-mixed "
                  f"{metrics['bf16-mixed']:.6f} ({drift:.3%} apart). Reference network: about "
                  "65 windows/s at batch 1 and 82 at batch 32 (fp32), ~40 s for the split."]
        record_section("forecast_throughput", "\n".join(lines))


if __name__ == "__main__":
    main()
