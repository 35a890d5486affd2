"""SageMaker training entry point: ``python sagemaker_jobs/train.py --experiment etth1_M_24 ...``.

Hyperparameters (``--key value`` and ``SM_HPS``) become Hydra overrides (see
:mod:`sagemaker_jobs.hyperparameters`); the job then runs :func:`informer.cli.train.train`:

- data from the ``training`` channel (``--channel`` / ``INFORMER_SM_CHANNEL`` to rename it),
  never downloaded;
- ``metrics.json``, ``config.yaml``, plots, ``csv/`` and ``train.log`` in ``SM_OUTPUT_DATA_DIR``;
- the artifact plus ``code/`` (handlers, requirements, serving library) in ``SM_MODEL_DIR``;
- Lightning checkpoints in ``/opt/ml/checkpoints`` (``--checkpoint-dir``); a restarted (spot)
  job resumes from ``last.ckpt`` there (informer-train's ``resume``; the checkpoints carry the
  random states, so the result equals an uninterrupted run's);
- ``epoch=N train_loss=..;`` / ``val_loss=..;`` lines each epoch, ``test_mse=..;`` lines at
  test time (:data:`sagemaker_jobs.metrics.METRIC_DEFINITIONS`);
- several hosts or GPUs (``SM_HOSTS``/``SM_NUM_GPUS``, or torchrun's ``WORLD_SIZE``) set the
  trainer's ``num_nodes``/``devices``/``strategy``; only global rank 0 writes outputs;
- a bad hyperparameter or data file: ``error: ...`` on stderr, the same line in
  ``/opt/ml/output/failure``, exit code 2.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package, not its sibling files
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from informer.errors import InformerError  # noqa: E402
from sagemaker_jobs.container import (  # noqa: E402
    PATH_OPTIONS,
    ContainerPaths,
    cluster_overrides,
    detect_cluster,
    job_errors,
    rendezvous_env,
)
from sagemaker_jobs.hyperparameters import (  # noqa: E402
    compose_config,
    from_sm_hps,
    merge,
    parse_cli,
    to_overrides,
)

log = logging.getLogger("sagemaker_jobs.train")
LOGGERS = ("informer", "lightning.pytorch", "lightning.fabric", "sagemaker_jobs")
CALLBACKS = {"sagemaker_metrics": "sagemaker_jobs.callbacks.MetricLines"}


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def build_overrides(pairs: Sequence[tuple[str, str]], paths: ContainerPaths,
                    env: dict[str, str] | None = None) -> list[str]:
    """Adapter settings first, then the user's overrides (so theirs win)."""
    user = to_overrides(pairs)
    user_keys = {_key(o) for o in user}
    adapter = [f"paths.data_dir={paths.data_dir}", f"paths.output_dir={paths.output_data_dir}",
               f"checkpoint_dir={paths.checkpoint_dir}", "resume=true", "data.download=false",
               "trainer.enable_progress_bar=false"]
    adapter += [f"+callbacks.{name}._target_={target}" for name, target in CALLBACKS.items()]
    adapter += cluster_overrides(detect_cluster(env), user_keys)
    return [o for o in adapter if _key(o) not in user_keys] + user


def _log_to(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(min(logger.level or logging.INFO, logging.INFO))
    return handler


def _is_global_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def run(argv: Sequence[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Parse, compose, train, package. Returns the flat metrics."""
    env = dict(os.environ if env is None else env)
    options, cli_pairs = parse_cli(argv, PATH_OPTIONS)
    paths = ContainerPaths.resolve(options, env)
    pairs = merge(from_sm_hps(env.get("SM_HPS"), PATH_OPTIONS), cli_pairs)
    overrides = build_overrides(pairs, paths, env)
    cfg = compose_config(overrides)
    paths.check_data(env)
    os.environ.update(rendezvous_env(detect_cluster(env), env))

    from informer.cli.train import train
    from informer.files import atomic_write_json

    handler = _log_to(paths.output_data_dir / "train.log")
    last = paths.checkpoint_dir / "last.ckpt"
    if last.is_file() and cfg.get("resume", True) and not cfg.get("ckpt_path"):
        print(f"resuming from {last}", flush=True)
    try:
        log.info("overrides: %s", " ".join(overrides))
        metrics = train(cfg)
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        handler.close()
    if _is_global_zero():
        atomic_write_json(paths.output_data_dir / "overrides.json", overrides)
        artifact = paths.output_data_dir / "model"
        if artifact.is_dir():
            from sagemaker_jobs.package import package_model

            package_model(artifact, paths.model_dir)
            shutil.rmtree(artifact)  # the model leaves as model.tar.gz, not in output.tar.gz
    return metrics


def main(argv: Sequence[str] | None = None) -> None:
    from informer.cli.common import quiet_console

    quiet_console()  # Lightning's litlogger tip and the _pytree warning stay out of the job log
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        options, _ = parse_cli(argv, PATH_OPTIONS)
    except InformerError:  # reported by run() inside job_errors
        options = {}
    paths = ContainerPaths.resolve(options)
    with job_errors(paths.failure_file):
        metrics = run(argv)
    print(json.dumps({k: metrics[k] for k in sorted(metrics) if k.startswith("test/")}),
          flush=True)


if __name__ == "__main__":
    main()
