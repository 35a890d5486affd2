"""Lightning callbacks the training entry point adds through the config (``+callbacks.*``)."""

from __future__ import annotations

import lightning as L

from sagemaker_jobs.metrics import SOURCES, metric_line


class MetricLines(L.Callback):
    """Prints ``epoch=N val_loss=..;`` / ``train_loss=..;`` each epoch and the test metrics at
    test time, on global rank 0, for SageMaker's metric definitions."""

    def _print(self, trainer: L.Trainer, names: tuple[str, ...], prefix: str = "") -> None:
        metrics = trainer.callback_metrics
        values = {n: float(metrics[SOURCES[n]]) for n in names if SOURCES[n] in metrics}
        if values and trainer.is_global_zero:
            print(metric_line(values, prefix), flush=True)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._print(trainer, ("val_loss",), f"epoch={trainer.current_epoch + 1} ")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, ("train_loss",), f"epoch={trainer.current_epoch + 1} ")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, ("test_mse", "test_mae", "test_rmse", "test_mse_original",
                              "test_mae_original"))
