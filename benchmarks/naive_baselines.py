"""Three forecasts that learn nothing, on the same test windows as the paper presets: repeat the
last input value (persistence), the value one season before (seasonal naive, a day of hourly
rows: :mod:`informer.baselines`, the baseline every model's skill is reported against) and the
input window's mean. They put the Informer figures on a scale: a model that does not beat them
has not learnt the series' dynamics.

    python benchmarks/naive_baselines.py [experiment=etth1_M_24,etth1_S_24] [record=true]

Each experiment is composed from ``conf/`` exactly as ``informer-train`` composes it (same
file, split borders, scaler fit on the train rows, windows), so the MSE/MAE are on standardised
data over every test window, like ``docs/results.md``'s tables; ``record=true`` writes them there.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_options  # noqa: E402
from reproduce_paper import PAPER, published, record_results  # noqa: E402

from informer.baselines import naive_forecasts, season_length  # noqa: E402
from informer.cli.common import compose_conf  # noqa: E402
from informer.evaluation import targets  # noqa: E402

ALL = ",".join(f"etth1_{f}_{h}" for f, horizons in PAPER.items() for h in horizons)
DEFAULTS = {"experiment": ALL, "record": "false"}


def split_windows(experiment: str) -> tuple[torch.Tensor, torch.Tensor, int | None]:
    """The test split of a preset: inputs ``[N, seq_len, C]`` and targets ``[N, pred_len, c]``
    (``c`` = the predicted columns: all for M, the target for S and MS), and the season."""
    cfg = compose_conf("train", [f"experiment={experiment}"])
    data = instantiate(cfg.data)
    data.setup("test")
    dataset = data.datasets["test"]
    batch = dataset.__getitems__(range(len(dataset)))
    c_out = len(data.schema.predicted)
    return (batch["x"][..., -c_out:], targets(batch, cfg.data.pred_len, c_out),
            season_length(cfg.data.freq))


def scores(experiment: str) -> dict[str, float]:
    x, y, season = split_windows(experiment)
    row: dict[str, float] = {"windows": len(x)}
    naive = naive_forecasts(x, y.size(1), season)
    for name, forecast in (("persistence", x[:, -1:]),
                           ("seasonal naive", naive.get("seasonal_naive")),
                           ("window mean", naive["window_mean"])):
        if forecast is None:  # the input window is shorter than a season
            row |= {f"{name} MSE": float("nan"), f"{name} MAE": float("nan")}
            continue
        error = forecast.expand_as(y) - y
        row |= {f"{name} MSE": error.pow(2).mean().item(), f"{name} MAE": error.abs().mean().item()}
    return row


def table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| setting | test windows | published Informer MSE | persistence MSE | "
             "persistence MAE | seasonal-naive MSE | seasonal-naive MAE | window-mean MSE | "
             "window-mean MAE |", "|" + " --- |" * 9]
    for experiment, r in rows.items():
        paper = published(experiment)
        lines.append(f"| {experiment} | {r['windows']:.0f} | {paper[0] if paper else '-'} | "
                     f"{r['persistence MSE']:.3f} | {r['persistence MAE']:.3f} | "
                     f"{r['seasonal naive MSE']:.3f} | {r['seasonal naive MAE']:.3f} | "
                     f"{r['window mean MSE']:.3f} | {r['window mean MAE']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    options = parse_options(argv, DEFAULTS)
    text = table({e: scores(e) for e in options["experiment"].split(",")})
    print(text)
    if options["record"].lower() == "true":
        record_results("naive_baselines.py", "naive_baselines", argv,
                       "test split, every window, standardised data", text)

if __name__ == "__main__":
    main(sys.argv[1:])
