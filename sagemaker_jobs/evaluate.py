"""SageMaker Processing: evaluate ``model.tar.gz`` and write ``evaluation.json``.

``python sagemaker_jobs/evaluate.py [--split test] [--file ETTh1.csv] [--batch_size 256]``

Reads the model from ``/opt/ml/processing/model`` (``--model-dir``: ``model.tar.gz`` or an
extracted artifact) and the data from ``/opt/ml/processing/test`` (``--data-dir``; the file the
model was trained on unless ``--file``), with the split settings recorded in the artifact.
Writes ``/opt/ml/processing/evaluation/evaluation.json`` (``--output-dir``) in SageMaker's
model-quality form (below) with ``backtest_by_step.csv`` beside it (errors and skill per horizon
step), and ``/opt/ml/processing/batch-input/<file>`` (``--batch-input-dir``):
the Batch Transform input of the version, the data file's header and its latest
``seq_len + backtest_windows * pred_len`` rows, byte for byte (``--backtest-windows``, default
7; every row when the file is shorter). The pipeline records that output's S3 prefix in the
registered version (``CustomerMetadataProperties.TransformInput``), and the approval Lambda
transforms it: the last ``backtest_windows`` horizons backtested against their actual values,
then the forecast past the last row::

    {"regression_metrics": {"mse": {"value": .., "standard_deviation": ..}, "mae": {..},
                            "rmse": {..}, "mape": {..}, "mse_original": {..}, ...},
     "interval_metrics": {"coverage_80": {"value": ..}, "wql": {..}, "crps": {..}, ...},
     "skill": {"seasonal_naive": {"value": .., "baseline_mse": .., "by_step": [..]},
               "window_mean": {..}, "best_baseline": "seasonal_naive", "value": ..},
     "split": "test", "windows": 2857, "schema": {"variables": [..], "mean": [..], ...}, ...}

``value`` is the metric over every window of the split (as ``informer-eval``, scaled as in the
paper; ``*_original`` in original units); ``standard_deviation`` is the population standard
deviation of the same metric computed per window. ``interval_metrics`` (quantile models only):
coverage of each central interval, weighted quantile loss and CRPS (:mod:`informer.intervals`).
``skill``: ``1 - MSE / MSE_baseline`` against the seasonal-naive and window-mean forecasts
(:mod:`informer.baselines`), overall and per horizon step; ``skill.value`` is the skill against
the better of the two, which the pipeline's condition reads. Non-finite figures (MAPE with
zero targets) are written as ``null``. ``schema``: what scoring the version's served forecasts
needs (:func:`schema_report`).
"""

from __future__ import annotations

import math
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import the package, not its sibling files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from informer.errors import InformerError  # noqa: E402
from sagemaker_jobs.container import processing_dir, processing_main  # noqa: E402
from sagemaker_jobs.hyperparameters import compose_config, parse_cli, to_overrides  # noqa: E402

OPTIONS = ("model-dir", "data-dir", "output-dir", "message-file", "batch-input-dir",
           "backtest-windows")
BACKTEST_WINDOWS = 7
BY_STEP_FILE = "backtest_by_step.csv"
REPORTED = ("mse", "mae", "rmse", "mape")


def extract_model(model_dir: Path, work: Path) -> Path:
    """The artifact directory: ``model_dir`` itself, or ``model.tar.gz`` in it extracted
    (regular files and directories only, nothing outside ``work``)."""
    if (model_dir / "manifest.json").is_file():
        return model_dir
    archive = model_dir / "model.tar.gz" if model_dir.is_dir() else model_dir
    if not archive.is_file():
        raise InformerError(f"{model_dir}: no model.tar.gz and no artifact (manifest.json); "
                            f"expected the training job's model output there")
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            for member in tar.getmembers():
                target = (work / member.name).resolve()
                if not (member.isfile() or member.isdir()) or not target.is_relative_to(
                        work.resolve()):
                    raise InformerError(f"{archive}: unsafe member {member.name!r}; expected "
                                        f"regular files inside the archive")
                members.append(member)
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(work, members=members, **safe)  # members checked above
    except (tarfile.TarError, OSError) as err:
        raise InformerError(f"{archive}: not a readable model.tar.gz ({err})") from err
    return work


def per_window(values: Any) -> dict[str, Any]:
    """Per-window MSE/MAE/RMSE/MAPE ``[windows]`` from errors and targets ``[B, L, C]``."""
    err, true = values
    mse = err.square().mean(dim=(1, 2))
    return {"mse": mse, "mae": err.abs().mean(dim=(1, 2)), "rmse": mse.sqrt(),
            "mape": (err / true).abs().mean(dim=(1, 2))}


def evaluate_windows(net: Any, schema: Any, dataset: Any, batch_size: int,
                     precision: str) -> dict[str, Any]:
    """``regression_metrics`` (``{name: {"value", "standard_deviation"}}``, scaled and
    ``*_original``), ``interval_metrics`` (quantile models) and ``skill`` in one pass; the
    values are :class:`informer.scores.Scorer`'s, as in ``informer-eval``."""
    import torch

    from informer.baselines import BASELINES, skill_by_step
    from informer.evaluation import iter_outputs
    from informer.nn.model import point_of
    from informer.scores import Scorer, targets, unscale

    scorer = Scorer(net.config, schema)
    sums = scorer.zeros()
    windows: dict[str, list] = {}
    for outputs, batch in iter_outputs(net, dataset, batch_size, precision):
        for name, value in scorer.batch(outputs, batch).items():
            sums[name] += value.cpu()
        pred = point_of(outputs, net.config)
        true = targets(batch, net.config.pred_len, net.config.c_out)
        for space, (p, t) in {"": (pred, true),
                              "_original": (unscale(pred, schema), unscale(true, schema))
                              }.items():
            for name, v in per_window(((p.double() - t.double()).cpu(),
                                       t.double().cpu())).items():
                windows.setdefault(name + space, []).append(v)
    values = scorer.metrics(sums)
    regression = {}
    for space in ("", "_original"):
        for name in REPORTED:
            key = name + space
            spread = torch.cat(windows[key]).std(correction=0).item()
            regression[key] = {"value": _finite(values[key]),
                               "standard_deviation": _finite(spread)}
    report: dict[str, Any] = {"regression_metrics": regression}
    if net.config.quantiles:
        report["interval_metrics"] = {k: {"value": _finite(v)} for k, v in values.items()
                                      if k.startswith(("coverage_", "wql", "crps"))}
    report["skill"] = skill_report(values, skill_by_step(sums["steps"]), BASELINES)
    return report


def skill_report(values: dict[str, float], by_step: dict[str, list[float]],
                 names: Sequence[str]) -> dict[str, Any]:
    """Skill ``1 - MSE / MSE_baseline`` per baseline, and ``value``: against the better
    (lower-MSE) baseline, the figure the pipeline's condition reads."""
    report: dict[str, Any] = {}
    for name in names:
        if f"skill_{name}" in values:
            report[name] = {"value": _finite(values[f"skill_{name}"]),
                            "baseline_mse": _finite(values[f"mse_{name}"]),
                            "by_step": [_finite(v) for v in by_step[f"skill_{name}"]]}
    if report:
        best = min(report, key=lambda n: report[n]["baseline_mse"] or math.inf)
        report["best_baseline"] = best
        report["value"] = report[best]["value"]
    return report


def write_transform_input(csv: Path, seq_len: int, pred_len: int, windows: int,
                          target_dir: Path) -> Path:
    """``target_dir/<csv name>``: the header and the latest ``seq_len + windows * pred_len``
    rows of ``csv``, byte for byte (one history: one file, one transform request)."""
    from informer.files import atomic_write_text

    header, *rows = csv.read_bytes().decode("utf-8").splitlines(keepends=True)
    rows = [r for r in rows if r.strip()]
    latest = rows[-(seq_len + windows * pred_len):]
    text = header + "".join(latest)
    return atomic_write_text(target_dir / csv.name, text if text.endswith("\n") else text + "\n")


def write_by_step(artifact: Path, csv: Path, output_dir: Path) -> Path:
    """``output_dir/backtest_by_step.csv``: the test split's errors per horizon step (scaled
    and original units) and the skill per step, :meth:`informer.forecast.Forecaster.backtest`'s
    ``by_step`` (the dashboard's error-by-horizon chart)."""
    from informer.data.csv import read_csv
    from informer.files import atomic_write_text
    from informer.forecast import Forecaster

    result = Forecaster.from_artifact(artifact).backtest(read_csv(csv))
    return atomic_write_text(output_dir / BY_STEP_FILE, result.by_step.to_csv(index=False))


def schema_report(schema: Any, windows: int) -> dict[str, Any]:
    """``schema``: what scoring the served forecasts needs (mlops/drift.py, no torch there): the
    predicted ``variables`` with their train-split ``mean``/``std``, ``seq_len``, ``pred_len``,
    ``freq``, ``season`` (rows, :func:`informer.baselines.season_length`) and
    ``transform_input_rows`` (``seq_len + windows * pred_len``)."""
    from informer.baselines import season_length

    index = [schema.columns.index(c) for c in schema.predicted]
    return {"variables": list(schema.predicted), "mean": [schema.mean[i] for i in index],
            "std": [schema.std[i] for i in index], "seq_len": schema.seq_len,
            "pred_len": schema.pred_len, "freq": schema.freq,
            "season": season_length(schema.freq),
            "transform_input_rows": schema.seq_len + windows * schema.pred_len}


def _int_option(options: dict[str, str], name: str, default: int) -> int:
    try:
        return int(options.get(name, default))
    except ValueError as err:
        raise InformerError(f"{name}: expected an integer, got {options[name]!r}") from err


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run(argv: Sequence[str]) -> dict[str, Any]:
    from informer.cli.evaluate import load_any
    from informer.data.series import SeriesData
    from informer.files import atomic_write_json

    options, pairs = parse_cli(argv, OPTIONS)
    model_dir = Path(options.get("model-dir") or processing_dir() / "model")
    data_dir = Path(options.get("data-dir") or processing_dir() / "test")
    output_dir = Path(options.get("output-dir") or processing_dir() / "evaluation")
    batch_dir = Path(options.get("batch-input-dir") or processing_dir() / "batch-input")
    windows = _int_option(options, "backtest-windows", BACKTEST_WINDOWS)
    if windows < 0:
        raise InformerError(f"backtest-windows: expected an integer >= 0, got {windows}")
    with tempfile.TemporaryDirectory(prefix="informer-model-") as work:
        artifact = extract_model(model_dir, Path(work))
        cfg = compose_config([f"model_path={artifact}", f"data_dir={data_dir}",
                              f"paths.output_dir={output_dir}", *to_overrides(pairs, "eval")],
                             "eval")
        loaded, data = load_any(artifact)
        file = cfg.get("file") or data.get("file")
        if not file:
            raise InformerError("file: the model records no data file; pass --file <name.csv>")
        csv = data_dir / file
        if not csv.is_file():
            found = sorted(p.name for p in data_dir.glob("*.csv")) if data_dir.is_dir() else []
            raise InformerError(f"file: {file!r} not found in {data_dir} (it holds {found}); "
                                f"expected the evaluation data there or --file <name.csv>")
        series = SeriesData.with_schema(
            csv, loaded.schema, split=data.get("split", "ratio"),
            train_ratio=data.get("train_ratio", 0.7), test_ratio=data.get("test_ratio", 0.2),
            check_freq=data.get("check_freq", True))
        dataset = series.dataset(cfg.split)
        metrics = evaluate_windows(loaded.net, loaded.schema, dataset, cfg.batch_size,
                                   cfg.precision)
        info = loaded.info or {}
        write_transform_input(csv, loaded.schema.seq_len, loaded.schema.pred_len, windows,
                              batch_dir)
        write_by_step(artifact, csv, output_dir)
    report = {**metrics, "split": cfg.split, "windows": len(dataset),
              "file": file, "library_version": info.get("library_version"),
              "schema": schema_report(loaded.schema, windows)}
    atomic_write_json(output_dir / "evaluation.json", report)
    lines = {**metrics["regression_metrics"], **metrics.get("interval_metrics", {})}
    if metrics["skill"].get("value") is not None:
        lines["skill"] = metrics["skill"]
    print(" ".join(f"{cfg.split}_{k}={v['value']:.6g};" for k, v in lines.items()
                   if v["value"] is not None), flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    processing_main(run, argv)


if __name__ == "__main__":
    main()
