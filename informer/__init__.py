"""informer-mlops: the Informer model for long-sequence time-series forecasting.

The network (:mod:`informer.nn`), the artifact format and the forecasting path import only
torch, numpy and pandas, so they run inside a SageMaker inference container.
"""

from informer.config import InformerConfig
from informer.errors import InformerError

__version__ = "0.1.0"

__all__ = ["InformerConfig", "InformerError", "__version__", "load_model"]


def __getattr__(name: str):
    if name == "load_model":
        from informer.artifact import load_model

        return load_model
    raise AttributeError(name)
