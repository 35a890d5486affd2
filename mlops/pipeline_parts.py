"""The pieces of the pipeline definition that need no SageMaker session: the staged source
with its processing shims, the execution parameters, image look-up and S3 URIs
(:mod:`mlops.pipeline` builds the steps from them)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

# SDK v3's FrameworkProcessor runs ``python3 <basename of code>`` from the bundle root, so each
# processing script gets a root-level shim that runs the module from the package.
SHIM = '''"""Processing entry point: runs sagemaker_jobs.{name} (FrameworkProcessor runs the
basename of its code argument from the root of the source bundle)."""
import runpy

runpy.run_module("sagemaker_jobs.{name}", run_name="__main__", alter_sys=True)
'''
PROCESSING_SCRIPTS = ("preprocess", "evaluate")


def stage_pipeline_source(target: Path, torch_version: str | None = None) -> Path:
    """The library staged for the jobs (``sagemaker_jobs.source.stage_source``, requirements
    pinned to the image's ``torch_version``) plus the root-level processing shims."""
    from sagemaker_jobs.source import stage_source

    stage_source(target, torch_version)
    for name in PROCESSING_SCRIPTS:
        (target / f"{name}.py").write_text(SHIM.format(name=name))
    return target


def make_parameters(defaults: Mapping[str, Any], bucket: str, data_prefix: str) -> dict[str, Any]:
    """The pipeline parameters by name: the input ``s3://<InputDataBucket>/<InputDataPrefix>``
    (EventBridge passes a new object's bucket and key) and ``InputDataVersion``, its content's
    identity (the object's ETag; ``pipeline start`` a digest of the prefix's keys and ETags),
    an argument of ``PreprocessData`` so its cache key changes with the data; the experiment
    preset, instance types
    and counts, the MSE threshold, whether the model must beat the naive baselines
    (``RequireSkill``) and the approval status of the registered version."""
    from sagemaker.core.workflow.parameters import (
        ParameterBoolean,
        ParameterFloat,
        ParameterInteger,
        ParameterString,
    )

    d = defaults
    return {p.name: p for p in (
        ParameterString("InputDataBucket", default_value=bucket),
        ParameterString("InputDataPrefix", default_value=data_prefix),
        ParameterString("InputDataVersion", default_value="unversioned"),
        ParameterString("Experiment", default_value=str(d["experiment"])),
        ParameterString("ProcessingInstanceType", default_value=d["processing_instance_type"]),
        ParameterInteger("ProcessingInstanceCount",
                         default_value=int(d["processing_instance_count"])),
        ParameterString("TrainingInstanceType", default_value=d["training_instance_type"]),
        ParameterInteger("TrainingInstanceCount", default_value=int(d["training_instance_count"])),
        ParameterFloat("MseThreshold", default_value=float(d["mse_threshold"])),
        ParameterBoolean("RequireSkill", default_value=bool(d.get("require_skill", True))),
        ParameterString("ModelApprovalStatus", default_value=str(d["approval_status"])),
    )}


def image_uri(explicit: str | None, region: str, version: str, instance_type: str,
              scope: str) -> str:
    """``explicit``, else the AWS PyTorch image (``training`` or ``inference`` scope)."""
    if explicit:
        return explicit
    from sagemaker.core import image_uris

    from sagemaker_jobs.launcher import FRAMEWORKS

    if version not in FRAMEWORKS:
        raise ValueError(f"framework_version: expected one of {sorted(FRAMEWORKS)} (PyTorch "
                         f"versions with training and inference images), got {version!r}")
    return image_uris.retrieve("pytorch", region, version=version, py_version=FRAMEWORKS[version],
                               instance_type=instance_type, image_scope=scope)


def s3_uri(bucket: Any, *parts: Any) -> Any:
    """``s3://bucket/part/...``; a ``Join`` when a part is a pipeline variable."""
    from sagemaker.core.workflow.functions import Join

    if isinstance(bucket, str) and all(isinstance(p, str) for p in parts):
        return "/".join(["s3:/", bucket, *(p.strip("/") for p in parts)])
    return Join(on="/", values=["s3:/", bucket, *parts])
