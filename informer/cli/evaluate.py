"""``informer-eval``: metrics of a model artifact (or Lightning checkpoint) on one data split,
written to ``metrics.json`` in the run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from informer.artifact import LoadedModel, load_model, upgrade_state_dict
from informer.cli.common import alias_argv, check_overrides, config_dir, user_errors
from informer.data.series import SeriesData
from informer.data.sources import resolve_data_file
from informer.errors import InformerError
from informer.evaluation import evaluate
from informer.files import atomic_write_json, check_writable


def load_checkpoint(path: Path) -> tuple[LoadedModel, dict[str, Any]]:
    """A Lightning checkpoint written by ``informer-train`` (weights-only load)."""
    import torch

    from informer.module import InformerModule

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        module = InformerModule(**ckpt["hyper_parameters"])
        module.load_state_dict(upgrade_state_dict(ckpt["state_dict"]))
    except (KeyError, RuntimeError, OSError) as err:
        raise InformerError(f"{path}: not an informer-train checkpoint ({err})") from err
    if module.schema is None:
        raise InformerError(f"{path}: the checkpoint holds no data schema")
    loaded = LoadedModel(net=module.net.eval(), schema=module.schema)
    return loaded, dict(ckpt.get("datamodule_hyper_parameters", {}))


def load_any(path: str | Path) -> tuple[LoadedModel, dict[str, Any]]:
    """``(model, data settings it was trained with)`` from an artifact dir or a ``.ckpt``."""
    path = Path(path)
    if path.suffix == ".ckpt":
        return load_checkpoint(path)
    loaded = load_model(path)
    return loaded, dict((loaded.info.get("run") or {}).get("data") or {})


def series_of(loaded: LoadedModel, data: dict[str, Any], data_dir: str,
              file: str | None = None) -> SeriesData:
    """The data a model was trained on (``file``, or the one it records), with its schema and
    the splits it was trained with."""
    file = file or data.get("file")
    if not file:
        raise InformerError("file: the model records no data file; pass file=<name.csv>")
    csv = resolve_data_file(data_dir, file, data.get("download", True))
    return SeriesData.with_schema(
        csv, loaded.schema, split=data.get("split", "ratio"),
        train_ratio=data.get("train_ratio", 0.7), test_ratio=data.get("test_ratio", 0.2),
        check_freq=data.get("check_freq", True))


def run_eval(cfg: DictConfig) -> dict[str, float]:
    target = check_writable(Path(cfg.paths.output_dir) / "metrics.json", "paths.output_dir")
    loaded, data = load_any(cfg.model_path)
    series = series_of(loaded, data, cfg.data_dir, cfg.get("file"))
    values = evaluate(loaded.net, loaded.schema, series.dataset(cfg.split), cfg.batch_size,
                      cfg.precision)
    metrics = {f"{cfg.split}/{k}": v for k, v in values.items()}
    metrics[f"{cfg.split}/windows"] = float(len(series.dataset(cfg.split)))
    atomic_write_json(target, metrics)
    for key in ("mse", "mae", "mse_original", "mae_original"):
        print(f"{cfg.split}/{key}={values[key]:.6f}")
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        run_eval(cfg)


def main() -> None:
    """Console entry; ``model=<dir>`` is accepted for ``model_path=<dir>``."""
    alias_argv({"model": "model_path"})
    check_overrides("eval")
    _main()


if __name__ == "__main__":
    main()
