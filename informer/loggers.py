"""A CSV logger whose ``metrics.csv`` survives a resumed run.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its folder already has files, so a run
restarted from ``last.ckpt`` kept only the epochs after the restart. :class:`ResumableCSVLogger`
keeps the earlier rows: on its first save it drops only the rows of the epochs the new run logs
again (those of the epoch that was cut short, and later ones; rows without an epoch, from the
steps the new run logs again), then appends as before. A fresh
run in the same folder starts at epoch 0 and so replaces the whole file, as Lightning does.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from informer.files import atomic_write_text


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


class _KeepingWriter(ExperimentWriter):
    """``ExperimentWriter`` that merges with an existing ``metrics.csv`` instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        self._merged = not os.path.isfile(self.metrics_file_path)

    def save(self) -> None:
        if self.metrics and not self._merged:
            self._merge_earlier_rows()
        super().save()

    def _merge_earlier_rows(self) -> None:
        """Keep the rows logged before this run's first epoch (rows without an epoch, such as
        the learning-rate monitor's: before its first step)."""
        self._merged = True
        with open(self.metrics_file_path, newline="") as handle:
            reader = csv.DictReader(handle)
            keys, rows = list(reader.fieldnames or []), list(reader)
        epochs = [float(m["epoch"]) for m in self.metrics if m.get("epoch") is not None]
        first_epoch = min(epochs) if epochs else None
        first_step = min(float(m["step"]) for m in self.metrics)

        def earlier(row: dict[str, str]) -> bool:
            epoch, step = _number(row.get("epoch")), _number(row.get("step"))
            if epoch is not None and first_epoch is not None:
                return epoch < first_epoch
            return step is not None and step < first_step

        self.metrics_keys = sorted(set(keys) | set(self.metrics_keys))
        atomic_write_text(self.metrics_file_path,
                          _csv_text(self.metrics_keys, [r for r in rows if earlier(r)]))


def _csv_text(keys: list[str], rows: list[dict[str, Any]]) -> str:
    import io

    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` (same arguments) whose ``metrics.csv`` keeps the epochs logged before a
    restart (see the module docstring)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment
