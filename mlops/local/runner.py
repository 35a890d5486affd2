"""``informer-mlops local run``: execute a SageMaker Pipeline definition on this machine.

The definition is the JSON ``informer-mlops pipeline definition`` prints and ``pipeline
upsert`` sends, built by the same code (:mod:`mlops.local.build`), or a saved one
(``definition=<file>``). Its steps run as SageMaker runs them: parameters resolved, steps in the
order their references impose, processing and training jobs in ``/opt/ml``-shaped trees with
the entry points their requests name (:mod:`mlops.local.jobs`), the property file read by the
conditions' ``JsonGet``, the register step into the local registry, a fail step's message as the
execution's failure. Only the control plane is emulated. Progress is printed live, the training
step's epochs too (its metric definitions' lines).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from informer.errors import InformerError
from mlops.local.definition import ordered, parameters
from mlops.local.execution import Execution, StepFailed
from mlops.local.state import StateDir
from mlops.local.steps import STEP_RUNNERS

__all__ = ["RUN_KEYS", "RunSettings", "StepFailed", "run_pipeline", "settings_from"]

RUN_KEYS = ("data", "experiment", "group", "mse_threshold", "require_skill", "approval_status",
            "definition")
# parameters of the pipeline the run settings give (``make_parameters``)
SETTING_PARAMETERS = {"experiment": "Experiment", "mse_threshold": "MseThreshold",
                      "require_skill": "RequireSkill", "approval_status": "ModelApprovalStatus"}


@dataclass
class RunSettings:
    """One execution: the data, and the pipeline's parameters (``explicit``: the settings the
    user gave, the only ones a saved definition's defaults yield to)."""

    data: Path
    experiment: str = "quickstart"
    overrides: list[str] = field(default_factory=list)
    group: str = "informer-models"
    prefix: str = "informer"
    data_prefix: str = "data/"
    mse_threshold: float = 1.0
    require_skill: bool = True  # skill > 0 against the better naive baseline to register
    approval_status: str = "PendingManualApproval"
    definition: Path | None = None
    explicit: set[str] | None = None  # None: every setting

    def parameter_values(self) -> dict[str, Any]:
        return {param: getattr(self, key) for key, param in SETTING_PARAMETERS.items()
                if self.explicit is None or key in self.explicit}



def _default_data() -> Path:
    return Path(os.environ.get("INFORMER_DATA_DIR", "data")) / "ETTh1.csv"


def settings_from(tokens: list[str]) -> RunSettings:
    """``key=value`` tokens: run settings (``data``, ``experiment``, ``group``,
    ``mse_threshold``, ``require_skill``, ``approval_status``, ``definition``: a saved pipeline
    definition to execute) and, for the rest, training overrides."""
    from informer.cli.common import override_error
    from informer.upgrade import upgrade_overrides
    from mlops.config import load_config

    pipeline = load_config([])
    values: dict[str, str] = {}
    overrides = []
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep:
            raise InformerError(f"{token!r}: expected key=value")
        (values.__setitem__(key, value) if key in RUN_KEYS else overrides.append(token))
    params = pipeline["parameters"]
    try:
        threshold = float(values.get("mse_threshold", params["mse_threshold"]))
    except ValueError as err:
        raise InformerError(f"mse_threshold: expected a number, got "
                        f"{values['mse_threshold']!r}") from err
    if threshold <= 0:
        raise InformerError(f"mse_threshold: expected a positive number, got {threshold}")
    require = str(values.get("require_skill", params.get("require_skill", True))).lower()
    if require not in ("true", "false"):
        raise InformerError(f"require_skill: expected true or false, got "
                        f"{values['require_skill']!r}")
    from mlops.local.registry import check_status

    status = values.get("approval_status", params["approval_status"])
    check_status(status)
    experiment = values.get("experiment", "quickstart")
    problem = override_error("train", [f"experiment={experiment}",
                                       *upgrade_overrides(overrides)])
    if problem:  # before any step runs, with "did you mean" where a name is close
        raise InformerError(problem)
    return RunSettings(
        data=Path(values.get("data") or _default_data()).expanduser().resolve(),
        experiment=experiment, overrides=overrides,
        group=values.get("group", pipeline["model_package_group"]),
        prefix=pipeline["base_job_prefix"], data_prefix=pipeline["data_prefix"],
        mse_threshold=threshold, require_skill=require == "true", approval_status=status,
        definition=Path(values["definition"]).expanduser() if values.get("definition") else None,
        explicit=set(values) if values.get("definition") else None)


def content_version(path: Path) -> str:
    """The input's content identity (``InputDataVersion``): a digest of the file's bytes."""
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_pipeline(state: StateDir, settings: RunSettings, out: TextIO = sys.stdout
                 ) -> dict[str, Any]:
    """Execute the definition; returns the execution summary (``logs/<id>/summary.json``)."""
    from mlops.local.build import definition_for, local_config, save_definition
    from mlops.local.definition import load_definition
    from mlops.local.fields import check_definition

    if not settings.data.is_file():
        raise InformerError(f"data: {settings.data} not found; expected a CSV file")
    if settings.definition is not None:
        if settings.overrides:
            raise InformerError(f"{settings.overrides[0]}: a saved definition fixes the "
                                f"training job; build a new one with the override instead")
        definition = load_definition(settings.definition)
    else:
        cfg = local_config(state, settings.group, settings.prefix, settings.data_prefix,
                           settings.overrides)
        out.write("pipeline definition ... ")
        out.flush()
        definition, reused = definition_for(cfg, state)
        out.write("reused (same config and source)\n" if reused else "built\n")
    check_definition(definition)
    values = settings.parameter_values()
    values["InputDataVersion"] = content_version(settings.data)
    params = parameters(definition, values)
    raw = f"s3://{params['InputDataBucket']}/{params['InputDataPrefix'].strip('/')}/" \
          f"{settings.data.name}"
    state.s3_path(raw).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(settings.data, state.s3_path(raw))
    run = Execution(state, definition, params, out, STEP_RUNNERS)
    save_definition(definition, run.logs / "definition.json")
    out.write(f"execution {run.id} (logs: {run.logs})\n")
    run.summary["input"] = raw
    try:
        run.run_steps(ordered(definition["Steps"]), "Steps")
    finally:
        (run.logs / "summary.json").write_text(json.dumps(run.summary, indent=2, default=str))
        shutil.rmtree(run.work, ignore_errors=True)
    return run.summary
