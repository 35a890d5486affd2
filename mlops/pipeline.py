"""The SageMaker Pipeline: Preprocess -> Train -> Evaluate -> MSE check -> skill check ->
Register (or Fail).

SDK v3 (``sagemaker.mlops.workflow``, ``sagemaker.core.workflow``) over ``sagemaker_jobs/``:
``preprocess.py`` and ``evaluate.py`` run as processing jobs, ``train.py`` as a ``ModelTrainer``
job, all from one staged copy of this library. The trained ``model.tar.gz`` already holds
``code/inference.py``, so registering needs no repack. Execution parameters: see
:func:`make_parameters` (defaults from ``conf/pipeline``). Managed spot is fixed in the
definition (``training.spot``): CreateTrainingJob refuses ``MaxWaitTimeInSeconds`` without
spot, and a definition cannot drop a field at run time.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops.lambda_function import TRANSFORM_INPUT_PROPERTY
from mlops.pipeline_parts import (  # noqa: F401 - part of this module's interface
    PROCESSING_SCRIPTS,
    image_uri,
    make_parameters,
    s3_uri,
    stage_pipeline_source,
)

EVALUATION_FILE = "evaluation.json"
MSE_PATH = "regression_metrics.mse.value"
# skill against the better of the seasonal-naive and window-mean forecasts (evaluation.json)
SKILL_PATH = "skill.value"
PROCESSING = "/opt/ml/processing"
# The inference container runs code/inference.py from the model archive, in full precision
# (forecasts independent of Batch Transform's mini-batches; "bf16-mixed" serves ~3x faster).
INFERENCE_ENV = {"SAGEMAKER_PROGRAM": "inference.py",
                 "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                 "INFORMER_PRECISION": "32-true"}
class _Builder:
    """The pieces of one pipeline definition."""

    def __init__(self, cfg: dict[str, Any], region: str, role: str, bucket: str, prefix: str,
                 session: Any, source_dir: Path) -> None:
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.mlops.workflow import CacheConfig

        self.cfg, self.region, self.role, self.bucket = cfg, region, role, bucket
        self.prefix, self.session, self.source_dir = prefix, session, source_dir
        self.params = make_parameters(cfg["parameters"], bucket, cfg["data_prefix"])
        cache = cfg["cache"]
        self.cache = CacheConfig(enable_caching=bool(cache["enabled"]), expire_after=(
            cache.get("expire_after") or None) if cache["enabled"] else None)
        self.execution = ExecutionVariables.PIPELINE_EXECUTION_ID

    def image(self, kind: str, instance_type: str, scope: str) -> str:
        images = self.cfg.get("images") or {}
        return image_uri(images.get(kind), self.region, str(self.cfg["framework_version"]),
                         instance_type, scope)

    def processing(self, name: str, script: str, inputs: list[tuple[str, Any, str]],
                   outputs: list[str], arguments: list[Any] | None = None,
                   property_files: list[Any] | None = None) -> Any:
        """A ProcessingStep running ``sagemaker_jobs/<script>`` from the staged library;
        ``outputs`` are directories under ``/opt/ml/processing``."""
        from sagemaker.core.processing import FrameworkProcessor
        from sagemaker.core.shapes import (
            ProcessingInput,
            ProcessingOutput,
            ProcessingS3Input,
            ProcessingS3Output,
        )
        from sagemaker.mlops.workflow import ProcessingStep

        p = self.params
        job = script.split(".")[0]
        processor = FrameworkProcessor(
            image_uri=self.image("processing", self.cfg["parameters"]["processing_instance_type"],
                                 "training"),
            role=self.role, command=["python3"], instance_type=p["ProcessingInstanceType"],
            instance_count=p["ProcessingInstanceCount"], base_job_name=f"{self.prefix}-{job}",
            sagemaker_session=self.session, code_location=s3_uri(self.bucket, self.prefix, "code"))
        step_args = processor.run(
            code=script, source_dir=str(self.source_dir),
            requirements="requirements.txt", arguments=arguments,
            inputs=[ProcessingInput(input_name=n, s3_input=ProcessingS3Input(
                s3_uri=uri, local_path=local, s3_data_type="S3Prefix", s3_input_mode="File"))
                for n, uri, local in inputs],
            outputs=[ProcessingOutput(output_name=out.split("/")[-1], s3_output=ProcessingS3Output(
                s3_uri=s3_uri(self.bucket, self.prefix, "executions", self.execution, job,
                              out.split("/")[-1]),
                local_path=f"{PROCESSING}/{out}", s3_upload_mode="EndOfJob"))
                for out in outputs])
        return ProcessingStep(name=name, step_args=step_args, cache_config=self.cache,
                              property_files=property_files)

    def training(self, dataset: Any) -> Any:
        """The TrainingStep: ``sagemaker_jobs/train.py`` on the preprocessed dataset."""
        from sagemaker.core.training.configs import (
            CheckpointConfig,
            Compute,
            InputData,
            MetricDefinition,
            OutputDataConfig,
            SourceCode,
            StoppingCondition,
        )
        from sagemaker.mlops.workflow import TrainingStep
        from sagemaker.train import ModelTrainer

        from sagemaker_jobs.hyperparameters import shell_safe
        from sagemaker_jobs.launcher import ENTRY_SCRIPT
        from sagemaker_jobs.metrics import METRIC_DEFINITIONS

        t, p = self.cfg["training"], self.params
        spot = bool(t["spot"])
        extra = dict(shell_safe(str(k), str(v)) for k, v in (t.get("hyperparameters") or {}
                                                              ).items())
        trainer = ModelTrainer(
            sagemaker_session=self.session, role=self.role, base_job_name=f"{self.prefix}-train",
            training_image=self.image("training", self.cfg["parameters"]["training_instance_type"],
                                      "training"),
            source_code=SourceCode(source_dir=str(self.source_dir), entry_script=ENTRY_SCRIPT,
                                   requirements="requirements.txt"),
            compute=Compute(instance_type=p["TrainingInstanceType"],
                            instance_count=p["TrainingInstanceCount"],
                            volume_size_in_gb=int(t["volume_size"]),
                            enable_managed_spot_training=spot or None),
            stopping_condition=StoppingCondition(
                max_runtime_in_seconds=int(t["max_run"]),
                max_wait_time_in_seconds=int(t["max_wait"]) if spot else None),
            output_data_config=OutputDataConfig(
                s3_output_path=s3_uri(self.bucket, self.prefix, "models")),
            checkpoint_config=CheckpointConfig(
                s3_uri=s3_uri(self.bucket, self.prefix, "checkpoints", self.execution),
                local_path="/opt/ml/checkpoints"),
            input_data_config=[InputData(channel_name="training", data_source=dataset)],
            hyperparameters={"experiment": p["Experiment"], **extra},
        ).with_metric_definitions(
            [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in METRIC_DEFINITIONS])
        return TrainingStep(name="TrainModel", step_args=trainer.train(),
                            cache_config=self.cache)

    def register(self, model_data: Any, evaluation_uri: Any, transform_input: Any,
                 group: str) -> Any:
        """The ModelStep registering ``model_data`` in ``group`` with the evaluation report and
        the S3 prefix of the version's Batch Transform input (customer metadata
        ``TransformInput``, which the approval Lambda reads)."""
        from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
        from sagemaker.core.workflow.functions import Join
        from sagemaker.mlops.workflow import ModelStep
        from sagemaker.serve.model_builder import ModelBuilder

        r = self.cfg["register"]
        builder = ModelBuilder(
            image_uri=self.image("inference", r["transform_instances"][0], "inference"),
            s3_model_data_url=model_data, role_arn=self.role, sagemaker_session=self.session,
            env_vars=dict(INFERENCE_ENV))
        metrics = ModelMetrics(model_statistics=MetricsSource(
            content_type="application/json",
            s3_uri=Join(on="/", values=[evaluation_uri, EVALUATION_FILE])))
        step_args = builder.register(
            model_package_group_name=group, content_types=list(r["content_types"]),
            response_types=list(r["response_types"]),
            inference_instances=list(r["inference_instances"]),
            transform_instances=list(r["transform_instances"]), model_metrics=metrics,
            approval_status=self.params["ModelApprovalStatus"],
            customer_metadata_properties={TRANSFORM_INPUT_PROPERTY: transform_input})
        return ModelStep(name="RegisterModel", step_args=step_args)


def get_pipeline(region: str, role: str, bucket: str, pipeline_name: str,
                 model_package_group: str, base_job_prefix: str, *,
                 settings: Mapping[str, Any] | None = None, session: Any = None,
                 source_dir: str | Path | None = None) -> Any:
    """The ``Pipeline`` (nothing is sent until ``upsert``/``start``).

    ``settings``: the ``pipeline`` config (``conf/pipeline/default.yaml``, merged over its
    defaults; names and bucket come from the arguments). ``session``: a ``PipelineSession``
    (default: one for ``region`` with ``bucket`` as its default bucket). ``source_dir``: the
    staged library (default: staged into a temporary directory that lives with the pipeline).
    """
    from sagemaker.core.workflow.conditions import (
        ConditionEquals,
        ConditionGreaterThan,
        ConditionLessThanOrEqualTo,
        ConditionOr,
    )
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import ConditionStep, FailStep, Pipeline

    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,30}", base_job_prefix):
        raise ValueError(f"base_job_prefix: expected letters, digits and '-' (job names and an "
                         f"S3 prefix), at most 32 characters, got {base_job_prefix!r}")
    cfg = merged_settings(settings)
    staged = None
    if source_dir is None:
        staged = tempfile.TemporaryDirectory(prefix="informer-pipeline-source-")
        source_dir = stage_pipeline_source(Path(staged.name), str(cfg["framework_version"]))
    if session is None:
        import boto3
        from sagemaker.core.workflow.pipeline_context import PipelineSession

        session = PipelineSession(boto_session=boto3.Session(region_name=region),
                                  default_bucket=bucket,
                                  default_bucket_prefix=base_job_prefix)
    b = _Builder(cfg, region, role, bucket, base_job_prefix, session, Path(source_dir))
    p = b.params

    preprocess = b.processing(
        "PreprocessData", "preprocess.py",
        inputs=[("raw", s3_uri(p["InputDataBucket"], p["InputDataPrefix"]), f"{PROCESSING}/input")],
        outputs=["output/dataset", "output/profile"],
        arguments=["--experiment", p["Experiment"], "--input-version", p["InputDataVersion"]])
    dataset = preprocess.properties.ProcessingOutputConfig.Outputs["dataset"].S3Output.S3Uri
    train = b.training(dataset)
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts
    report = PropertyFile(name="EvaluationReport", output_name="evaluation",
                          path=EVALUATION_FILE)
    evaluate = b.processing(
        "EvaluateModel", "evaluate.py",
        inputs=[("model", model_data, f"{PROCESSING}/model"),
                ("test", dataset, f"{PROCESSING}/test")],
        outputs=["evaluation", "batch-input"], property_files=[report])
    evaluated = evaluate.properties.ProcessingOutputConfig.Outputs
    evaluation_uri = evaluated["evaluation"].S3Output.S3Uri
    transform_input = evaluated["batch-input"].S3Output.S3Uri

    mse = JsonGet(step_name=evaluate.name, property_file=report, json_path=MSE_PATH)
    fail = FailStep(name="MseAboveThreshold", error_message=Join(on=" ", values=[
        "Test MSE", mse, "is above the threshold", p["MseThreshold"],
        "(MseThreshold); the model was not registered."]))
    skill = JsonGet(step_name=evaluate.name, property_file=report, json_path=SKILL_PATH)
    no_skill = FailStep(name="SkillBelowBaseline", error_message=Join(on=" ", values=[
        "Skill", skill, "against the better naive baseline (1 - MSE / MSE_baseline) is not "
        "above 0: a seasonal-naive or window-mean forecast does at least as well; the model was "
        "not registered (RequireSkill=false registers it anyway)."]))
    check_skill = ConditionStep(
        name="CheckSkill",
        conditions=[ConditionOr(conditions=[
            ConditionEquals(left=p["RequireSkill"], right=False),
            ConditionGreaterThan(left=skill, right=0.0)])],
        if_steps=[b.register(model_data, evaluation_uri, transform_input,
                             model_package_group)],
        else_steps=[no_skill])
    check = ConditionStep(
        name="CheckMse", conditions=[ConditionLessThanOrEqualTo(left=mse,
                                                                right=p["MseThreshold"])],
        if_steps=[check_skill], else_steps=[fail])
    pipeline = Pipeline(name=pipeline_name, parameters=list(p.values()),
                        steps=[preprocess, train, evaluate, check], sagemaker_session=session)
    pipeline._informer_source = staged  # the staged code lives as long as the pipeline
    return pipeline


def merged_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``settings`` merged over the packaged defaults (``conf/pipeline/default.yaml``)."""
    from omegaconf import OmegaConf

    from mlops.config import load_config

    merged = OmegaConf.merge(OmegaConf.create(load_config([])), dict(settings or {}))
    return OmegaConf.to_container(merged, resolve=True)
