"""SageMaker Processing: validate a raw CSV and write the dataset plus a data profile.

``python sagemaker_jobs/preprocess.py --experiment etth1_M_24 [--data.file ETTh1.csv]``

Reads ``/opt/ml/processing/input`` (``--input-dir``), runs the DataModule's own checks for the
composed config (columns, dates, gaps against ``freq``, numbers, split and window lengths,
batch size), then writes to ``/opt/ml/processing/output`` (``--output-dir``):

- ``dataset/<file>``: the validated file, byte for byte (the training channel);
- ``profile/profile.json``: rows, date range, freq, split borders and window counts, and per
  column mean/std/min/max (all rows) and the train-split scaler; ``input_version`` (the
  pipeline's ``--input-version``, the input's ETag or digest: part of the step's cache key).

Without ``data.file`` in the config (``data=custom``) the one CSV in the input is used. A bad
file exits with code 2, ``error: <file>: <what was expected>`` (also in
``/opt/ml/output/message``, the job's ExitMessage; ``--message-file``) and no outputs.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import the package, not its sibling files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from informer.errors import InformerError  # noqa: E402
from sagemaker_jobs.container import processing_dir, processing_main  # noqa: E402
from sagemaker_jobs.hyperparameters import compose_config, parse_cli, to_overrides  # noqa: E402

OPTIONS = ("input-dir", "output-dir", "message-file", "input-version")


def pick_file(configured: str | None, input_dir: Path) -> Path:
    """The configured file in ``input_dir``, or its only CSV when none is configured."""
    if not input_dir.is_dir():
        raise InformerError(f"{input_dir}: input directory not found; expected the raw CSV "
                            f"there (ProcessingInput destination or --input-dir)")
    found = sorted(p.name for p in input_dir.glob("*.csv"))
    if configured:
        path = input_dir / configured
        if not path.is_file():
            raise InformerError(f"data.file: {configured!r} not found in {input_dir}; it holds "
                                f"{found}")
        return path
    if len(found) != 1:
        raise InformerError(f"data.file: not set and {input_dir} holds {len(found)} CSV files "
                            f"{found}; pass --data.file <name>")
    return input_dir / found[0]


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def profile(series: Any, path: Path) -> dict[str, Any]:
    """Rows, dates, splits and per-column statistics of a fitted ``SeriesData``."""
    from informer.data.sources import sha256_file
    from informer.data.windows import window_count

    s, dates, values = series.schema, series.dates, series.values
    splits = {}
    for stage, (start, end) in series.borders.items():
        splits[stage] = {"start": str(dates[start]), "end": str(dates[end - 1]),
                         "rows": end - start,
                         "windows": max(window_count(end - start, s.seq_len, s.pred_len), 0)}
    stats = {c: {"mean": float(values[:, j].mean()), "std": float(values[:, j].std()),
                 "min": float(values[:, j].min()), "max": float(values[:, j].max())}
             for j, c in enumerate(s.columns)}
    scaler = {c: {"mean": s.mean[j], "std": s.std[j]} for j, c in enumerate(s.columns)}
    return {"file": path.name, "sha256": sha256_file(path), "rows": int(len(dates)),
            "date_start": str(dates[0]), "date_end": str(dates[-1]), "freq": s.freq,
            "columns": list(s.input_columns or s.columns), "model_columns": list(s.columns),
            "target": s.target, "features": s.features,
            "windows": {"seq_len": s.seq_len, "label_len": s.label_len, "pred_len": s.pred_len},
            "splits": splits, "stats": stats, "train_scaler": scaler}


def run(argv: Sequence[str]) -> dict[str, Any]:
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    from informer.files import atomic_write_json

    options, pairs = parse_cli(argv, OPTIONS)
    input_dir = Path(options.get("input-dir") or processing_dir() / "input")
    output_dir = Path(options.get("output-dir") or processing_dir() / "output")
    cfg = compose_config([f"paths.data_dir={input_dir}", f"paths.output_dir={output_dir}",
                          "data.download=false", *to_overrides(pairs)])
    configured = OmegaConf.select(cfg, "data.file", throw_on_missing=False)
    path = pick_file(configured if isinstance(configured, str) else None, input_dir)
    with open_dict(cfg):
        cfg.data.file = path.name
    datamodule = instantiate(cfg.data, _convert_="object")
    datamodule.setup("fit")  # every check training would run
    result = profile(datamodule.series, path)
    if options.get("input-version"):  # the pipeline's cache key of the input's content
        result["input_version"] = options["input-version"]
    _copy(path, output_dir / "dataset" / path.name)
    atomic_write_json(output_dir / "profile" / "profile.json", result)
    print(f"validated {path.name}: {result['rows']} rows {result['date_start']} .. "
          f"{result['date_end']}, windows " +
          ", ".join(f"{k} {v['windows']}" for k, v in result["splits"].items()), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    processing_main(run, argv)


if __name__ == "__main__":
    main()
