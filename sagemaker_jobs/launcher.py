"""``informer-sagemaker train``: start a SageMaker training job with SDK v3's ``ModelTrainer``.

``informer-sagemaker train experiment=etth1_M_24 trainer.max_epochs=3 instance_type=ml.g5.xlarge
spot=true data=s3://bucket/ett/ [--dry-run] [--wait]``

Launcher settings (:data:`SETTINGS`) configure the job; every other ``key=value`` is a Hydra
override, checked against the local config before anything is sent, and passed as a
hyperparameter in its shell-safe spelling (``trainer.max_epochs`` -> ``trainer__max_epochs``,
see :mod:`sagemaker_jobs.hyperparameters`). The job
runs ``sagemaker_jobs/train.py`` from a staged copy of this library (``informer``, ``conf``,
``sagemaker_jobs`` and a ``requirements.txt`` without torch, numpy and pandas, which the AWS
PyTorch image provides), with :data:`sagemaker_jobs.metrics.METRIC_DEFINITIONS` and
checkpoints synced to S3 so a spot restart resumes.

``--dry-run`` prints the CreateTrainingJob request and sends nothing: no upload, no bucket
creation, no job, no role validation. With ``bucket=`` and a role ARN it makes no AWS call
at all; without ``bucket=`` it reads the account id (STS) to name the default bucket, and a
role name is looked up (IAM GetRole).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from informer.errors import InformerError, first_line
from sagemaker_jobs.container import DEFAULT_CHANNEL
from sagemaker_jobs.hyperparameters import compose_config, shell_safe, to_overrides
from sagemaker_jobs.metrics import METRIC_DEFINITIONS
from sagemaker_jobs.source import stage_source

# PyTorch versions with both training and inference images (inference stops at 2.6).
FRAMEWORKS = {"2.6.0": "py312", "2.5.1": "py311"}
ENTRY_SCRIPT = "sagemaker_jobs/train.py"
MAX_HYPERPARAMETERS, MAX_VALUE_CHARS = 100, 2500


@dataclass
class Settings:
    """Launcher settings, given as ``key=value`` on the command line."""

    instance_type: str = "ml.g5.xlarge"
    instance_count: int = 1
    spot: bool = False
    max_run: int = 86400  # seconds
    max_wait: int | None = None  # seconds; spot only, default 2 x max_run
    volume_size: int = 30  # GB
    data: str | None = None  # S3 URI of the training channel
    channel: str = DEFAULT_CHANNEL
    role: str | None = None  # IAM role ARN; default: SAGEMAKER_ROLE_ARN, then the SDK's
    region: str | None = None
    bucket: str | None = None  # default: the SDK's sagemaker-<region>-<account>
    prefix: str = "informer"
    output_path: str | None = None
    checkpoint_s3_uri: str | None = None  # default: under the job in the bucket
    framework_version: str = "2.6.0"
    image_uri: str | None = None
    distributed: str = "auto"  # auto (torchrun when instance_count > 1) | torchrun | none
    base_job_name: str = "informer"
    hyperparameters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, tokens: Sequence[str]) -> Settings:
        """Launcher settings and Hydra overrides (validated) from ``key=value`` tokens."""
        names = {f.name: f for f in fields(cls) if f.name != "hyperparameters"}
        values: dict[str, Any] = {}
        pairs: list[tuple[str, str]] = []
        for token in tokens:
            key, sep, value = token.partition("=")
            if not sep or not key:
                raise InformerError(f"{token!r}: expected key=value (a launcher setting "
                                    f"{sorted(names)} or a config override)")
            if key in names:
                values[key] = _convert(key, value, names[key].type)
            else:
                pairs.append((key, value))
        compose_config(to_overrides(pairs))  # fail here, not after the instance started
        settings = cls(**values, hyperparameters=dict(shell_safe(k, v) for k, v in pairs))
        settings.check()
        return settings

    def check(self) -> None:
        if self.framework_version not in FRAMEWORKS:
            raise InformerError(f"framework_version: expected one of {sorted(FRAMEWORKS)} "
                                f"(PyTorch versions with training and inference images), got "
                                f"{self.framework_version!r}")
        if self.distributed not in ("auto", "torchrun", "none"):
            raise InformerError(f"distributed: expected auto, torchrun or none, got "
                                f"{self.distributed!r}")
        if self.instance_count < 1:
            raise InformerError(f"instance_count: expected >= 1, got {self.instance_count}")
        if self.max_wait is not None and self.max_wait < self.max_run:
            raise InformerError(f"max_wait: expected >= max_run ({self.max_run}), got "
                                f"{self.max_wait}")
        if len(self.hyperparameters) > MAX_HYPERPARAMETERS:
            raise InformerError(f"hyperparameters: {len(self.hyperparameters)} given; SageMaker "
                                f"accepts at most {MAX_HYPERPARAMETERS}")
        for key, value in self.hyperparameters.items():
            if len(value) > MAX_VALUE_CHARS:
                raise InformerError(f"{key}: value of {len(value)} characters; SageMaker "
                                    f"accepts at most {MAX_VALUE_CHARS}")
        for name in ("data", "output_path", "checkpoint_s3_uri"):
            value = getattr(self, name)
            if value is not None and not value.startswith("s3://"):
                raise InformerError(f"{name}: expected an s3:// URI, got {value!r}")


def _convert(key: str, value: str, kind: Any) -> Any:
    kind = str(kind)
    try:
        if "bool" in kind:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes")
        if "int" in kind:
            return None if value.lower() in ("none", "null") else int(value)
    except ValueError as err:
        expected = "true or false" if "bool" in kind else "an integer"
        raise InformerError(f"{key}: expected {expected}, got {value!r}") from err
    return None if value.lower() in ("none", "null") and "None" in kind else value


class DryRunViolation(RuntimeError):
    """An AWS call a dry run must not make (a bug in the launcher, not a user error)."""


def _dry_run_guard(model: Any, params: Any, **_: Any) -> Any:
    """botocore ``before-call`` hook of a dry run: reading the account id or a role name's ARN
    passes; the SDK's IAM policy simulation gets an empty answer; anything else is refused."""
    from botocore.awsrequest import AWSResponse

    if model.name in ("GetCallerIdentity", "GetRole"):  # read-only look-ups
        return None
    if model.name == "SimulatePrincipalPolicy":
        return AWSResponse("https://dry-run.invalid", 200, {}, None), {"EvaluationResults": []}
    raise DryRunViolation(f"dry run: {model.service_model.service_name}:{model.name} would be "
                          f"sent")


def _session(settings: Settings, dry_run: bool) -> Any:
    import boto3
    from sagemaker.core.helper.session_helper import Session

    region = settings.region or os.environ.get("AWS_DEFAULT_REGION") or \
        os.environ.get("AWS_REGION") or boto3.Session().region_name
    if not region:
        raise InformerError("region: not set; pass region=<aws region> or set "
                            "AWS_DEFAULT_REGION")
    boto_session = boto3.Session(region_name=region)
    if not dry_run:
        return Session(boto_session=boto_session, default_bucket=settings.bucket)
    boto_session.events.register("before-call", _dry_run_guard)

    class DryRunSession(Session):
        """Computes S3 locations without uploading or creating buckets."""

        def default_bucket(self) -> str:
            if not self._default_bucket:
                self._default_bucket = self._default_bucket_name_override or \
                    self.generate_default_sagemaker_bucket_name(self.boto_session)
            return self._default_bucket

        def upload_data(self, path: str, bucket: str | None = None, key_prefix: str = "data",
                        callback: Any = None, extra_args: Any = None) -> str:
            bucket, key_prefix = self.determine_bucket_and_prefix(
                bucket=bucket, key_prefix=key_prefix, sagemaker_session=self)
            suffix = "" if os.path.isdir(path) else f"/{os.path.basename(path)}"
            return f"s3://{bucket}/{key_prefix}{suffix}"

    return DryRunSession(boto_session=boto_session, default_bucket=settings.bucket)


def build_trainer(settings: Settings, source_dir: Path, dry_run: bool = False) -> Any:
    """The ``ModelTrainer`` for ``settings`` (nothing is sent yet)."""
    from sagemaker.core import image_uris
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        MetricDefinition,
        OutputDataConfig,
        SourceCode,
        StoppingCondition,
    )
    from sagemaker.train import ModelTrainer
    from sagemaker.train.distributed import Torchrun

    session = _session(settings, dry_run)
    region = session.boto_region_name
    image = settings.image_uri or image_uris.retrieve(
        "pytorch", region, version=settings.framework_version,
        py_version=FRAMEWORKS[settings.framework_version],
        instance_type=settings.instance_type, image_scope="training")
    bucket = settings.bucket or session.default_bucket()
    data = settings.data or f"s3://{bucket}/{settings.prefix}/data/"
    max_wait = (settings.max_wait or 2 * settings.max_run) if settings.spot else None
    torchrun = settings.distributed == "torchrun" or (
        settings.distributed == "auto" and settings.instance_count > 1)
    environment = {} if settings.channel == DEFAULT_CHANNEL else {
        "INFORMER_SM_CHANNEL": settings.channel}
    trainer = ModelTrainer(
        sagemaker_session=session, role=settings.role or os.environ.get("SAGEMAKER_ROLE_ARN"),
        base_job_name=settings.base_job_name, training_image=image,
        source_code=SourceCode(source_dir=str(source_dir), entry_script=ENTRY_SCRIPT,
                               requirements="requirements.txt"),
        distributed=Torchrun() if torchrun else None,
        compute=Compute(instance_type=settings.instance_type,
                        instance_count=settings.instance_count,
                        volume_size_in_gb=settings.volume_size,
                        enable_managed_spot_training=settings.spot or None),
        stopping_condition=StoppingCondition(max_runtime_in_seconds=settings.max_run,
                                             max_wait_time_in_seconds=max_wait),
        output_data_config=OutputDataConfig(
            s3_output_path=settings.output_path or f"s3://{bucket}/{settings.prefix}/output"),
        checkpoint_config=CheckpointConfig(s3_uri=settings.checkpoint_s3_uri,
                                           local_path="/opt/ml/checkpoints"),
        input_data_config=[InputData(channel_name=settings.channel, data_source=data)],
        hyperparameters=dict(settings.hyperparameters), environment=environment,
    )
    return trainer.with_metric_definitions(
        [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in METRIC_DEFINITIONS])


def request(trainer: Any) -> dict[str, Any]:
    """The CreateTrainingJob request (PascalCase, as sent), built by the SDK without sending.
    Uses the SDK's own request builder, the one pipelines use (pinned by ``sagemaker==3.27.*``).
    """
    return trainer._create_training_job_args(boto3=True)


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def train(tokens: Sequence[str], dry_run: bool = False, wait: bool = False) -> dict[str, Any]:
    settings = Settings.parse(tokens)
    with tempfile.TemporaryDirectory(prefix="informer-source-") as tmp:
        source = stage_source(Path(tmp), settings.framework_version)
        if dry_run:  # the SDK's client-side role check reads IAM; it changes no field
            with _environ(SAGEMAKER_VALIDATE_ROLE="false"):
                return request(build_trainer(settings, source, dry_run=True))
        trainer = build_trainer(settings, source)
        trainer.train(wait=wait, logs=wait)
        job = trainer._latest_training_job
        return {"TrainingJobName": getattr(job, "training_job_name", None),
                "TrainingJobArn": getattr(job, "training_job_arn", None)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="informer-sagemaker", description="Run informer jobs on Amazon SageMaker.")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("train", help="start a training job",
                                description=__doc__.split("\n\n")[1])
    start.add_argument("tokens", nargs="*", metavar="key=value",
                       help=f"launcher settings {[f.name for f in fields(Settings)][:-1]} "
                            f"or config overrides")
    start.add_argument("--dry-run", action="store_true", help="print the request, send nothing")
    start.add_argument("--wait", action="store_true", help="wait for the job and stream logs")
    args = parser.parse_args(argv)
    from botocore.exceptions import BotoCoreError, ClientError
    from sagemaker.core.helper.iam_role_resolver import RoleValidationError

    try:
        result = train(args.tokens, dry_run=args.dry_run, wait=args.wait)
    except RoleValidationError as err:
        print(f"error: role: {first_line(err)} Pass role=<IAM role ARN> or set SAGEMAKER_ROLE_ARN.",
              file=sys.stderr)
        sys.exit(2)
    except InformerError as err:
        print(f"error: {first_line(err)}", file=sys.stderr)
        sys.exit(2)
    except (BotoCoreError, ClientError) as err:
        print(f"error: AWS: {first_line(err)}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
