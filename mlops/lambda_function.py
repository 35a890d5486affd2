"""Approval Lambda: an approved model package version -> SageMaker model -> Batch Transform job.

Standard library + boto3 only: ``mlops/infra/template.yaml`` inlines this file (``index.py``,
handler ``index.lambda_handler``); as a zip the handler is ``lambda_function.lambda_handler``.
Input: the EventBridge event "SageMaker Model Package State Change". Only
``ModelApprovalStatus == "Approved"`` acts; ``PendingManualApproval`` and ``Rejected`` return
``{"status": "ignored", "reason": ...}`` with no AWS call; a malformed event (a missing field,
an unknown status) raises :class:`MalformedEvent` naming the field, also with no AWS call.

The input of the transform is the version's own: the S3 prefix that the pipeline's evaluation
step wrote it to, recorded in the package's ``CustomerMetadataProperties.TransformInput``
(read with DescribeModelPackage). A package without it uses ``TRANSFORM_INPUT_PREFIX``; with
neither, the result is ``{"status": "failed", ...}`` and nothing is created.

The job's ``Environment`` asks the serving handlers for their report (``INFORMER_OUTPUT=report``,
``INFORMER_MODEL_VERSION=v<version>``): per input history, a backtest over its latest rows with
the actual values, then the forecast, each row naming the version: the table QuickSight reads.

Names come from the group and version (``<group>-v<version>``), so a repeated delivery finds the
model and the job already there and starts nothing. A job that ended ``Failed`` or ``Stopped``
is retried: SageMaker job names are unique for ever, so the retry is a new job,
``<group>-v<version>-r2``, ``-r3``, ... (up to :data:`MAX_ATTEMPTS`), writing to the same
output prefix. Every step is one JSON log line.

Environment (defaults in brackets):

==============================  ===============================================================
``SAGEMAKER_ROLE_ARN``          execution role of the model (required)
``BUCKET``                      bucket of the transform input and output (required)
``MODEL_PACKAGE_GROUP_NAME``    act on this group only [any group]
``TRANSFORM_INPUT_PREFIX``      input prefix in ``BUCKET`` for packages naming none [none]
``FORECAST_PREFIX``             output root: ``<root>/<group>/v<version>/`` [``forecasts``]
``CONTENT_TYPE``                content type of the input files [``text/csv``]
``ACCEPT``                      format of the forecasts [``text/csv``]
``SPLIT_TYPE``                  None | Line | RecordIO | TFRecord [``None``: one file, one history]
``BATCH_STRATEGY``              SingleRecord | MultiRecord [``SingleRecord``]
``MAX_PAYLOAD_MB``              MaxPayloadInMB, 0-100 [``6``]
``ASSEMBLE_WITH``               None | Line [``None``]
``MAX_CONCURRENT_TRANSFORMS``   0 lets SageMaker choose [``0``]
``TRANSFORM_INSTANCE_TYPE``     [``ml.m5.xlarge``]
``TRANSFORM_INSTANCE_COUNT``    [``1``]
==============================  ===============================================================

For JSON Lines input (one history per line) set ``CONTENT_TYPE=application/jsonlines``,
``SPLIT_TYPE=Line``, ``BATCH_STRATEGY=MultiRecord``, ``ASSEMBLE_WITH=Line``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DETAIL_TYPE = "SageMaker Model Package State Change"
SOURCE = "aws.sagemaker"
APPROVED = "Approved"
STATUSES = ("Approved", "PendingManualApproval", "Rejected")  # SageMaker's ModelApprovalStatus
NAME_LIMIT = 63  # SageMaker model and job names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
RETRYABLE = ("Failed", "Stopped")  # a job in these states is started again under a new name
MAX_ATTEMPTS = 10
# the model package's customer metadata key naming its Batch Transform input (mlops/pipeline.py)
TRANSFORM_INPUT_PROPERTY = "TransformInput"
# the serving handlers' report output (sagemaker_jobs/inference.py): a backtest over the input's
# latest rows with the actual values, then the forecast, each row naming the model version
OUTPUT_ENV, VERSION_ENV, REPORT = "INFORMER_OUTPUT", "INFORMER_MODEL_VERSION", "report"


class MalformedEvent(ValueError):
    """The input is not a model package state change event this function can read."""


class RetriesExhausted(RuntimeError):
    """Every transform job attempt of a package ended Failed or Stopped."""


class NoTransformInput(ValueError):
    """The approved version names no usable transform input."""


class ConfigError(ValueError):
    """An environment variable is missing or invalid."""


def _boto3_client() -> Any:
    import boto3

    return boto3.client("sagemaker")


# Replaced by a local runner (or tests) that brings its own client with create_model,
# create_transform_job, describe_model and describe_transform_job.
CLIENT_FACTORY: Callable[[], Any] = _boto3_client


def log(message: str, level: str = "INFO", **fields: Any) -> None:
    """One JSON object per line on stdout (CloudWatch Logs keeps each as one event)."""
    record = {"level": level, "logger": "informer.approval", "message": message, **fields}
    sys.stdout.write(json.dumps(record, default=str, sort_keys=True) + "\n")
    sys.stdout.flush()


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise ConfigError(f"{name}: expected one of {list(allowed)}, got {value!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name) or str(default)
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{name}: expected an integer in [{low}, {high}], got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """The function's configuration, read from the environment."""

    role_arn: str
    bucket: str
    group: str | None = None
    input_prefix: str | None = None
    forecast_prefix: str = "forecasts"
    content_type: str = "text/csv"
    accept: str = "text/csv"
    split_type: str = "None"
    batch_strategy: str = "SingleRecord"
    max_payload_mb: int = 6
    assemble_with: str = "None"
    max_concurrent: int = 0
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        missing = [n for n in ("SAGEMAKER_ROLE_ARN", "BUCKET") if not env.get(n)]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: required environment variable not set")
        d = cls.__dataclass_fields__
        return cls(
            role_arn=env["SAGEMAKER_ROLE_ARN"],
            bucket=env["BUCKET"].removeprefix("s3://").strip("/"),
            group=env.get("MODEL_PACKAGE_GROUP_NAME") or None,
            input_prefix=env.get("TRANSFORM_INPUT_PREFIX") or None,
            forecast_prefix=(env.get("FORECAST_PREFIX") or d["forecast_prefix"].default),
            content_type=env.get("CONTENT_TYPE") or d["content_type"].default,
            accept=env.get("ACCEPT") or d["accept"].default,
            split_type=_choice(env, "SPLIT_TYPE", "None", ("None", "Line", "RecordIO",
                                                           "TFRecord")),
            batch_strategy=_choice(env, "BATCH_STRATEGY", "SingleRecord",
                                   ("SingleRecord", "MultiRecord")),
            max_payload_mb=_int(env, "MAX_PAYLOAD_MB", 6, 0, 100),
            assemble_with=_choice(env, "ASSEMBLE_WITH", "None", ("None", "Line")),
            max_concurrent=_int(env, "MAX_CONCURRENT_TRANSFORMS", 0, 0, 1000),
            instance_type=env.get("TRANSFORM_INSTANCE_TYPE") or d["instance_type"].default,
            instance_count=_int(env, "TRANSFORM_INSTANCE_COUNT", 1, 1, 100),
        )

    def input_uri(self) -> str | None:
        if not self.input_prefix:
            return None
        return f"s3://{self.bucket}/{self.input_prefix.strip('/')}/"

    def output_uri(self, group: str, version: int) -> str:
        root = self.forecast_prefix.strip("/")
        return f"s3://{self.bucket}/{root + '/' if root else ''}{group}/v{version}/"


@dataclass(frozen=True)
class PackageEvent:
    """The fields of the event this function uses."""

    group: str
    version: int
    arn: str
    status: str


def parse_event(event: Any) -> PackageEvent:
    """The package fields of ``event``; :class:`MalformedEvent` naming what is wrong."""
    if not isinstance(event, Mapping):
        raise MalformedEvent(f"event: expected a JSON object, got {type(event).__name__}")
    if event.get("source") != SOURCE or event.get("detail-type") != DETAIL_TYPE:
        raise MalformedEvent(f"event: expected source {SOURCE!r} and detail-type {DETAIL_TYPE!r}"
                             f", got {event.get('source')!r} / {event.get('detail-type')!r}")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEvent("event.detail: expected an object with the model package fields")
    names = ("ModelPackageGroupName", "ModelPackageVersion", "ModelPackageArn",
             "ModelApprovalStatus")
    missing = [n for n in names if detail.get(n) in (None, "")]
    if missing:
        raise MalformedEvent(f"event.detail: missing {', '.join(missing)}")
    version = detail["ModelPackageVersion"]
    if isinstance(version, bool) or not str(version).isdigit() or int(version) < 1:
        raise MalformedEvent(f"event.detail.ModelPackageVersion: expected a positive integer, "
                             f"got {version!r}")
    arn = detail["ModelPackageArn"]
    if not isinstance(arn, str) or not arn.startswith("arn:") or ":model-package/" not in arn:
        raise MalformedEvent(f"event.detail.ModelPackageArn: expected a model package ARN, "
                             f"got {arn!r}")
    group = detail["ModelPackageGroupName"]
    if not isinstance(group, str):
        raise MalformedEvent(f"event.detail.ModelPackageGroupName: expected a string, "
                             f"got {group!r}")
    status = detail["ModelApprovalStatus"]
    if status not in STATUSES:
        raise MalformedEvent(f"event.detail.ModelApprovalStatus: expected one of "
                             f"{list(STATUSES)}, got {status!r}")
    return PackageEvent(group, int(version), arn, status)


def resource_name(group: str, version: int, attempt: int = 1) -> str:
    """``<group>-v<version>`` (``-r<attempt>`` from the second attempt), valid as a model and
    job name; a long group is cut and given a hash so different groups never share a name."""
    suffix = f"-v{version}" + (f"-r{attempt}" if attempt > 1 else "")
    base = re.sub(r"[^A-Za-z0-9-]", "-", group).strip("-") or "model"
    if len(base) + len(suffix) > NAME_LIMIT or base != group:
        digest = hashlib.sha256(group.encode()).hexdigest()[:8]
        keep = NAME_LIMIT - len(suffix) - len(digest) - 1
        base = f"{base[:keep].rstrip('-')}-{digest}"
    return base + suffix


def transform_input(sm: Any, settings: Settings, package: PackageEvent) -> str:
    """The S3 prefix the version's transform reads: its package's ``TransformInput``, else
    ``TRANSFORM_INPUT_PREFIX`` in ``BUCKET``; :class:`NoTransformInput` with neither."""
    described = sm.describe_model_package(ModelPackageName=package.arn)
    uri = (described.get("CustomerMetadataProperties") or {}).get(TRANSFORM_INPUT_PROPERTY)
    where = f"CustomerMetadataProperties.{TRANSFORM_INPUT_PROPERTY} of {package.arn}"
    if not uri:
        uri, where = settings.input_uri(), "TRANSFORM_INPUT_PREFIX"
    if not uri:
        raise NoTransformInput(f"{where}: not set; expected the S3 prefix of the version's "
                               f"transform input (the pipeline's EvaluateModel writes it)")
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise NoTransformInput(f"{where}: expected an s3:// prefix, got {uri!r}")
    return uri if uri.endswith("/") else uri + "/"


def transform_request(settings: Settings, package: PackageEvent, name: str,
                      input_uri: str) -> dict[str, Any]:
    """The CreateTransformJob arguments for ``package``, reading ``input_uri``."""
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": name,
        "BatchStrategy": settings.batch_strategy,
        "MaxPayloadInMB": settings.max_payload_mb,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                                            "S3Uri": input_uri}},
            "ContentType": settings.content_type,
            "SplitType": settings.split_type,
        },
        "TransformOutput": {"S3OutputPath": settings.output_uri(package.group, package.version),
                            "Accept": settings.accept,
                            "AssembleWith": settings.assemble_with},
        "TransformResources": {"InstanceType": settings.instance_type,
                               "InstanceCount": settings.instance_count},
        "Environment": {OUTPUT_ENV: REPORT, VERSION_ENV: f"v{package.version}"},
        "Tags": [{"Key": "ModelPackageArn", "Value": package.arn}],
    }
    if settings.max_concurrent:
        request["MaxConcurrentTransforms"] = settings.max_concurrent
    return request


def _exists(describe: Callable[..., Any], **kwargs: Any) -> dict[str, Any] | None:
    """The description of a resource, or ``None`` when the call says it does not exist."""
    try:
        return describe(**kwargs)
    except Exception as err:  # noqa: BLE001 - botocore or a local runner's own error type
        code = (getattr(err, "response", None) or {}).get("Error", {}).get("Code", "")
        text = str(err).lower()
        if code == "ResourceNotFound" or "could not find" in text or "not found" in text \
                or "does not exist" in text:
            return None
        raise


def _create_once(create: Callable[..., Any], describe: Callable[..., Any], what: str,
                 request: dict[str, Any], key: dict[str, str]) -> str:
    """``"created"`` or ``"exists"``; "already exists" (a concurrent delivery) counts as done."""
    if _exists(describe, **key) is not None:
        log(f"{what} already exists; not creating it again", **key)
        return "exists"
    try:
        create(**request)
    except Exception as err:
        if _exists(describe, **key) is None:
            raise
        log(f"{what} created concurrently ({type(err).__name__}); treating as done", **key)
        return "exists"
    log(f"{what} created", **key)
    return "created"


def _start_transform(sm: Any, settings: Settings, package: PackageEvent, model_name: str,
                     input_uri: str) -> tuple[str, dict[str, Any]]:
    """``("created" | "exists", request)``: the package's latest transform job attempt, a new
    attempt when every earlier one ended Failed or Stopped."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = resource_name(package.group, package.version, attempt)
        request = {**transform_request(settings, package, name, input_uri),
                   "ModelName": model_name}
        key = {"TransformJobName": name}
        found = _exists(sm.describe_transform_job, **key)
        status = (found or {}).get("TransformJobStatus")
        if status in RETRYABLE:
            log("transform job ended without output; retrying under a new name", **key,
                job_status=status, failure_reason=found.get("FailureReason"))
            continue
        if found is not None:
            log("transform job already exists; not creating it again", **key, job_status=status)
            return "exists", request
        return _create_once(sm.create_transform_job, sm.describe_transform_job,
                            "transform job", request, key), request
    raise RetriesExhausted(f"transform job {resource_name(package.group, package.version)}: "
                       f"{MAX_ATTEMPTS} attempts ended Failed or Stopped; not retrying again")


def lambda_handler(event: Any, context: Any = None, *, client: Any = None,
                   environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Handle one model package state change event (see the module docstring)."""
    try:
        package = parse_event(event)
    except MalformedEvent as err:
        log("malformed event", level="ERROR", error=str(err))
        raise
    settings = Settings.from_env(environ)
    fields = {"group": package.group, "version": package.version, "arn": package.arn,
              "approval_status": package.status}
    if package.status != APPROVED:
        reason = f"approval status is {package.status}, not {APPROVED}"
        log("ignored", reason=reason, **fields)
        return {"status": "ignored", "reason": reason, **fields}
    if settings.group and package.group != settings.group:
        reason = f"group {package.group!r} is not the configured {settings.group!r}"
        log("ignored", reason=reason, **fields)
        return {"status": "ignored", "reason": reason, **fields}

    sm = client if client is not None else CLIENT_FACTORY()
    name = resource_name(package.group, package.version)
    try:
        input_uri = transform_input(sm, settings, package)
    except NoTransformInput as err:
        log("failed", level="ERROR", error=str(err), **fields)
        return {"status": "failed", "reason": str(err), "model_name": name, **fields}
    model = _create_once(
        sm.create_model, sm.describe_model, "model",
        {"ModelName": name, "ExecutionRoleArn": settings.role_arn,
         "Containers": [{"ModelPackageName": package.arn}],
         "Tags": [{"Key": "ModelPackageArn", "Value": package.arn}]},
        {"ModelName": name})
    try:
        job, request = _start_transform(sm, settings, package, name, input_uri)
    except RetriesExhausted as err:
        log("failed", level="ERROR", error=str(err), model=model, **fields)
        return {"status": "failed", "reason": str(err), "model_name": name, "model": model,
                **fields}
    job_name = request["TransformJobName"]
    output = request["TransformOutput"]["S3OutputPath"]
    status = "started" if job == "created" else "already_started"
    log(status, model=model, transform_job_name=job_name, output=output, **fields)
    return {"status": status, "model_name": name, "model": model,
            "transform_job_name": job_name, "output": output, **fields}
