"""``informer-forecast``: forecast past the data, or backtest, from a model artifact."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

from informer.cli.common import alias_argv, check_overrides, config_dir, user_errors
from informer.data.csv import read_csv
from informer.errors import InformerError
from informer.files import atomic_write_json, atomic_write_text, check_writable
from informer.forecast import Forecaster

MODES = ("forecast", "backtest")


def write_csv(frame, path: Path) -> None:
    """ISO 8601 dates, full float precision, atomic."""
    atomic_write_text(path, frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S"))


def run_forecast(cfg: DictConfig) -> Path:
    if cfg.mode not in MODES:
        raise InformerError(f"mode: expected one of {list(MODES)}, got {cfg.mode!r}")
    output = check_writable(cfg.output, "output")
    if cfg.plot and cfg.plot_dir:
        check_writable(Path(cfg.plot_dir) / f"{output.stem}.png", "plot_dir")
    forecaster = Forecaster.from_artifact(cfg.model_path, batch_size=cfg.batch_size,
                                          precision=cfg.precision)
    history = read_csv(cfg.input)
    plot_dir = Path(cfg.plot_dir) if cfg.plot_dir else output.parent
    if cfg.mode == "forecast":
        forecaster.validate(history, str(cfg.input))
        result = forecaster.forecast_many([history], where=str(cfg.input))[0]
        write_csv(result, output)
        if cfg.plot:
            from informer.plots import plot_forecast

            frame = history.copy()
            plot_forecast(frame, result, plot_dir / f"{output.stem}.png")
        print(f"wrote {len(result)} forecast rows to {output}")
        return output
    result = forecaster.backtest(history, cfg.start, cfg.end, cfg.stride)
    write_csv(result.frame, output)
    write_csv(result.by_step, output.with_name(f"{output.stem}_by_step.csv"))
    atomic_write_json(output.with_name(f"{output.stem}_metrics.json"), result.metrics)
    if cfg.plot:
        from informer.plots import plot_backtest

        plot_backtest(result.frame, result.by_step, plot_dir, forecaster.schema.target,
                      cfg.plot_origins, prefix=output.stem)
    print(json.dumps(result.metrics))
    return output


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="forecast")
def _main(cfg: DictConfig) -> None:
    with user_errors():
        run_forecast(cfg)


def main() -> None:
    """Console entry; ``model=<dir>`` is accepted for ``model_path=<dir>``."""
    alias_argv({"model": "model_path"})
    check_overrides("forecast")
    _main()


if __name__ == "__main__":
    main()
