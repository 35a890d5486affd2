"""Shared fixtures: ETT data from ../shared/data/ETT, tiny configs, synthetic CSV files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from informer.cli.common import config_dir

REPO = Path(__file__).resolve().parents[1]
ETT_DIR = Path(os.environ.get("INFORMER_DATA_DIR", REPO.parent / "shared" / "data" / "ETT"))
os.environ["INFORMER_DATA_DIR"] = str(ETT_DIR)

# A network small enough for a CPU test (conf/debug/tiny.yaml): the shapes, not the accuracy.
TINY = ["debug=tiny"]


@pytest.fixture(scope="session")
def ett_dir() -> Path:
    if not (ETT_DIR / "ETTh1.csv").is_file():
        pytest.fail(f"ETT data not found in {ETT_DIR}; set INFORMER_DATA_DIR")
    return ETT_DIR


@pytest.fixture(scope="session")
def trained(tmp_path_factory, ett_dir) -> Path:
    """One tiny ETTh1 run through the real console script (shared by the test modules)."""
    out = tmp_path_factory.mktemp("train") / "run"
    env = {**os.environ, "INFORMER_DATA_DIR": str(ett_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "informer.cli.train", "experiment=etth1_M_24", *TINY,
         f"hydra.run.dir={out}"], cwd=out.parent, env=env, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture
def train_cfg(tmp_path, ett_dir):
    """``compose_cfg('train', ...)`` for a tiny ETTh1 run writing into ``tmp_path``."""

    def make(*overrides: str, out: Path | None = None):
        out = out or tmp_path / "run"
        return compose_cfg("train", ["experiment=etth1_M_24", *TINY, f"paths.output_dir={out}",
                                     f"paths.data_dir={ett_dir}", *overrides])

    return make


def write_series(path: Path, n: int = 400, freq: str = "h", columns=("a", "b", "OT"),
                 start: str = "2020-01-01", seed: int = 0) -> Path:
    """A synthetic ETT-style CSV with ``n`` rows at ``freq``."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(start, periods=n, freq=freq)
    t = np.arange(n)
    data = {"date": dates.strftime("%Y-%m-%d %H:%M:%S")}
    for i, col in enumerate(columns):
        data[col] = 10 * (i + 1) + np.sin(t / (5 + i)) * (i + 1) + rng.normal(0, 0.1, n)
    pd.DataFrame(data).to_csv(path, index=False)
    return path
