"""``informer-mlops local run``: the SageMaker Pipeline's steps on this machine, with the same
scripts (preprocess -> train through the SageMaker entry point in an ``/opt/ml`` tree ->
evaluate -> MSE condition -> register in the local registry)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from informer.errors import InformerError
from mlops.lambda_function import TRANSFORM_INPUT_PROPERTY
from mlops.local.registry import Registry
from mlops.local.state import StateDir

JOBS = Path(__file__).resolve().parents[2] / "sagemaker_jobs"
STEPS = ("PreprocessData", "TrainModel", "EvaluateModel", "CheckMse", "CheckSkill",
         "RegisterModel")


@dataclass
class RunSettings:
    """One execution's parameters (the AWS pipeline's parameters, locally)."""

    data: Path
    experiment: str = "quickstart"
    overrides: list[str] = field(default_factory=list)
    group: str = "informer-models"
    prefix: str = "informer"
    data_prefix: str = "data/"
    mse_threshold: float = 1.0
    require_skill: bool = True  # skill > 0 against the better naive baseline to register
    approval_status: str = "PendingManualApproval"


class StepFailed(InformerError):
    """A step exited non-zero; the message is its one-line reason."""


class Execution:
    """Runs the steps in order, one log file per step, a progress line per step."""

    def __init__(self, state: StateDir, settings: RunSettings, out: TextIO = sys.stdout) -> None:
        self.state, self.settings, self.out = state, settings, out
        self.id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.key = f"{settings.prefix}/executions/{self.id}"
        self.logs = state.logs / self.id
        self.logs.mkdir(parents=True, exist_ok=True)
        self.work = state.root / "work" / self.id

    def path(self, *parts: str) -> Path:
        return self.state.s3_path(self.state.s3_uri("/".join((self.key, *parts))))

    def step(self, index: int, name: str, action: Callable[[], str]) -> None:
        self.out.write(f"[{index}/{len(STEPS)}] {name} ... ")
        self.out.flush()
        start = time.perf_counter()
        try:
            note = action()
        except InformerError as err:
            self.out.write(f"failed ({time.perf_counter() - start:.1f} s)\n")
            raise StepFailed(f"{name}: {err}") from err
        self.out.write(f"ok ({time.perf_counter() - start:.1f} s){' - ' + note if note else ''}\n")
        self.out.flush()

    def script(self, name: str, args: list[str]) -> None:
        """Run a ``sagemaker_jobs`` script as SageMaker would; its output goes to the log."""
        log = self.logs / f"{name}.log"
        with open(log, "w") as handle:
            proc = subprocess.run([sys.executable, *args], stdout=handle,
                                  stderr=subprocess.STDOUT, cwd=self.state.root)
        if proc.returncode:
            lines = [ln for ln in log.read_text().splitlines() if ln.startswith("error:")]
            reason = lines[-1][len("error: "):] if lines else f"exit code {proc.returncode}"
            raise InformerError(f"{reason} (log: {log})")

    def hyperparameters(self) -> list[str]:
        return [f"experiment={self.settings.experiment}", *self.settings.overrides]


def run_pipeline(state: StateDir, settings: RunSettings, out: TextIO = sys.stdout
                 ) -> dict[str, Any]:
    """Execute every step; returns the execution summary (also in ``logs/<id>/summary.json``)."""
    if not settings.data.is_file():
        raise InformerError(f"data: {settings.data} not found; expected a CSV file")
    run = Execution(state, settings, out)
    out.write(f"execution {run.id} (logs: {run.logs})\n")
    raw = state.s3_path(state.s3_uri(settings.data_prefix + settings.data.name))
    raw.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.data, raw)
    flags = [arg for token in run.hyperparameters() for arg in
             ("--" + token.split("=", 1)[0], token.split("=", 1)[1])]
    dataset = run.path("preprocess", "dataset")
    summary: dict[str, Any] = {"execution": run.id, "input": state.s3_uri(
        settings.data_prefix + settings.data.name)}

    run.step(1, "PreprocessData", lambda: run.script("preprocess", [
        str(JOBS / "preprocess.py"), *flags, "--input-dir", str(raw.parent),
        "--data.file", raw.name, "--output-dir", str(run.path("preprocess")),
        "--message-file", str(run.logs / "preprocess.message")]) or "")
    model_tar = run.path("..", "..", "models", run.id, "model.tar.gz").resolve()

    def train() -> str:
        root = run.work / "opt_ml"
        run.script("train", ["-m", "sagemaker_jobs.local_train", *run.hyperparameters(),
                             "--data", str(dataset), "--root", str(root)])
        model_tar.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "output" / "model.tar.gz", model_tar)
        shutil.copytree(root / "output" / "data", run.path("train", "output"),
                        dirs_exist_ok=True)
        return state.s3_uri(str(model_tar.relative_to(state.object_store / state.bucket)))

    run.step(2, "TrainModel", train)
    evaluation, batch_input = run.path("evaluate", "evaluation"), run.path("evaluate",
                                                                          "batch-input")
    run.step(3, "EvaluateModel", lambda: run.script("evaluate", [
        str(JOBS / "evaluate.py"), "--model-dir", str(model_tar.parent), "--data-dir",
        str(dataset), "--output-dir", str(evaluation), "--batch-input-dir", str(batch_input),
        "--message-file", str(run.logs / "evaluate.message")])
        or by_step(model_tar, dataset, evaluation))
    report = json.loads((evaluation / "evaluation.json").read_text())
    mse = report["regression_metrics"]["mse"]["value"]
    summary["mse"] = mse

    def check() -> str:
        if mse is None or mse > settings.mse_threshold:
            raise InformerError(f"test MSE {mse} is above the threshold "
                                f"{settings.mse_threshold}; the model is not registered")
        return f"mse {mse:.4f} <= {settings.mse_threshold}"

    run.step(4, "CheckMse", check)
    skill = report.get("skill") or {}
    summary["skill"] = skill.get("value")

    def check_skill() -> str:
        value, best = skill.get("value"), skill.get("best_baseline")
        if not settings.require_skill:
            return f"skill {value} not required (require_skill=false)"
        if value is None or value <= 0:
            raise InformerError(
                f"skill {value} against the better naive baseline ({best}; 1 - MSE / "
                f"MSE_baseline) is not above 0: that forecast does at least as well; the model "
                f"is not registered (require_skill=false registers it anyway)")
        return f"skill {value:+.3f} against {best}"

    run.step(5, "CheckSkill", check_skill)

    def register() -> str:
        metrics = {"ModelQuality": {"Statistics": {
            "ContentType": "application/json",
            "S3Uri": state.s3_uri(f"{run.key}/evaluate/evaluation/evaluation.json")}},
            **report}
        # as the pipeline's RegisterModel: the version names its transform input, the
        # EvaluateModel step's batch-input output
        package = Registry(state.registry).register(
            settings.group, state.s3_uri(str(model_tar.relative_to(state.object_store /
                                                                   state.bucket))),
            metrics, status=settings.approval_status, customer_metadata={
                TRANSFORM_INPUT_PROPERTY: state.s3_uri(f"{run.key}/evaluate/batch-input")})
        version = package["ModelPackageVersion"]
        unpack_model(model_tar, state.model(settings.group, version))
        target = state.forecasts(settings.group, version)
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(evaluation / "backtest_by_step.csv", target / "backtest_by_step.csv")
        summary["package"] = package
        return f"{settings.group} v{version} ({package['ModelApprovalStatus']})"

    run.step(6, "RegisterModel", register)
    (run.logs / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    shutil.rmtree(run.work, ignore_errors=True)
    return summary


def by_step(model_tar: Path, dataset: Path, evaluation: Path) -> str:
    """Backtest errors per horizon step on the test split, next to evaluation.json."""
    import tarfile
    import tempfile

    from informer.data.csv import read_csv
    from informer.files import atomic_write_text
    from informer.forecast import Forecaster

    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(model_tar) as tar:
            tar.extractall(tmp, filter="data")
        forecaster = Forecaster.from_artifact(tmp)
        csv = next(dataset.glob("*.csv"))
        result = forecaster.backtest(read_csv(csv))
    atomic_write_text(evaluation / "backtest_by_step.csv", result.by_step.to_csv(index=False))
    return f"test mse {result.metrics['mse']:.4f} over {int(result.metrics['windows'])} windows"


def unpack_model(model_tar: Path, target: Path) -> Path:
    """The artifact of ``model.tar.gz`` at ``target`` (for ``informer-eval``/``-forecast``)."""
    import tempfile

    from informer.files import replace_path
    from mlops.local.client import safe_extract

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as tmp:
        safe_extract(model_tar, Path(tmp) / "model")
        replace_path(Path(tmp) / "model", target)
    return target

