"""The same trained models' test errors on two scales: standardised by the train rows' statistics
(this library, and the reference code since its 2021-03 fix) and by the whole file's (the
reference code before the fix, when the paper's tables were produced).

    python benchmarks/scaler_effects.py experiment=etth1_M_168,etth1_M_336 variant=paper \
        [seed=2021,1,2] [out=runs/reproduce] [record=true]

Reads the model artifacts of finished ``benchmarks/reproduce_paper.py`` runs
(``<out>/<experiment>/<variant>/seed<seed>/model``) and their data file from
``INFORMER_DATA_DIR`` (else the directory each was trained from); predicts every test window
once and prints, per setting and variant, MSE and MAE on both scales next to the paper's
figures (mean ± sample std over the seeds found). With ``record=true`` the table goes to the
``scaler_effects`` section of ``docs/results.md``.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import parse_options  # noqa: E402
from reproduce_paper import published, record_results, run_dir, summarise  # noqa: E402
from window_effects import model_and_data  # noqa: E402

from informer.forecast import Forecaster  # noqa: E402

DEFAULTS = {"experiment": "etth1_M_168,etth1_M_336", "variant": "paper", "seed": "2021,1,2",
            "out": "runs/reproduce", "record": "false"}


def errors_on_both_scales(model: Path) -> dict[str, float]:
    """Test MSE/MAE of one artifact, standardised by its own scaler (``train``) and by the
    statistics of every row of its data file (``file``; population std, as the scaler)."""
    loaded, df = model_and_data(model)
    s = loaded.schema
    frame = Forecaster(loaded).backtest(df).frame
    err = frame[s.predicted].to_numpy() - frame[[f"{c}_actual" for c in s.predicted]].to_numpy()
    scales = {"train": np.asarray(s.std)[[s.columns.index(c) for c in s.predicted]],
              "file": df[s.predicted].to_numpy(dtype=np.float64).std(axis=0)}
    return {f"{name} {metric}": float(value)
            for name, std in scales.items()
            for metric, value in (("mse", ((err / std) ** 2).mean()),
                                  ("mae", np.abs(err / std).mean()))}


def table(rows: dict[tuple[str, str], list[dict[str, float]]]) -> str:
    """Markdown: one row per (setting, variant), mean ± std over seeds on both scales."""
    lines = ["| setting | variant | published MSE | published MAE | MSE, train scale "
             "| MSE, file scale | MAE, train scale | MAE, file scale | file scale vs published "
             "MSE | seeds |", "|" + " --- |" * 10]
    for (experiment, variant), runs in rows.items():
        paper = published(experiment)
        column = {key: [r[key] for r in runs] for key in runs[0]}
        change = f"{statistics.mean(column['file mse']) / paper[0] - 1:+.1%}" if paper else "-"
        figures = [f"{paper[0]:.3f}", f"{paper[1]:.3f}"] if paper else ["-", "-"]
        lines.append("| " + " | ".join([
            experiment, variant, *figures, summarise(column["train mse"]),
            summarise(column["file mse"]), summarise(column["train mae"]),
            summarise(column["file mae"]), change, str(len(runs))]) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    options = parse_options(argv, DEFAULTS)
    out = Path(options["out"])
    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    for experiment in options["experiment"].split(","):
        for variant in options["variant"].split(","):
            for seed in options["seed"].split(","):
                model = run_dir(out, experiment, variant, seed) / "model"
                if model.is_dir():
                    rows.setdefault((experiment, variant), []).append(
                        errors_on_both_scales(model))
    if not rows:
        sys.exit(f"error: {out}: no finished runs of {options['experiment']} "
                 f"({options['variant']}); run benchmarks/reproduce_paper.py first")
    text = table(rows)
    print(text)
    if options["record"].lower() == "true":
        record_results("scaler_effects.py", "scaler_effects", argv,
                       "test split, every window; the trained runs of the tables above", text)

if __name__ == "__main__":
    main(sys.argv[1:])
