"""``informer-train``: seed, build data + model from the config, fit, test the best checkpoint,
export the model artifact and write ``metrics.json`` in the run directory."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, ListConfig, OmegaConf

from informer.artifact import save_artifact
from informer.checkpointing import AtomicCheckpointIO
from informer.cli.common import check_overrides, config_dir, user_errors
from informer.errors import InformerError
from informer.files import atomic_write_json, atomic_write_text
from informer.precision import resolve_precision, trainer_device_type
from informer.upgrade import upgrade_argv

log = logging.getLogger(__name__)


def _instantiate_all(group: DictConfig | ListConfig | None) -> list[Any]:
    """The objects of a config group or list (entries without ``_target_`` are skipped)."""
    items = group.values() if isinstance(group, DictConfig) else (group or [])
    return [instantiate(c) for c in items if c and "_target_" in c]


def plot_test_split(artifact: Path, csv: Path, out_dir: Path, max_origins: int = 64) -> None:
    """Backtest figures of the exported model on (a spread of) the test split's windows."""
    from informer.data.csv import read_csv
    from informer.forecast import Forecaster
    from informer.plots import plot_backtest

    forecaster = Forecaster.from_artifact(artifact)
    history = read_csv(csv)
    first, last = forecaster.default_origins(len(history))
    stride = max(1, (last - first) // max_origins + 1)
    dates = forecaster.validate(history)[0]
    seq = forecaster.schema.seq_len
    result = forecaster.backtest(history, dates[first + seq - 1], dates[last + seq - 1], stride)
    plot_backtest(result.frame, result.by_step, out_dir, forecaster.schema.target,
                  prefix="test_split")


def resume_from(cfg: DictConfig, output_dir: Path) -> str | None:
    """``ckpt_path`` if set; else, with ``resume``, the run directory's ``last.ckpt``."""
    if cfg.get("ckpt_path"):
        return str(cfg.ckpt_path)
    last = Path(cfg.get("checkpoint_dir") or output_dir / "checkpoints") / "last.ckpt"
    if cfg.get("resume", True) and last.is_file():
        log.info("resuming from %s", last)
        return str(last)
    return None


def until_sigterm(stage: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a Trainer stage; a SIGTERM (``kill``, a stopped or interrupted SageMaker job) ends the
    process with status 143 and one ``error:`` line (Lightning's own stop exits with 0, which
    would pass an unfinished run for a finished one). The last epoch checkpoint stays, and the
    same command resumes from it."""
    try:
        return stage(*args, **kwargs)
    except SIGTERMException:
        print(f"error: {stage.__name__} stopped by SIGTERM before it finished; run the same "
              "command again to resume from the last epoch checkpoint", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)


def trainer_contract(trainer: DictConfig) -> dict[str, Any]:
    """Trainer flags this code depends on, set whatever the preset or overrides say.

    - ``use_distributed_sampler=False``: under torch.distributed the DataModule gives each
      process its own share of the windows (validation and test windows unrepeated, so every
      window counts exactly once); Lightning's sampler on top would shard them a second time and
      each process would see 1/world_size of its share. An explicit ``true`` is refused.
    - ``plugins``: :class:`AtomicCheckpointIO` (atomic checkpoint writes, weights-only loads).
    """
    if trainer.get("use_distributed_sampler") is True:
        raise InformerError(
            "trainer.use_distributed_sampler: expected false; the data module shards windows "
            "across processes itself (each validation/test window counted once), and "
            "Lightning's sampler would shard them again")
    from lightning.fabric.plugins import CheckpointIO

    plugins = _instantiate_all(trainer.get("plugins"))
    if any(isinstance(p, CheckpointIO) for p in plugins):
        raise InformerError("trainer.plugins: expected no CheckpointIO plugin; checkpoints are "
                            "written by informer's AtomicCheckpointIO (atomic, weights-only)")
    return {"use_distributed_sampler": False, "plugins": [*plugins, AtomicCheckpointIO()]}


def train(cfg: DictConfig) -> dict[str, float]:
    """Run one training job; returns the flat metrics written to ``metrics.json``."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    output_dir = Path(cfg.paths.output_dir)

    datamodule = instantiate(cfg.data, _convert_="object")
    datamodule.prepare_data()
    datamodule.setup("fit")
    schema = datamodule.schema
    model = instantiate(cfg.model, net={"enc_in": schema.enc_in, "dec_in": schema.enc_in,
                                        "c_out": schema.c_out}, schema=schema.to_dict())

    # "auto": bf16 autocast where the hardware runs it fast, else fp32 (informer.precision)
    cfg.trainer.precision = resolve_precision(cfg.trainer.get("precision", "auto"),
                                              trainer_device_type(cfg.trainer.get("accelerator")))
    loggers = _instantiate_all(cfg.get("logger"))
    callbacks = [c for c in _instantiate_all(cfg.get("callbacks"))  # lr needs a logger
                 if loggers or not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     **trainer_contract(cfg.trainer))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if trainer.is_global_zero:
        atomic_write_text(output_dir / "config.yaml", OmegaConf.to_yaml(resolved))

    until_sigterm(trainer.fit, model, datamodule=datamodule,
                  ckpt_path=resume_from(cfg, output_dir))
    fit_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    # the monitored checkpoint's best (last_checkpoint, unmonitored, holds the latest epoch)
    best = next((c.best_model_path for c in trainer.checkpoint_callbacks if c.monitor), "")
    until_sigterm(trainer.test, model, datamodule=datamodule, ckpt_path=best or None,
                  verbose=False)
    metrics = fit_metrics | {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics |= model.results
    metrics["epochs"] = float(trainer.current_epoch)

    if trainer.is_global_zero:
        if cfg.get("export_artifact", True):
            save_artifact(output_dir / "model", model.net, schema, run_config=resolved)
            if cfg.get("plot", True):
                plot_test_split(output_dir / "model", datamodule.path, output_dir / "plots")
        atomic_write_json(output_dir / "metrics.json", metrics)
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def _main(cfg: DictConfig) -> float | None:
    with user_errors():
        metrics = train(cfg)
    return metrics.get(cfg.get("optimized_metric") or "")


def main() -> None:
    """Console entry: 0.1 spellings are rewritten and overrides checked before Hydra starts."""
    upgrade_argv()
    check_overrides("train")
    _main()


if __name__ == "__main__":
    main()
