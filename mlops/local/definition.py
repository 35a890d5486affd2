"""A SageMaker Pipeline definition (the JSON ``informer-mlops pipeline definition`` prints and
``pipeline upsert`` sends), read as SageMaker reads it: parameters with their defaults and
overrides, the expressions ``Get`` / ``Std:Join`` / ``Std:JsonGet``, conditions, and the order
the steps' references impose.

A field the local backend cannot honour is refused by name before any step runs
(:func:`check_definition`); a reference that cannot be resolved (an output that does not exist,
a ``JsonGet`` path the property file lacks) fails the step that makes it, as on AWS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from informer.errors import InformerError

PARAMETER_TYPES = {"String": str, "Integer": int, "Float": float, "Boolean": bool}
EXPRESSIONS = ("Get", "Std:Join", "Std:JsonGet")
COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b, "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b, "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b}


class DefinitionError(InformerError):
    """The definition asks for something this backend cannot do, or cannot be resolved."""


def is_expression(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in EXPRESSIONS


def load_definition(path: str | Path) -> dict[str, Any]:
    """The definition in ``path`` (JSON), with a one-line error naming what is wrong."""
    path = Path(path)
    try:
        definition = json.loads(path.read_text())
    except OSError as err:
        raise DefinitionError(f"definition: cannot read {path} ({err.strerror})") from err
    except json.JSONDecodeError as err:
        raise DefinitionError(f"definition: {path} is not JSON ({err.msg}, line "
                              f"{err.lineno})") from err
    if not isinstance(definition, dict) or not isinstance(definition.get("Steps"), list):
        raise DefinitionError(f"definition: {path} has no Steps list; expected the JSON of "
                              f"`informer-mlops pipeline definition`")
    return definition


def parameters(definition: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Each parameter's value: the override, else its default, cast to its declared type."""
    values: dict[str, Any] = {}
    declared = {p.get("Name"): p for p in definition.get("Parameters") or []}
    for name in overrides:
        if name not in declared:
            raise DefinitionError(f"Parameters.{name}: the definition declares no such "
                                  f"parameter; it has {sorted(declared)}")
    for name, spec in declared.items():
        kind = PARAMETER_TYPES.get(spec.get("Type"))
        if kind is None:
            raise DefinitionError(f"Parameters.{name}.Type: expected one of "
                                  f"{sorted(PARAMETER_TYPES)}, got {spec.get('Type')!r}")
        if name not in overrides and "DefaultValue" not in spec:
            raise DefinitionError(f"Parameters.{name}: no DefaultValue and no value given")
        value = overrides.get(name, spec.get("DefaultValue"))
        values[name] = _cast(name, kind, value)
    return values


def _cast(name: str, kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise DefinitionError(f"Parameters.{name}: expected a Boolean, got {value!r}")
        return value
    try:
        return kind(value)
    except (TypeError, ValueError) as err:
        raise DefinitionError(f"Parameters.{name}: expected {kind.__name__}, got "
                              f"{value!r}") from err


@dataclass
class Context:
    """What expressions read: parameters, execution variables, finished steps' properties and
    a reader of property files (``(step, property file) -> JSON``)."""

    parameters: dict[str, Any]
    execution: dict[str, str]
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    read_property_file: Callable[[str, str], Any] | None = None


_TOKEN = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")


def path_tokens(path: str, where: str) -> list[str | int]:
    """``a.b['name'][0].c`` as ``["a", "b", "name", 0, "c"]``."""
    tokens: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _TOKEN.match(path, pos)
        if not match or match.end() == pos:
            raise DefinitionError(f"{where}: cannot read the path {path!r} at {path[pos:]!r}")
        name, index, quoted, dquoted = match.groups()
        tokens.append(int(index) if index is not None else name or quoted or dquoted)
        pos = match.end()
    return tokens


def walk(value: Any, tokens: list[str | int], where: str, what: str) -> Any:
    """Follow ``tokens`` into ``value``; a list is indexed by position or by an item's
    ``*Name`` field (``Outputs['dataset']``)."""
    for token in tokens:
        if isinstance(value, list) and isinstance(token, str):
            named = [item for item in value if isinstance(item, dict) and token in
                     [v for k, v in item.items() if k.endswith("Name")]]
            if not named:
                raise DefinitionError(f"{where}: {what} has no {token!r}")
            value = named[0]
        elif (isinstance(value, list) and isinstance(token, int) and
              -len(value) <= token < len(value)) or (isinstance(value, dict) and token in value):
            value = value[token]
        else:
            raise DefinitionError(f"{where}: {what} has no {token!r}")
    return value


def resolve(value: Any, ctx: Context, where: str) -> Any:
    """``value`` with every expression evaluated (recursively)."""
    if isinstance(value, list):
        return [resolve(item, ctx, f"{where}[{i}]") for i, item in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if not is_expression(value):
        return {k: resolve(v, ctx, f"{where}.{k}") for k, v in value.items()}
    kind, body = next(iter(value.items()))
    if kind == "Get":
        return get(body, ctx, where)
    if kind == "Std:Join":
        parts = resolve(body.get("Values") or [], ctx, f"{where}.Std:Join.Values")
        return str(body.get("On", "")).join(_text(p) for p in parts)
    source = body.get("PropertyFile")
    ref = source.get("Get", "") if isinstance(source, dict) else ""
    match = re.fullmatch(r"Steps\.([^.]+)\.PropertyFiles\.(.+)", ref)
    if not match:
        raise DefinitionError(f"{where}.Std:JsonGet.PropertyFile: expected "
                              f"{{'Get': 'Steps.<step>.PropertyFiles.<name>'}}, got {source!r}")
    step, name = match.groups()
    if step not in ctx.properties or ctx.read_property_file is None:
        raise DefinitionError(f"{where}.Std:JsonGet: step {step!r} has not run")
    path = str(body.get("Path", ""))
    return walk(ctx.read_property_file(step, name), path_tokens(path, where), where,
                f"property file {name} of {step} (Std:JsonGet.Path {path!r})")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def get(ref: str, ctx: Context, where: str) -> Any:
    """``Parameters.X``, ``Execution.X`` or ``Steps.<name>.<property path>``."""
    head, _, rest = str(ref).partition(".")
    if head == "Parameters":
        if rest not in ctx.parameters:
            raise DefinitionError(f"{where}: Get {ref!r}: the definition declares no parameter "
                                  f"{rest!r}")
        return ctx.parameters[rest]
    if head == "Execution":
        if rest not in ctx.execution:
            raise DefinitionError(f"{where}: Get {ref!r}: no execution variable {rest!r}; "
                                  f"expected one of {sorted(ctx.execution)}")
        return ctx.execution[rest]
    if head == "Steps":
        step, _, path = rest.partition(".")
        if step not in ctx.properties:
            raise DefinitionError(f"{where}: Get {ref!r}: step {step!r} has not run")
        return walk(ctx.properties[step], path_tokens(path, where), where,
                    f"Get {ref!r}: the properties of step {step}")
    raise DefinitionError(f"{where}: Get {ref!r}: expected Parameters., Execution. or Steps.")


def condition(spec: dict[str, Any], ctx: Context, where: str) -> bool:
    """One condition of a Condition step (comparisons, ``In``, ``Not``, ``Or``)."""
    kind = spec.get("Type")
    if kind in COMPARISONS:
        left = resolve(spec.get("LeftValue"), ctx, f"{where}.LeftValue")
        right = resolve(spec.get("RightValue"), ctx, f"{where}.RightValue")
        try:
            return COMPARISONS[kind](left, right)
        except TypeError as err:
            raise DefinitionError(f"{where}: cannot compare {left!r} with {right!r} "
                                  f"({kind})") from err
    if kind == "In":
        query = resolve(spec.get("QueryValue"), ctx, f"{where}.QueryValue")
        return query in resolve(spec.get("Values") or [], ctx, f"{where}.Values")
    if kind == "Not":
        return not condition(spec.get("Condition") or {}, ctx, f"{where}.Condition")
    if kind == "Or":
        return any(condition(c, ctx, f"{where}.Conditions[{i}]")
                   for i, c in enumerate(spec.get("Conditions") or []))
    raise DefinitionError(f"{where}.Type: the local backend evaluates {sorted(COMPARISONS)}, "
                          f"In, Not and Or conditions, not {kind!r}")


def step_references(value: Any) -> Iterator[str]:
    """Names of the steps whose properties ``value`` reads."""
    if isinstance(value, list):
        for item in value:
            yield from step_references(item)
    elif isinstance(value, dict):
        ref = value.get("Get") if len(value) == 1 else None
        if isinstance(ref, str) and ref.startswith("Steps."):
            yield ref.split(".")[1]
        for item in value.values():
            yield from step_references(item)


def ordered(steps: list[dict[str, Any]], where: str = "Steps") -> list[dict[str, Any]]:
    """``steps`` in an order where each runs after the steps it reads or ``DependsOn``
    (SageMaker's data dependencies); a cycle or an unknown ``DependsOn`` is an error."""
    names = [s.get("Name") for s in steps]
    pending = {s["Name"]: set(step_references(s.get("Arguments"))) |
               set(step_references(s.get("PropertyFiles"))) | set(s.get("DependsOn") or [])
               for s in steps}
    for step in steps:
        for dep in step.get("DependsOn") or []:
            if dep not in names:
                raise DefinitionError(f"{where}[{step['Name']}].DependsOn: no step {dep!r}")
    done: list[dict[str, Any]] = []
    while len(done) < len(steps):
        ready = [s for s in steps if s not in done and not
                 (pending[s["Name"]] & (set(names) - {d["Name"] for d in done}))]
        if not ready:
            raise DefinitionError(f"{where}: the steps depend on each other in a cycle")
        done.append(ready[0])
    return done
