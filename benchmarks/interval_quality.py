"""Prediction intervals and skill against naive forecasts, point model beside quantile model.

    python benchmarks/interval_quality.py [experiment=etth1_M_24,etth1_M_168,quickstart] \
        [seed=2021,1,2] [variant=point,quantile] [out=runs/intervals] [record=true]

Each (experiment, variant, seed) is one ``informer-train`` run, trained and kept as
``benchmarks/reproduce_paper.py`` does (finished runs are reused; ``record=true`` keeps each
run's figures in ``docs/runs/interval_quality.json`` and writes the table into
``docs/results.md``). Variants: ``point`` (one forecast, MSE loss: the paper), ``quantile``
(the 0.1/0.5/0.9 quantiles, pinball loss; the point forecast is the median), ``preset`` (the
experiment as it is), or any variant of ``reproduce_paper.py``; ``quickstart01`` is the 0.1
quickstart (no RevIN, no quantiles), ``quickstart02`` the next one (RevIN and quantiles at the
paper's lr 1e-4).

The table gives, over the test split's windows: the test MSE of the point forecast, the 80%
interval's coverage, the weighted quantile loss (original units), CRPS (scaled), the skill
``1 - MSE / MSE_baseline`` against the seasonal-naive and window-mean forecasts, the level
jump ``|y_hat(t+1) - y(t)| / std`` of a backtest over the split, and the training time.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reproduce_paper as rp  # noqa: E402
from common import parse_options  # noqa: E402

rp.VARIANTS["quickstart01"] = ["model.net.revin=false", "model.net.quantiles=null",
                               "data.seq_len=48", "trainer.max_epochs=3"]
# the quickstart preset of 0.2's first releases: RevIN and quantiles at the paper's lr
rp.VARIANTS["quickstart02"] = ["model.optimizer.lr=1.0e-4"]
rp.VARIANTS["preset"] = []  # the experiment preset as it is
DEFAULTS = {"experiment": "quickstart,etth1_M_24,etth1_M_168", "seed": "2021,1,2",
            "variant": "point,quantile", "out": "runs/intervals", "record": "false",
            "train": "true", "section": "interval_quality"}
COLUMNS = [("test/mse", "test MSE", "{:.3f}"), ("test/coverage_80", "80% coverage", "{:.1%}"),
           ("test/wql_original", "wQL (units)", "{:.3f}"), ("test/crps", "CRPS", "{:.3f}"),
           ("test/skill_seasonal_naive", "skill vs seasonal naive", "{:+.3f}"),
           ("test/skill_window_mean", "skill vs window mean", "{:+.3f}"),
           ("level_jump", "level jump", "{:.2f}"), ("seconds", "train s", "{:.0f}")]


def level_jump(directory: Path) -> float:
    """The backtest's level jump of a finished run's artifact over its test split."""
    from informer.data.csv import read_csv
    from informer.forecast import Forecaster

    forecaster = Forecaster.from_artifact(directory / "model", precision="32-true")
    data = forecaster.loaded.info["run"]["data"]
    return forecaster.backtest(read_csv(Path(data["data_dir"]) / data["file"])
                               ).metrics["level_jump"]


def finished(directory: Path, metrics: dict) -> dict:
    """A run's metrics with its level jump (computed once, kept in its metrics.json)."""
    if "level_jump" not in metrics and (directory / "model").is_dir():
        metrics["level_jump"] = level_jump(directory)
        (directory / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def cell(runs: list[dict], key: str, form: str) -> str:
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return "-"
    text = form.format(statistics.mean(values))
    if len(values) > 1:
        text += " ± " + form.format(statistics.stdev(values)).lstrip("+")
    return text


def table(results: dict[tuple[str, str], list[dict]]) -> str:
    lines = ["| setting | variant | seeds | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|" + " --- |" * (3 + len(COLUMNS))]
    for (experiment, variant), runs in results.items():
        cells = [cell(runs, key, form) for key, _, form in COLUMNS]
        lines.append(f"| {experiment} | {variant} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    options = parse_options(argv, DEFAULTS)
    out = Path(options["out"])
    experiments = options["experiment"].split(",")
    variants, seeds = options["variant"].split(","), options["seed"].split(",")
    unknown = {v for variant in variants for v in variant.split("+")} - set(rp.VARIANTS)
    if unknown:
        sys.exit(f"error: variant: expected some of {sorted(rp.VARIANTS)}, got {sorted(unknown)}")
    plan = [(e, v, s) for e in experiments for v in variants for s in seeds]
    if options["train"].lower() == "false":
        plan = [p for p in plan if (rp.run_dir(out, *p) / "metrics.json").is_file()]
    done = [(p, finished(rp.run_dir(out, *p), rp.train(rp.run_dir(out, *p), *p, [], None)))
            for p in plan]
    ledger, results, seeds = rp.merge(rp.load_ledger(options["section"]), done, experiments,
                                      variants)
    text = table(results)
    print(text)
    if options["record"].lower() == "true":
        runs = [m for group in results.values() for m in group]
        machines = "; ".join(sorted({m["machine"] for m in runs if m.get("machine")}))
        rp.save_ledger(options["section"], ledger)
        rp.record_section(options["section"], (
            f"Produced by `python benchmarks/interval_quality.py {' '.join(argv)}` with the "
            f"runs recorded before it in `docs/runs/{options['section']}.json` (test split, "
            f"every window; MSE, CRPS and skill on standardised data, wQL in original units; "
            f"mean ± sample std over seeds {', '.join(seeds)}).\n\nTrained on: {machines}. "
            f"Recorded {time.strftime('%Y-%m-%d')}.\n\n{text}"), rp.RESULTS, rp.HEADER)
        print(f"wrote {rp.RESULTS}")


if __name__ == "__main__":
    main(sys.argv[1:])
