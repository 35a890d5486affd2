"""The local state directory: registry, object store, logs, forecasts, all under one root."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_STATE_DIR = "INFORMER_MLOPS_HOME"
DEFAULT_DIR = ".informer-mlops"


@dataclass(frozen=True)
class StateDir:
    """``root/registry.db``, ``root/s3/<bucket>/...`` (laid out like the AWS prefixes),
    ``root/logs/<execution>/<step>.log``, ``root/logs/lambda.log``,
    ``root/models/<group>/v<version>/`` (the artifact), ``root/forecasts/<group>/v<version>/``."""

    root: Path
    bucket: str = "informer-mlops"

    @classmethod
    def resolve(cls, path: str | Path | None = None) -> StateDir:
        """Option, else ``$INFORMER_MLOPS_HOME``, else ``./.informer-mlops``."""
        chosen = path or os.environ.get(ENV_STATE_DIR) or Path.cwd() / DEFAULT_DIR
        root = Path(chosen).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return cls(root)

    @property
    def registry(self) -> Path:
        return self.root / "registry.db"

    @property
    def object_store(self) -> Path:
        return self.root / "s3"

    def s3_path(self, uri: str) -> Path:
        """Local path of ``s3://bucket/key`` inside the object store."""
        if not uri.startswith("s3://"):
            raise ValueError(f"expected an s3:// URI, got {uri!r}")
        return self.object_store / uri[len("s3://"):]

    def s3_uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lambda_log(self) -> Path:
        """The approval Lambda's JSON log lines (CloudWatch's role)."""
        return self.logs / "lambda.log"

    def forecasts(self, group: str, version: int) -> Path:
        return self.root / "forecasts" / group / f"v{version}"

    def model(self, group: str, version: int) -> Path:
        """The registered version's model artifact, unpacked (``informer-eval model_path=``)."""
        return self.root / "models" / group / f"v{version}"
