"""Metric lines in the job log and the matching SageMaker metric definitions.

The entry point prints ``train_loss=0.41;`` style lines; SageMaker extracts them with
:data:`METRIC_DEFINITIONS` (name + regex with one capture group). The launcher and the pipeline
import this list, so the names and the printed lines cannot drift apart. No SDK import here.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"

# Printed once per epoch (train_loss, val_loss) and once at test time (the rest).
METRIC_NAMES = ("train_loss", "val_loss", "test_mse", "test_mae", "test_rmse",
                "test_mse_original", "test_mae_original")

METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": rf"{name}={_NUMBER};"} for name in METRIC_NAMES
]

# Sources of each line in the flat metrics (Lightning's callback_metrics / metrics.json).
SOURCES = {"train_loss": "train/loss_epoch", "val_loss": "val/loss", "test_mse": "test/mse",
           "test_mae": "test/mae", "test_rmse": "test/rmse",
           "test_mse_original": "test/mse_original", "test_mae_original": "test/mae_original"}


def metric_line(values: dict[str, float], prefix: str = "") -> str:
    """``name=value;`` pairs joined by spaces (non-finite values are left out)."""
    parts = [f"{name}={value:.6g};" for name, value in values.items() if math.isfinite(value)]
    return (prefix + " ".join(parts)).strip()


def parse_metric_lines(text: str) -> dict[str, list[float]]:
    """What SageMaker would extract from ``text`` with :data:`METRIC_DEFINITIONS`."""
    return {d["Name"]: [float(v) for v in re.findall(d["Regex"], text)]
            for d in METRIC_DEFINITIONS}
