"""The EventBridge rule that hands an approval to the Lambda, read from the template.

``ApprovalRule``'s ``EventPattern`` in ``mlops/infra/template.yaml`` (its ``!Ref`` to the group
parameter resolved to the group), matched against an event with EventBridge's semantics as moto
emulates them: the local loop invokes the Lambda for exactly the events AWS would.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from mlops.inline import TEMPLATE

APPROVAL_RULE = "ApprovalRule"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (``!Ref X`` as ``{"Ref": "X"}``)."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        return {name: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {name: loader.construct_sequence(node, deep=True)}
    return {name: loader.construct_mapping(node, deep=True)}


_CfnLoader.add_multi_constructor("!", _tag)


def _substitute(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in refs:
            return refs[value["Ref"]]
        return {k: _substitute(v, refs) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, refs) for v in value]
    return value


def approval_pattern(group: str) -> dict[str, Any]:
    """The approval rule's pattern for the model package group ``group``."""
    loader = _CfnLoader(TEMPLATE.read_text())  # a SafeLoader: plain data and the tags above
    try:
        template = loader.get_single_data()
    finally:
        loader.dispose()
    pattern = template["Resources"][APPROVAL_RULE]["Properties"]["EventPattern"]
    return _substitute(pattern, {"ModelPackageGroupName": group})


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    """Whether EventBridge would deliver ``event`` to a rule with ``pattern``."""
    from moto.events.models import EventPattern

    return EventPattern.load(json.dumps(pattern)).matches_event(event)
