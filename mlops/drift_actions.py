"""What follows the scores of :mod:`mlops.drift`: the drift rule's decision, and the request of
the next forecast (the approved version's transform from the new end of the data).

Standard library only, and without ``from __future__``: the drift Lambda's inline code is
mlops/drift.py, this file and mlops/drift_function.py one after the other (where the import
below fails and the names are already defined).

The rule (``drift:`` in conf/pipeline/default.yaml; the template's ``Drift*`` parameters): over
the ``window`` most recent scored origins of the version that serves (its latest approved
version), ``mse`` fires when the realized scaled MSE exceeds ``k`` times the MSE the version
was registered with, ``skill`` when the realized skill against the better naive baseline is
below ``min_skill``, ``mse_or_skill`` on either. Once it fired for a window, it fires again for
the same version only over a window of origins all after that one.
"""

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# in the package; in the Lambda's inline code mlops/drift.py precedes this file and the import
# fails with its names already defined
with contextlib.suppress(ImportError):
    from mlops.drift import BASELINES, DriftError, Series, parse_time, stamp

RULES = ("mse", "skill", "mse_or_skill")
NAME_LIMIT = 63  # SageMaker model and job names: ^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}
# the fields of the approval's transform job that the next forecast's job repeats
REQUEST_FIELDS = ("ModelName", "BatchStrategy", "MaxPayloadInMB", "MaxConcurrentTransforms",
                  "TransformInput", "TransformOutput", "TransformResources", "Environment",
                  "DataProcessing", "Tags")
# a transform job that ended in these states is started again under the next attempt's name
# (``-r<n>``), as the approval Lambda retries its own; MAX_ATTEMPTS as there
RETRYABLE = ("Failed", "Stopped")
MAX_ATTEMPTS = 10


@dataclass(frozen=True)
class DriftRule:
    """``window`` (N origins), ``k``, ``rule`` (one of :data:`RULES`), ``min_skill``."""

    window: int = 5
    k: float = 2.0
    rule: str = "mse"
    min_skill: float = 0.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "drift") -> "DriftRule":
        """From ``{window, k, rule, min_skill}`` (strings accepted, missing ones default);
        :class:`DriftError` naming the field otherwise."""
        default = cls()
        try:
            window = int(str(values.get("window", default.window)))
        except ValueError:
            window = 0
        if window < 1:
            raise DriftError(f"{where}.window: expected an integer >= 1, got "
                             f"{values.get('window')!r}")
        numbers = {}
        for name in ("k", "min_skill"):
            raw = values.get(name, getattr(default, name))
            try:
                numbers[name] = float(raw)
            except (TypeError, ValueError):
                numbers[name] = math.nan
            if not math.isfinite(numbers[name]) or (name == "k" and numbers[name] <= 0):
                kind = "a positive number" if name == "k" else "a number"
                raise DriftError(f"{where}.{name}: expected {kind}, got {raw!r}")
        rule = str(values.get("rule", default.rule))
        if rule not in RULES:
            raise DriftError(f"{where}.rule: expected one of {list(RULES)}, got {rule!r}")
        return cls(window, numbers["k"], rule, numbers["min_skill"])


@dataclass
class Decision:
    """``fire``; ``reason`` (one line); ``figures``: the window's realized MSE, the evaluation
    MSE, their ratio, the skill, the origins and the rule's settings."""

    fire: bool
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)


def window_figures(rows: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Realized MSE (pooled over the values of ``rows``, step-0 score rows) and the skill
    against the better naive baseline, defined where every row has that baseline."""
    values = sum(r["values"] for r in rows)
    mse = sum(r["mse"] * r["values"] for r in rows) / values
    figures: dict[str, Any] = {"realized_mse": mse, "skill": None, "best_baseline": None}
    baseline_mse = {b: sum(r[f"mse_{b}"] * r["values"] for r in rows) / values for b in BASELINES
                    if all(r.get(f"mse_{b}") is not None for r in rows)}
    if baseline_mse:
        best = min(baseline_mse, key=baseline_mse.get)
        figures["best_baseline"] = best
        figures["skill"] = 1 - mse / baseline_mse[best] if baseline_mse[best] > 0 else None
    return figures


def decide(rows: Iterable[Mapping[str, Any]], evaluation_mse: float | None, rule: DriftRule,
           fired_through: datetime | None = None) -> Decision:
    """The rule over ``rows`` (one version's step-0 score rows, any order); ``fired_through``:
    the last origin of the window the rule last fired on for this version."""
    scored = sorted((r for r in rows if r["step"] == 0),
                    key=lambda r: parse_time(r["origin"], "origin"))
    settings = {"rule": rule.rule, "window": rule.window, "k": rule.k,
                "min_skill": rule.min_skill, "evaluation_mse": evaluation_mse}
    if len(scored) < rule.window:
        return Decision(False, f"{len(scored)} of {rule.window} origins scored", settings)
    window = scored[-rule.window:]
    first, last = window[0]["origin"], window[-1]["origin"]
    figures = {**settings, **window_figures(window), "origins": [first, last],
               "scored_origins": len(scored)}
    if evaluation_mse:
        figures["ratio"] = figures["realized_mse"] / evaluation_mse
    if fired_through is not None and parse_time(first, "origin") <= fired_through:
        return Decision(False, f"fired on the window up to {fired_through.isoformat()}; waiting "
                               f"for {rule.window} origins after it", figures)
    reasons = []
    if rule.rule in ("mse", "mse_or_skill") and evaluation_mse and \
            figures["realized_mse"] > rule.k * evaluation_mse:
        reasons.append(f"realized MSE {figures['realized_mse']:.4g} > {rule.k:g} x evaluation "
                       f"MSE {evaluation_mse:.4g}")
    skill = figures["skill"]
    if rule.rule in ("skill", "mse_or_skill") and skill is not None and skill < rule.min_skill:
        reasons.append(f"skill {skill:+.3f} against {figures['best_baseline']} < "
                       f"{rule.min_skill:g}")
    where = f"over the {rule.window} origins {first} .. {last}"
    if reasons:
        return Decision(True, f"{' and '.join(reasons)} {where}", figures)
    ratio = figures.get("ratio")
    return Decision(False, f"realized MSE {figures['realized_mse']:.4g}"
                           f"{'' if ratio is None else f' ({ratio:.2f} x evaluation)'}, skill "
                           f"{'n/a' if skill is None else f'{skill:+.3f}'} {where}", figures)


# the next forecast ------------------------------------------------------------------------------
def job_name(group: str, suffix: str) -> str:
    """``<group><suffix>`` as a valid SageMaker name; a long or odd group is cut and given a
    hash (as mlops.lambda_function.resource_name names the approval's jobs)."""
    import hashlib
    import re

    base = re.sub(r"[^A-Za-z0-9-]", "-", group).strip("-") or "model"
    if len(base) + len(suffix) > NAME_LIMIT or base != group:
        digest = hashlib.sha256(group.encode()).hexdigest()[:8]
        keep = NAME_LIMIT - len(suffix) - len(digest) - 1
        base = f"{base[:keep].rstrip('-')}-{digest}"
    return base + suffix


def _attempt(attempt: int) -> str:
    return f"-r{attempt}" if attempt > 1 else ""


def approval_job_name(group: str, version: int, attempt: int = 1) -> str:
    """The transform job the approval Lambda started for the version (its ``attempt``)."""
    return job_name(group, f"-v{version}{_attempt(attempt)}")


def forecast_job_name(group: str, version: int, origin: datetime, attempt: int = 1) -> str:
    """The job forecasting from ``origin`` (one per version and origin; ``-r<n>`` for the
    attempt after a Failed or Stopped one)."""
    return job_name(group, f"-v{version}-o{stamp(origin)}{_attempt(attempt)}")


def plan_next_forecast(describe: Callable[[str], Mapping[str, Any] | None], group: str,
                       version: int, origin: datetime) -> dict[str, Any]:
    """What to do for the version's forecast from ``origin``, given ``describe(job name)``
    (DescribeTransformJob's answer, None when there is no such job); the same on both backends:

    - ``{"action": "exists", "job", "found"}``: an attempt that did not fail is there;
    - ``{"action": "create", "job", "approval"}``: start ``job`` (the first attempt, or the one
      after the attempts that ended Failed or Stopped) repeating ``approval``, the approval's
      latest transform job;
    - ``{"action": "skip", "job", "reason"}``: no approval job to repeat, or every attempt
      failed.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = forecast_job_name(group, version, origin, attempt)
        found = describe(name)
        if found is None:
            break
        if found.get("TransformJobStatus") not in RETRYABLE:
            return {"action": "exists", "job": name, "found": found}
    else:
        return {"action": "skip", "job": name,
                "reason": f"{MAX_ATTEMPTS} attempts ended Failed or Stopped; not retrying again"}
    approval = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        described = describe(approval_job_name(group, version, attempt))
        if described is None:
            break
        approval = described
    if approval is None:
        return {"action": "skip", "job": name,
                "reason": "the version has no approval transform job to repeat"}
    return {"action": "create", "job": name, "approval": approval}


def forecast_input_name(file_name: str, origin: datetime) -> str:
    """``ETTh1-o20161105230000.csv``: the input file of the forecast from ``origin`` (its
    output, ``<name>.out``, lands beside the approval's in the version's forecast prefix)."""
    stem, dot, suffix = file_name.rpartition(".")
    return f"{stem}-o{stamp(origin)}.{suffix}" if dot and stem else \
        f"{file_name}-o{stamp(origin)}"


def latest_rows(series: "Series", rows: int) -> str:
    """The header and the latest ``rows`` rows of the data, as stored (what EvaluateModel
    writes as a version's transform input)."""
    return series.head + "".join(series.lines[-rows:])


def next_forecast_request(approval_job: Mapping[str, Any], name: str, input_uri: str
                          ) -> dict[str, Any]:
    """CreateTransformJob arguments: the approval's job (DescribeTransformJob's fields) under
    ``name``, reading ``input_uri``; same model, environment and output prefix."""
    request = {k: approval_job[k] for k in REQUEST_FIELDS if approval_job.get(k) is not None}
    request["TransformJobName"] = name
    source = dict(request["TransformInput"]["DataSource"]["S3DataSource"])
    source["S3Uri"] = input_uri
    request["TransformInput"] = {**request["TransformInput"],
                                 "DataSource": {"S3DataSource": source}}
    return request
