"""SageMaker Processing: evaluate ``model.tar.gz`` and write ``evaluation.json``.

``python sagemaker_jobs/evaluate.py [--split test] [--file ETTh1.csv] [--batch_size 256]``

Reads the model from ``/opt/ml/processing/model`` (``--model-dir``: ``model.tar.gz`` or an
extracted artifact) and the data from ``/opt/ml/processing/test`` (``--data-dir``; the file the
model was trained on unless ``--file``), with the split settings recorded in the artifact.
Writes ``/opt/ml/processing/evaluation/evaluation.json`` (``--output-dir``) in SageMaker's
model-quality form::

    {"regression_metrics": {"mse": {"value": .., "standard_deviation": ..}, "mae": {..},
                            "rmse": {..}, "mape": {..}, "mse_original": {..}, ...},
     "split": "test", "windows": 2857, ...}

``value`` is the metric over every window of the split (as ``informer-eval``, scaled as in the
paper; ``*_original`` in original units); ``standard_deviation`` is the population standard
deviation of the same metric computed per window. Non-finite figures (MAPE with zero targets)
are written as ``null``.
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
from sagemaker_jobs.container import processing_main  # noqa: E402
from sagemaker_jobs.hyperparameters import compose_config, parse_cli, to_overrides  # noqa: E402

PROCESSING = Path("/opt/ml/processing")
MESSAGE_FILE = Path("/opt/ml/output/message")
OPTIONS = ("model-dir", "data-dir", "output-dir", "message-file")
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
                     precision: str) -> dict[str, dict[str, float | None]]:
    """``{name: {"value", "standard_deviation"}}``, scaled and ``*_original``, in one pass.
    Values use the same sums as :func:`informer.evaluation.evaluate`."""
    import torch
    from torch.utils.data import DataLoader

    from informer.data.windows import collate_batch
    from informer.evaluation import targets, unscale
    from informer.metrics import N_SUMS, error_sums, metrics_from_sums
    from informer.precision import uses_bf16

    device = next(net.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_batch)
    sums = {"": torch.zeros(N_SUMS, dtype=torch.float64),
            "_original": torch.zeros(N_SUMS, dtype=torch.float64)}
    windows: dict[str, list] = {}
    net.eval()
    with torch.no_grad():
        for batch in loader:
            batch = {k: v.to(device) for k, v in batch.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16,
                                enabled=uses_bf16(precision, device.type)):
                pred = net.predict(batch["x"], batch["x_mark"], batch["y_mark"]).float()
            true = targets(batch, net.config.pred_len, net.config.c_out)
            for space, (p, t) in {"": (pred, true),
                                  "_original": (unscale(pred, schema), unscale(true, schema))
                                  }.items():
                sums[space] += error_sums(p, t).cpu()
                for name, v in per_window(((p.double() - t.double()).cpu(),
                                           t.double().cpu())).items():
                    windows.setdefault(name + space, []).append(v)
    result = {}
    for space, total in sums.items():
        values = metrics_from_sums(total, space)
        for name in REPORTED:
            key = name + space
            spread = torch.cat(windows[key]).std(correction=0).item()
            result[key] = {"value": _finite(values[key]), "standard_deviation": _finite(spread)}
    return result


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def run(argv: Sequence[str]) -> dict[str, Any]:
    from informer.cli.evaluate import load_any
    from informer.data.series import SeriesData
    from informer.files import atomic_write_json

    options, pairs = parse_cli(argv, OPTIONS)
    model_dir = Path(options.get("model-dir") or PROCESSING / "model")
    data_dir = Path(options.get("data-dir") or PROCESSING / "test")
    output_dir = Path(options.get("output-dir") or PROCESSING / "evaluation")
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
    report = {"regression_metrics": metrics, "split": cfg.split, "windows": len(dataset),
              "file": file, "library_version": info.get("library_version")}
    atomic_write_json(output_dir / "evaluation.json", report)
    print(" ".join(f"{cfg.split}_{k}={v['value']:.6g};" for k, v in metrics.items()
                   if v["value"] is not None), flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    processing_main(run, MESSAGE_FILE, argv)


if __name__ == "__main__":
    main()
