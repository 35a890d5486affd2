"""How the commands get a pipeline: :func:`build` (the ``Pipeline`` for a ``conf/pipeline``
config) and :func:`offline_aws` (fake credentials and moto's in-process AWS, for a definition
built without an account: ``pipeline definition --offline`` and the local backend)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from informer.errors import InformerError
from mlops.config import environment

OFFLINE_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_SECURITY_TOKEN": "testing", "AWS_SESSION_TOKEN": "testing",
               "SAGEMAKER_VALIDATE_ROLE": "false"}
OFFLINE_ROLE = "arn:aws:iam::123456789012:role/informer-sagemaker"
TELEMETRY_OFF = "SchemaVersion: '1.0'\nSageMaker: {PythonSDK: {Modules: {TelemetryOptOut: true}}}\n"


@contextmanager
def offline_aws(region: str) -> Iterator[None]:
    """Fake credentials, role validation and telemetry off, and moto's in-process AWS."""
    try:
        from moto import mock_aws
    except ImportError as err:
        raise InformerError("--offline needs moto (pip install 'informer-mlops[dev]')") from err
    with tempfile.TemporaryDirectory(prefix="informer-sm-config-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(TELEMETRY_OFF)
        with environment({**OFFLINE_ENV, "AWS_DEFAULT_REGION": region, "AWS_REGION": region,
                          "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config)},
                         remove=("AWS_PROFILE", "AWS_ENDPOINT_URL")), mock_aws():
            yield


def create_bucket(bucket: str, region: str) -> None:
    """Create ``bucket`` (in moto: the deployed bucket exists in the account)."""
    import boto3

    where = {} if region == "us-east-1" else {
        "CreateBucketConfiguration": {"LocationConstraint": region}}
    boto3.client("s3", region_name=region).create_bucket(Bucket=bucket, **where)


def build(cfg: dict[str, Any], role: str | None = None) -> Any:
    """The pipeline for ``cfg`` (the SDK's default bucket when ``bucket`` is null)."""
    import boto3

    from mlops.pipeline import get_pipeline

    bucket = cfg.get("bucket")
    if not bucket:
        from sagemaker.core.helper.session_helper import Session

        bucket = Session(boto3.Session(region_name=cfg["region"])).default_bucket()
    return get_pipeline(cfg["region"], role or cfg.get("role_arn") or OFFLINE_ROLE, bucket,
                        cfg["pipeline_name"], cfg["model_package_group"], cfg["base_job_prefix"],
                        settings=cfg)
