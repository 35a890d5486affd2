"""How much evaluation details move a trained model's test MSE: every test window (this
library) against the reference code's windows (its test loader drops the last partial batch of
32), and fp32 against bf16 inference.

    python benchmarks/window_effects.py runs/reproduce/etth1_M_24/paper/seed*/model

Reads each artifact's data file from ``INFORMER_DATA_DIR`` (else the directory it was trained
from) and prints one row per artifact.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from informer.artifact import LoadedModel, load_model
from informer.data.sources import ENV_DATA_DIR, resolve_data_file
from informer.forecast import Forecaster

REFERENCE_BATCH = 32


def model_and_data(path: Path) -> tuple[LoadedModel, pd.DataFrame]:
    """An artifact and its data file (from ``INFORMER_DATA_DIR``, else where it was trained)."""
    loaded = load_model(path)
    data = loaded.info["run"]["data"]
    return loaded, pd.read_csv(resolve_data_file(os.environ.get(ENV_DATA_DIR, data["data_dir"]),
                                                 data["file"]))


def effects(path: Path) -> dict[str, float]:
    """Test MSE (standardised) of one artifact under each evaluation choice."""
    loaded, df = model_and_data(path)
    s = loaded.schema
    std = np.asarray(s.std)[[s.columns.index(c) for c in s.predicted]]
    row: dict[str, float] = {}
    for precision in ("32-true", "bf16-mixed"):
        frame = Forecaster(loaded, precision=precision).backtest(df).frame
        actual = frame[[f"{c}_actual" for c in s.predicted]].to_numpy()
        squared = ((frame[s.predicted].to_numpy() - actual) / std) ** 2
        origins = frame["origin"].unique()
        kept = len(origins) // REFERENCE_BATCH * REFERENCE_BATCH
        reference = frame["origin"].isin(origins[:kept]).to_numpy()
        row |= {f"{precision} all": squared.mean(),
                f"{precision} reference": squared[reference].mean(),
                "windows": len(origins), "reference windows": kept}
    return row


def main(paths: list[str]) -> None:
    if not paths:
        sys.exit("usage: python benchmarks/window_effects.py <artifact dir> [...]")
    rows = {path: effects(Path(path)) for path in paths}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table["bf16 vs fp32"] = table["bf16-mixed all"] / table["32-true all"] - 1
    table["reference vs all"] = table["32-true reference"] / table["32-true all"] - 1
    with pd.option_context("display.width", 200, "display.float_format", "{:.4f}".format):
        print(table.to_string())


if __name__ == "__main__":
    main(sys.argv[1:])
