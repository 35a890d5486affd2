"""One execution of a pipeline definition (``informer-mlops local run``): its context, the
steps run in order with their properties, conditions and fail steps, and the live progress
lines. The step types' runners (:data:`mlops.local.steps.STEP_RUNNERS`) are handed in."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from informer.errors import InformerError
from mlops.local.definition import Context, DefinitionError, condition, ordered
from mlops.local.jobs import JobFailed
from mlops.local.state import StateDir


class StepFailed(InformerError):
    """A step failed; the message is ``<step>: <one-line reason>``."""


# a step type's runner: (execution, step, resolved arguments, progress) -> (properties, note)
StepRunner = Callable[["Execution", dict[str, Any], dict[str, Any], "Progress"],
                      tuple[dict[str, Any], str]]


class Execution:
    """One execution of a definition: its context, its steps' properties, its progress."""

    def __init__(self, state: StateDir, definition: dict[str, Any], params: dict[str, Any],
                 out: TextIO, runners: Mapping[str, StepRunner]) -> None:
        self.state, self.definition, self.out, self.runners = state, definition, out, runners
        self.id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.logs = state.logs / self.id
        self.logs.mkdir(parents=True, exist_ok=True)
        self.work = state.root / "work" / self.id
        name = "informer-local"
        self.ctx = Context(params, {
            "PipelineExecutionId": self.id, "PipelineName": name,
            "PipelineExecutionArn": f"arn:aws:sagemaker:local:000000000000:pipeline/{name}/"
                                    f"execution/{self.id}", "CurrentDateTime": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            read_property_file=self.property_file)
        self.steps: dict[str, dict[str, Any]] = {}
        self.total = sum(1 for _ in self._all(definition["Steps"]))
        self.done = 0
        self.summary: dict[str, Any] = {"execution": self.id}

    def _all(self, steps: list[dict[str, Any]]):
        for step in steps:
            self.steps[step["Name"]] = step
            if step.get("Type") != "Fail":
                yield step
            args = step.get("Arguments") or {}
            if step.get("Type") == "Condition":
                yield from self._all((args.get("IfSteps") or []) + (args.get("ElseSteps") or []))

    def property_file(self, step: str, name: str) -> Any:
        """The JSON of ``step``'s property file ``name``, read from its output."""
        from mlops.local.definition import walk

        where = f"Steps[{step}].PropertyFiles[{name}]"
        specs = [p for p in self.steps[step].get("PropertyFiles") or []
                 if p.get("PropertyFileName") == name]
        if not specs:
            raise DefinitionError(f"{where}: step {step} declares no property file {name!r}")
        outputs = self.ctx.properties[step]["ProcessingOutputConfig"]["Outputs"]
        output = walk(outputs, [specs[0]["OutputName"]], f"{where}.OutputName",
                      f"the outputs of {step}")
        path = self.state.s3_path(output["S3Output"]["S3Uri"].rstrip("/")) / \
            specs[0]["FilePath"]
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise DefinitionError(f"{where}.FilePath: {specs[0]['FilePath']!r} is not a JSON "
                                  f"file in output {specs[0]['OutputName']!r}") from err

    def run_steps(self, steps: list[dict[str, Any]], where: str) -> None:
        for step in steps:
            self.run_step(step, f"{where}[{step['Name']}]")

    def run_step(self, step: dict[str, Any], where: str) -> None:
        name, kind = step["Name"], step["Type"]
        if kind == "Fail":
            message = self._resolve(step.get("Arguments", {}).get("ErrorMessage", ""),
                                    f"{where}.Arguments.ErrorMessage", name)
            self.out.write(f"[-] {name} ... failed\n")
            self.summary["failed"] = {"step": name, "message": message}
            raise StepFailed(f"{name}: {message}")
        self.done += 1
        label = f"[{self.done}/{self.total}] {name}"
        self.out.write(f"{label} ... ")
        self.out.flush()
        start, progress = time.perf_counter(), Progress(self.out, label)
        try:
            if kind == "Condition":
                outcome = self._condition(step, where)
                branch = (step.get("Arguments") or {}).get("IfSteps" if outcome else "ElseSteps")
                note = f"{str(outcome).lower()}: next " + (
                    ", ".join(s["Name"] for s in branch or []) or "nothing")
            else:
                args = self._resolve(step.get("Arguments") or {}, f"{where}.Arguments", name)
                properties, note = self.runners[kind](self, step, args, progress)
                self.ctx.properties[name] = properties
                self._summarize(step)
        except (InformerError, JobFailed) as err:
            progress.end(f"failed ({time.perf_counter() - start:.1f} s)")
            self.summary["failed"] = {"step": name, "message": str(err)}
            raise StepFailed(f"{name}: {err}") from err
        progress.end(f"ok ({time.perf_counter() - start:.1f} s){' - ' + note if note else ''}")
        if kind == "Condition":
            args = step.get("Arguments") or {}
            branch = "IfSteps" if outcome else "ElseSteps"
            self.run_steps(ordered(args.get(branch) or [], f"{where}.{branch}"),
                           f"{where}.Arguments.{branch}")

    def _summarize(self, step: dict[str, Any]) -> None:
        """The evaluation's MSE and skill in the summary, from the step's property files."""
        from mlops.pipeline import MSE_PATH, SKILL_PATH

        for spec in step.get("PropertyFiles") or []:
            try:
                report = self.property_file(step["Name"], spec["PropertyFileName"])
            except DefinitionError:
                continue  # the step that reads it fails, as on AWS
            for key, path in (("mse", MSE_PATH), ("skill", SKILL_PATH)):
                value: Any = report
                for part in path.split("."):
                    value = value.get(part) if isinstance(value, dict) else None
                self.summary[key] = value

    def _resolve(self, value: Any, where: str, step: str) -> Any:
        from mlops.local.definition import resolve

        return resolve(value, self.ctx, where)

    def _condition(self, step: dict[str, Any], where: str) -> bool:
        conditions = (step.get("Arguments") or {}).get("Conditions") or []
        self.ctx.properties[step["Name"]] = {}
        outcome = all(condition(c, self.ctx, f"{where}.Arguments.Conditions[{i}]")
                      for i, c in enumerate(conditions))
        self.ctx.properties[step["Name"]] = {"Outcome": outcome}
        return outcome


class Progress:
    """A step's progress line; live lines (the epochs) below it, then the outcome."""

    def __init__(self, out: TextIO, label: str) -> None:
        self.out, self.label, self.live = out, label, False

    def line(self, text: str) -> None:
        self.out.write(("" if self.live else "\n") + f"    {text}\n")
        self.out.flush()
        self.live = True

    def end(self, text: str) -> None:
        self.out.write((f"{self.label} ... " if self.live else "") + text + "\n")
        self.out.flush()
