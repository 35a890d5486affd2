"""Thin adapters that run informer unchanged in Amazon SageMaker's containers.

- :mod:`sagemaker_jobs.train`: training entry point (hyperparameters -> Hydra overrides).
- :mod:`sagemaker_jobs.preprocess`, :mod:`sagemaker_jobs.evaluate`: processing scripts.
- :mod:`sagemaker_jobs.inference`: serving handlers (copied into ``model.tar.gz``).
- :mod:`sagemaker_jobs.serve`, :mod:`sagemaker_jobs.transform`: local HTTP server and Batch
  Transform over the same handlers.
- :mod:`sagemaker_jobs.launcher`: ``informer-sagemaker`` (SageMaker SDK v3, ``[aws]`` extra).
- :mod:`sagemaker_jobs.metrics`: ``METRIC_DEFINITIONS`` shared by the launcher and pipelines.

Nothing here imports ``mlops``; the SDK is imported only by the launcher.
"""

from sagemaker_jobs.metrics import METRIC_DEFINITIONS

__all__ = ["METRIC_DEFINITIONS"]
