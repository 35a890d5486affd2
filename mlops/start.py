"""``informer-mlops pipeline start``: the execution's parameters, checked against the definition.

- ``InputDataVersion`` (the cache key of the input's content): unless given, a digest of the
  keys and ETags of the objects under the input prefix, so a re-uploaded object with new
  content misses ``PreprocessData``'s cache and an unchanged one hits it.
- An instance type override must be of the kind (CPU or GPU) of the image the definition holds
  for that step: the image is fixed when the definition is built, the instance type is not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from typing import Any

from informer.errors import InformerError

# (instance type parameter, the step types whose image it must match)
INSTANCE_PARAMETERS = {"ProcessingInstanceType": "Processing", "TrainingInstanceType": "Training"}


def start_parameters(args: argparse.Namespace, declared: dict[str, Any]) -> dict[str, str]:
    """``-p Name=Value`` and ``--input s3://bucket/prefix``, checked against ``declared``."""
    values: dict[str, str] = {}
    if args.input:
        match = re.match(r"^s3://([^/]+)/?(.*)$", args.input)
        if not match:
            raise InformerError(f"--input: expected s3://bucket/prefix, got {args.input!r}")
        values.update(InputDataBucket=match.group(1), InputDataPrefix=match.group(2))
    for item in args.parameter or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise InformerError(f"-p {item!r}: expected Name=Value")
        values[name] = value
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise InformerError(f"parameter {', '.join(unknown)}: not a parameter of the pipeline; "
                            f"expected one of {sorted(declared)}")
    return values


def input_version(s3: Any, bucket: str, prefix: str) -> str:
    """A digest of the keys and ETags under ``s3://bucket/prefix`` (the input's content)."""
    digest = hashlib.sha256()
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            digest.update(f"{obj['Key']}\t{obj['ETag']}\n".encode())
            count += 1
    if not count:
        raise InformerError(f"InputDataPrefix: s3://{bucket}/{prefix} holds no object; expected "
                            f"the training data there")
    return digest.hexdigest()[:32]


def is_gpu_instance(instance_type: str) -> bool:
    """``ml.p*`` and ``ml.g*`` instances have NVIDIA GPUs."""
    family = instance_type.removeprefix("ml.").split(".")[0]
    return family[:1] in ("p", "g")


def image_kinds(definition: dict[str, Any]) -> dict[str, set[str]]:
    """``{step type: {"cpu" | "gpu"}}`` of the AWS images the definition's steps run."""
    kinds: dict[str, set[str]] = {}
    pending = list(definition.get("Steps", []))
    while pending:
        step = pending.pop()
        arguments = step.get("Arguments") or {}
        if step.get("Type") == "Condition":
            pending += arguments.get("IfSteps", []) + arguments.get("ElseSteps", [])
        image = (arguments.get("AppSpecification") or {}).get("ImageUri") or (
            arguments.get("AlgorithmSpecification") or {}).get("TrainingImage")
        match = re.search(r"-(cpu|gpu)-", image) if isinstance(image, str) else None
        if match:
            kinds.setdefault(step["Type"], set()).add(match.group(1))
    return kinds


def check_instance_types(values: dict[str, str], definition: dict[str, Any]) -> None:
    """Refuse an instance type whose kind differs from the image of its steps."""
    kinds = image_kinds(definition)
    for parameter, step_type in INSTANCE_PARAMETERS.items():
        if parameter not in values:
            continue
        wanted = "gpu" if is_gpu_instance(values[parameter]) else "cpu"
        built = kinds.get(step_type, set())
        if built and wanted not in built:
            raise InformerError(
                f"parameter {parameter}: {values[parameter]!r} is a {wanted.upper()} instance "
                f"but the definition's {step_type.lower()} image is the {built.pop().upper()} "
                f"one; upsert the pipeline with parameters.{_config_key(parameter)}="
                f"{values[parameter]} (the image follows it) or pick a "
                f"{'GPU' if wanted == 'cpu' else 'CPU'} instance type")


def _config_key(parameter: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", parameter).lower()


def cmd_start(args: argparse.Namespace, cfg: dict[str, Any]) -> None:
    import boto3

    client = boto3.client("sagemaker", region_name=cfg["region"])
    described = client.describe_pipeline(PipelineName=cfg["pipeline_name"])
    definition = json.loads(described["PipelineDefinition"])
    declared = {p["Name"]: p for p in definition.get("Parameters", [])}
    values = start_parameters(args, declared)
    check_instance_types(values, definition)
    if "InputDataVersion" in declared and "InputDataVersion" not in values:
        bucket = values.get("InputDataBucket") or declared["InputDataBucket"]["DefaultValue"]
        prefix = values.get("InputDataPrefix", declared["InputDataPrefix"]["DefaultValue"])
        values["InputDataVersion"] = input_version(
            boto3.client("s3", region_name=cfg["region"]), bucket, prefix)
    response = client.start_pipeline_execution(
        PipelineName=cfg["pipeline_name"],
        PipelineParameters=[{"Name": k, "Value": str(v)} for k, v in values.items()])
    print(json.dumps({"PipelineExecutionArn": response["PipelineExecutionArn"],
                      "Parameters": values}, indent=2))
