"""The definition a local run executes: built by the same code as ``pipeline definition`` and
``pipeline upsert`` (:func:`mlops.session.build`), in moto's in-process AWS, with the objects the
SDK uploads while building it (the staged source, ``runproc.sh``, the training drivers) kept in
the local object store, where the definition's S3 URIs find them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops.local.state import StateDir


def keep_objects(state: StateDir, bucket: str) -> int:
    """Copy every object of ``bucket`` in the (mocked) S3 into the local object store."""
    import boto3

    s3 = boto3.client("s3")
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            target = state.s3_path(f"s3://{bucket}/{item['Key']}")
            if "/__pycache__/" in item["Key"] or target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            count += 1
    return count


def offline_definition(cfg: dict[str, Any], state: StateDir) -> dict[str, Any]:
    """The definition of ``cfg`` built offline; its uploads land in ``state``'s object store."""
    import logging
    import warnings

    from mlops.session import build, create_bucket, offline_aws

    loggers = [logging.getLogger(n) for n in ("sagemaker", "botocore")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)  # the SDK's notes on what it pops from the definition
    with offline_aws(cfg["region"]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        create_bucket(cfg["bucket"], cfg["region"])
        definition = json.loads(build(cfg).definition())
        keep_objects(state, cfg["bucket"])
    for lg, level in zip(loggers, levels, strict=True):
        lg.setLevel(level)
    return definition


def source_digest(cfg: dict[str, Any]) -> str:
    """What the definition is built from: ``cfg``, the SDK's version and the source files of
    the library, the jobs, the configs and the pipeline code (a change to any builds anew)."""
    import hashlib
    from importlib.metadata import version

    import informer
    import mlops
    import sagemaker_jobs
    from informer.cli.common import config_dir

    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
    digest.update(version("sagemaker").encode())
    for root in (Path(informer.__file__).parent, Path(sagemaker_jobs.__file__).parent,
                 Path(mlops.__file__).parent, Path(config_dir())):
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".yaml", ".txt") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()[:20]


def definition_for(cfg: dict[str, Any], state: StateDir) -> tuple[dict[str, Any], bool]:
    """``(definition, reused)``: the definition built earlier from the same config and source
    (as `pipeline upsert` once, `pipeline start` many times, so step caching can apply), else
    a new one, kept under ``definitions/`` in the state."""
    from mlops.local.definition import load_definition

    saved = state.root / "definitions" / f"{source_digest(cfg)}.json"
    if saved.is_file():
        return load_definition(saved), True
    definition = offline_definition(cfg, state)
    save_definition(definition, saved)
    return definition, False


def local_config(state: StateDir, group: str, prefix: str, data_prefix: str,
                 overrides: list[str]) -> dict[str, Any]:
    """``conf/pipeline`` for a local run: the state's bucket, the group and prefixes, and the
    training overrides as the training job's extra hyperparameters."""
    from mlops.config import load_config

    cfg = load_config([f"bucket={state.bucket}", f"model_package_group={group}",
                       f"base_job_prefix={prefix}", f"data_prefix={data_prefix}"])
    extra = dict(cfg["training"].get("hyperparameters") or {})
    for token in overrides:
        key, _, value = token.partition("=")
        extra[key] = value
    cfg["training"]["hyperparameters"] = extra
    return cfg


def save_definition(definition: dict[str, Any], path: Path) -> Path:
    from informer.files import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(definition, indent=2) + "\n")
