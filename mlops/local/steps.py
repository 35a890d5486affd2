"""The step types a local execution runs: Processing and Training jobs (with the step's
``CacheConfig``) and RegisterModel. Each takes the step's resolved arguments and returns the
properties later steps read (the Describe*Job / CreateModelPackage response's fields) and a
note for the progress line."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.local.definition import DefinitionError, resolve
from mlops.local.fields import check_values
from mlops.local.jobs import (
    container_path,
    download,
    job_environment,
    processing_command,
    requirement_notes,
    run_logged,
    training_command,
    upload,
)

if TYPE_CHECKING:
    from mlops.local.execution import Execution, Progress

Properties = tuple[dict[str, Any], str]


def _duration(text: str, where: str) -> timedelta:
    """An ISO 8601 duration (``P30D``, ``PT12H``, ``P1DT2H30M``)."""
    match = re.fullmatch(r"P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?",
                         str(text))
    if not match or str(text) in ("P", "PT"):
        raise DefinitionError(f"{where}: expected an ISO 8601 duration like P30D, got {text!r}")
    w, d, h, m, s = (int(v or 0) for v in match.groups())
    return timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=s)


class StepCache:
    """SageMaker's step caching: a step whose arguments (execution variables unresolved) match
    a successful earlier run within ``ExpireAfter`` is not run again; its properties are."""

    def __init__(self, run: Execution, step: dict[str, Any]) -> None:
        spec = step.get("CacheConfig") or {}
        self.enabled = bool(spec.get("Enabled"))
        where = f"Steps[{step['Name']}].CacheConfig.ExpireAfter"
        self.expire = _duration(spec["ExpireAfter"], where) if spec.get("ExpireAfter") else None
        if not self.enabled:
            return
        ctx = run.ctx
        saved = ctx.execution
        ctx.execution = {k: f"{{Execution.{k}}}" for k in saved}
        try:
            key_args = resolve(step.get("Arguments") or {}, ctx, f"Steps[{step['Name']}]")
        finally:
            ctx.execution = saved
        digest = hashlib.sha256(json.dumps([step["Type"], key_args], sort_keys=True,
                                           default=str).encode()).hexdigest()[:24]
        self.path = run.state.root / "cache" / step["Name"] / f"{digest}.json"

    def hit(self) -> dict[str, Any] | None:
        if not self.enabled or not self.path.is_file():
            return None
        entry = json.loads(self.path.read_text())
        if self.expire is not None and time.time() - entry["time"] > \
                self.expire.total_seconds():
            return None
        return entry

    def store(self, properties: dict[str, Any], execution: str) -> None:
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"time": time.time(), "execution": execution,
                                             "properties": properties}, default=str))


def cached(runner: Callable[..., Properties]) -> Callable[..., Properties]:
    def run_or_reuse(run: Execution, step: dict[str, Any], args: dict[str, Any],
                     progress: Progress) -> Properties:
        cache = StepCache(run, step)
        entry = cache.hit()
        if entry is not None:
            return entry["properties"], f"cached (execution {entry['execution']})"
        properties, note = runner(run, step, args, progress)
        cache.store(properties, run.id)
        return properties, note
    return run_or_reuse


def _job(run: Execution, step: dict[str, Any]) -> tuple[str, Path, Path]:
    name = f"pipelines-{run.id}-{step['Name']}"
    root = run.work / step["Name"] / "opt_ml"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return name, root, run.logs / f"{step['Name']}.log"


def _note_requirements(log: Path, requirements: Path) -> None:
    notes = requirement_notes(requirements)
    if notes:
        with open(log, "a", encoding="utf-8") as handle:
            handle.writelines(f"local: {n} (the job runs in this environment)\n" for n in notes)


@cached
def processing(run: Execution, step: dict[str, Any], args: dict[str, Any],
               progress: Progress) -> Properties:
    """A processing job: inputs to their ``LocalPath``, the entry point, outputs uploaded."""
    where = f"Steps[{step['Name']}].Arguments"
    name, root, log = _job(run, step)
    check_values(args.get("ProcessingResources", {}).get("ClusterConfig", {}),
                 f"{where}.ProcessingResources.ClusterConfig")
    for item in args.get("ProcessingInputs") or []:
        s3 = item.get("S3Input") or {}
        field = f"{where}.ProcessingInputs[{item.get('InputName')}]"
        check_values(s3, f"{field}.S3Input")
        download(run.state, s3["S3Uri"], container_path(root, s3["LocalPath"], field), field)
    outputs = (args.get("ProcessingOutputConfig") or {}).get("Outputs") or []
    for item in outputs:
        field = f"{where}.ProcessingOutputConfig.Outputs[{item.get('OutputName')}].S3Output"
        check_values(item["S3Output"], field)
        container_path(root, item["S3Output"]["LocalPath"], field).mkdir(parents=True,
                                                                          exist_ok=True)
    command, cwd, requirements = processing_command(root, args, where)
    _note_requirements(log, requirements)
    limit = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    run_logged(command, job_environment(root, args), cwd, log, limit)
    for item in outputs:
        upload(run.state, container_path(root, item["S3Output"]["LocalPath"], ""),
               item["S3Output"]["S3Uri"])
    done = {"ProcessingJobName": name, "ProcessingJobStatus": "Completed",
            "ProcessingJobArn": f"arn:aws:sagemaker:local:000000000000:processing-job/{name}"}
    return {**args, **done}, ""


@cached
def training(run: Execution, step: dict[str, Any], args: dict[str, Any],
             progress: Progress) -> Properties:
    """A training job: channels, the driver's entry script, ``model.tar.gz`` uploaded to
    ``<S3OutputPath>/<job>/output/``, metrics by the request's metric definitions."""
    from sagemaker_jobs.local_train import container_env, tar_model

    where = f"Steps[{step['Name']}].Arguments"
    name, root, log = _job(run, step)
    check_values(args.get("ResourceConfig") or {}, f"{where}.ResourceConfig")
    check_values(args.get("AlgorithmSpecification") or {}, f"{where}.AlgorithmSpecification")
    channels = []
    for item in args.get("InputDataConfig") or []:
        field = f"{where}.InputDataConfig[{item.get('ChannelName')}]"
        source = item["DataSource"]["S3DataSource"]
        check_values({**item, **source}, field)
        download(run.state, source["S3Uri"], root / "input" / "data" / item["ChannelName"],
                 field)
        channels.append(item["ChannelName"])
    for sub in ("model", "output/data", "checkpoints"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    checkpoints = (args.get("CheckpointConfig") or {}).get("S3Uri")
    if checkpoints and run.state.s3_path(checkpoints).is_dir():  # a restarted job resumes
        shutil.copytree(run.state.s3_path(checkpoints), root / "checkpoints", dirs_exist_ok=True)
    command, cwd, requirements = training_command(root, args, where)
    _note_requirements(log, requirements)
    env = {**job_environment(root, args), **container_env(
        root, {k: str(v) for k, v in (args.get("HyperParameters") or {}).items()}, channels,
        0, name)}
    definitions = [(d["Name"], re.compile(d["Regex"])) for d in
                   (args.get("AlgorithmSpecification") or {}).get("MetricDefinitions") or []]
    metrics: dict[str, float] = {}

    epochs: dict[str, dict[str, float]] = {}

    def on_line(line: str) -> None:
        """Metrics as SageMaker extracts them; an epoch's line once its train_loss is in."""
        found = {n: float(m.group(1)) for n, rx in definitions if (m := rx.search(line))}
        metrics.update(found)
        epoch = re.search(r"epoch=(\d+)", line)
        if found and epoch:
            seen = epochs.setdefault(epoch.group(1), {})
            seen.update(found)
            if "train_loss" in found:
                progress.line(f"epoch {epoch.group(1)}: " + " ".join(
                    f"{k}={v:.4g}" for k, v in sorted(seen.items(), reverse=True)))

    limit = (args.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    run_logged(command, env, cwd, log, limit, on_line)
    tar_model(root)
    output = f"{args['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output"
    target = run.state.s3_path(output)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(root / "output" / "model.tar.gz", target / "model.tar.gz")
    upload(run.state, root / "output" / "data", f"{output}/data")
    if checkpoints:
        upload(run.state, root / "checkpoints", checkpoints)
    done = {"TrainingJobName": name, "TrainingJobStatus": "Completed",
            "ModelArtifacts": {"S3ModelArtifacts": f"{output}/model.tar.gz"},
            "FinalMetricDataList": [{"MetricName": k, "Value": v} for k, v in metrics.items()]}
    shown = {k: v for k, v in metrics.items() if k.startswith("test_mse")}
    return {**args, **done}, " ".join(f"{k} {v:.4f}" for k, v in shown.items())


def register(run: Execution, step: dict[str, Any], args: dict[str, Any],
             progress: Progress) -> Properties:
    """CreateModelPackage in the local registry; the version's artifact unpacked for
    ``informer-eval``, its errors by horizon step beside its forecasts."""
    from mlops.local.registry import Registry
    from mlops.local.unpack import unpack_model

    where = f"Steps[{step['Name']}].Arguments"
    containers = (args.get("InferenceSpecification") or {}).get("Containers") or []
    if len(containers) != 1 or not containers[0].get("ModelDataUrl"):
        raise DefinitionError(f"{where}.InferenceSpecification.Containers: expected one "
                              f"container with a ModelDataUrl")
    statistics = args["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    report_path = run.state.s3_path(statistics)
    if not report_path.is_file():
        raise DefinitionError(f"{where}.ModelMetrics.ModelQuality.Statistics.S3Uri: no object "
                              f"{statistics}")
    report = json.loads(report_path.read_text())
    group, model_data = args["ModelPackageGroupName"], containers[0]["ModelDataUrl"]
    package = Registry(run.state.registry).register(
        group, model_data, {"ModelQuality": args["ModelMetrics"]["ModelQuality"], **report},
        status=args.get("ModelApprovalStatus") or "PendingManualApproval",
        image=containers[0].get("Image"), description=args.get("ModelPackageDescription"),
        customer_metadata={k: str(v) for k, v in
                           (args.get("CustomerMetadataProperties") or {}).items()})
    version = package["ModelPackageVersion"]
    unpack_model(run.state.s3_path(model_data), run.state.model(group, version))
    by_step = report_path.parent / "backtest_by_step.csv"
    if by_step.is_file():
        target = run.state.forecasts(group, version)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(by_step, target / by_step.name)
    run.summary["package"] = package
    return package, f"{group} v{version} ({package['ModelApprovalStatus']})"


STEP_RUNNERS: dict[str, Callable[..., Properties]] = {
    "Processing": processing, "Training": training, "RegisterModel": register}
