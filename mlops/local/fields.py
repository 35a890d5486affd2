"""What the local backend honours of a pipeline definition, field by field.

Each step type has a schema of the fields it may carry (``None``: any value, expressions
included; a dict: the fields of an object; a one-item list: each item's schema). A field outside
it is refused by name before any step runs, never skipped: the local run does what its JSON
says or does not start. Values that matter at run time (input modes, instance counts) are
checked when the step resolves them (:func:`check_values`).
"""

from __future__ import annotations

from typing import Any

from mlops.local.definition import DefinitionError, is_expression

ANY = None
S3_INPUT = {"S3Uri": ANY, "LocalPath": ANY, "S3DataType": ANY, "S3InputMode": ANY,
            "S3DataDistributionType": ANY, "S3CompressionType": ANY}
PROCESSING = {
    "ProcessingResources": {"ClusterConfig": {"InstanceType": ANY, "InstanceCount": ANY,
                                              "VolumeSizeInGB": ANY}},
    "AppSpecification": {"ImageUri": ANY, "ContainerEntrypoint": ANY,
                         "ContainerArguments": ANY},
    "RoleArn": ANY, "Environment": ANY, "StoppingCondition": {"MaxRuntimeInSeconds": ANY},
    "ProcessingInputs": [{"InputName": ANY, "AppManaged": ANY, "S3Input": S3_INPUT}],
    "ProcessingOutputConfig": {"Outputs": [{"OutputName": ANY, "AppManaged": ANY, "S3Output": {
        "S3Uri": ANY, "LocalPath": ANY, "S3UploadMode": ANY}}]},
}
TRAINING = {
    "AlgorithmSpecification": {"TrainingInputMode": ANY, "TrainingImage": ANY,
                               "MetricDefinitions": ANY, "ContainerEntrypoint": ANY,
                               "ContainerArguments": ANY, "EnableSageMakerMetricsTimeSeries": ANY},
    "HyperParameters": ANY, "Environment": ANY, "RoleArn": ANY,
    "InputDataConfig": [{"ChannelName": ANY, "InputMode": ANY, "ContentType": ANY,
                         "CompressionType": ANY, "DataSource": {"S3DataSource": {
                             "S3DataType": ANY, "S3Uri": ANY, "S3DataDistributionType": ANY}}}],
    "ResourceConfig": {"InstanceType": ANY, "InstanceCount": ANY, "VolumeSizeInGB": ANY},
    "StoppingCondition": {"MaxRuntimeInSeconds": ANY, "MaxWaitTimeInSeconds": ANY},
    # spot capacity only decides how the job may be interrupted: a local job never is
    "EnableManagedSpotTraining": ANY,
    "OutputDataConfig": {"S3OutputPath": ANY, "CompressionType": ANY},
    "CheckpointConfig": {"S3Uri": ANY, "LocalPath": ANY},
}
CONTAINER = {"Image": ANY, "Environment": ANY, "ModelDataUrl": ANY, "Framework": ANY,
             "FrameworkVersion": ANY}
REGISTER = {
    "ModelPackageGroupName": ANY, "ModelApprovalStatus": ANY, "CustomerMetadataProperties": ANY,
    "ModelMetrics": {"ModelQuality": {"Statistics": {"ContentType": ANY, "S3Uri": ANY}},
                     "Bias": {}, "Explainability": {}},
    "InferenceSpecification": {"Containers": [CONTAINER], "SupportedContentTypes": ANY,
                               "SupportedResponseMIMETypes": ANY,
                               "SupportedRealtimeInferenceInstanceTypes": ANY,
                               "SupportedTransformInstanceTypes": ANY},
    "SkipModelValidation": ANY, "ModelPackageDescription": ANY,
}
STEP_KEYS = {"Name", "Type", "Arguments", "DependsOn", "Description", "DisplayName",
             "CacheConfig", "PropertyFiles"}
ARGUMENTS = {"Processing": PROCESSING, "Training": TRAINING, "RegisterModel": REGISTER,
             "Fail": {"ErrorMessage": ANY}}
TOP_LEVEL = {"Version", "Metadata", "Parameters", "PipelineExperimentConfig", "MlflowConfig",
             "Steps"}
PROPERTY_FILE = {"PropertyFileName", "OutputName", "FilePath"}


def check_fields(value: Any, schema: Any, where: str) -> None:
    """Refuse the first field of ``value`` that ``schema`` does not list."""
    if schema is ANY or is_expression(value):
        return
    if isinstance(schema, list):
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            check_fields(item, schema[0], f"{where}[{i}]")
        return
    if not isinstance(value, dict):
        raise DefinitionError(f"{where}: expected an object, got {value!r}")
    for key, item in value.items():
        if key not in schema:
            raise DefinitionError(f"{where}.{key}: the local backend cannot honour this field "
                                  f"(it honours {sorted(schema)})")
        check_fields(item, schema[key], f"{where}.{key}")


def check_step(step: dict[str, Any], where: str) -> None:
    """One step, and the steps of a Condition's branches."""
    name = step.get("Name")
    where = f"{where}[{name}]"
    for key in step:
        if key not in STEP_KEYS:
            raise DefinitionError(f"{where}.{key}: the local backend cannot honour this field "
                                  f"(steps may have {sorted(STEP_KEYS)})")
    kind = step.get("Type")
    if kind == "Condition":
        args = step.get("Arguments") or {}
        for key in args:
            if key not in ("Conditions", "IfSteps", "ElseSteps"):
                raise DefinitionError(f"{where}.Arguments.{key}: not a Condition step field")
        for branch in ("IfSteps", "ElseSteps"):
            for child in args.get(branch) or []:
                check_step(child, f"{where}.Arguments.{branch}")
        return
    if kind not in ARGUMENTS:
        raise DefinitionError(f"{where}.Type: the local backend runs {sorted(ARGUMENTS)} and "
                              f"Condition steps, not {kind!r}")
    check_fields(step.get("Arguments") or {}, ARGUMENTS[kind], f"{where}.Arguments")
    for i, spec in enumerate(step.get("PropertyFiles") or []):
        unknown = set(spec) - PROPERTY_FILE
        if kind != "Processing" or unknown:
            raise DefinitionError(f"{where}.PropertyFiles[{i}]: expected a Processing step's "
                                  f"{sorted(PROPERTY_FILE)}, got {sorted(spec)}")


def check_definition(definition: dict[str, Any]) -> None:
    """Every field of the definition is one the local backend honours."""
    for key in definition:
        if key not in TOP_LEVEL:
            raise DefinitionError(f"{key}: the local backend cannot honour this field "
                                  f"(a definition may have {sorted(TOP_LEVEL)})")
    if definition.get("MlflowConfig"):
        raise DefinitionError("MlflowConfig: the local backend has no MLflow tracking server")
    names: set[str] = set()

    def visit(steps: list[dict[str, Any]]) -> None:
        for step in steps:
            if step.get("Name") in names:
                raise DefinitionError(f"Steps[{step.get('Name')}]: two steps have this name")
            names.add(step.get("Name"))
            if step.get("Type") == "Condition":
                visit((step.get("Arguments") or {}).get("IfSteps") or [])
                visit((step.get("Arguments") or {}).get("ElseSteps") or [])

    visit(definition["Steps"])
    for step in definition["Steps"]:
        check_step(step, "Steps")


def check_values(values: dict[str, Any], where: str) -> None:
    """Resolved values that one local instance with File-mode inputs can honour."""
    for key, allowed in (("S3InputMode", {"File"}), ("InputMode", {"File"}),
                         ("TrainingInputMode", {"File"}), ("S3DataType", {"S3Prefix"}),
                         ("S3CompressionType", {"None"}), ("CompressionType", {"None", "GZIP"}),
                         ("InstanceCount", {1}), ("S3UploadMode", {"EndOfJob", "Continuous"})):
        if key in values and values[key] is not None and values[key] not in allowed:
            raise DefinitionError(f"{where}.{key}: the local backend runs "
                                  f"{sorted(allowed, key=str)}, not {values[key]!r}")
