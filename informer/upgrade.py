"""Upgrade path for the 0.1 layout of the model config, where the network fields, ``lr`` and
``lr_decay`` sat flat in ``model`` (``model.d_model``); since 0.2 they live in ``model.net``,
``model.optimizer`` and ``model.scheduler``.

Old command-line overrides and SageMaker hyperparameters are rewritten key by key
(:func:`upgrade_overrides`); old presets, checkpoints' hyper-parameters and Python calls with
flat keyword arguments are folded by :func:`fold_legacy_fields`. Each rewrite says so once on
stderr.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from informer.config import InformerConfig
from informer.errors import InformerError

NET_FIELDS = frozenset(f.name for f in fields(InformerConfig))
# old key under model -> (new node under model, key in that node)
MOVED = {**{name: ("net", name) for name in NET_FIELDS},
         "lr": ("optimizer", "lr"), "lr_decay": ("scheduler", "decay")}
_OVERRIDE = re.compile(r"^([+~]{0,2})model\.([A-Za-z_]+)(?=$|=)")
_said: set[str] = set()


def _note(message: str) -> None:
    if message not in _said:
        _said.add(message)
        print(f"note: {message}", file=sys.stderr)


def upgrade_override(override: str) -> str:
    """``model.d_model=8`` -> ``model.net.d_model=8`` (also with ``+``/``++``/``~``);
    ``model.lr`` -> ``model.optimizer.lr``, ``model.lr_decay`` -> ``model.scheduler.decay``.
    Anything else is returned unchanged."""
    match = _OVERRIDE.match(override)
    if not match or match.group(2) not in MOVED:
        return override
    prefix, old = match.groups()
    node, key = MOVED[old]
    new = f"model.{node}.{key}"
    _note(f"model.{old} is now {new} (the 0.1 spelling is rewritten)")
    return f"{prefix}{new}{override[match.end():]}"


def upgrade_overrides(overrides: Sequence[str]) -> list[str]:
    return [upgrade_override(o) for o in overrides]


def upgrade_argv() -> None:
    """Rewrite the command line's 0.1 overrides in place, before Hydra reads it."""
    sys.argv[1:] = upgrade_overrides(sys.argv[1:])


def fold_legacy_fields(net: Mapping[str, Any] | None, optimizer: Any, scheduler: Any,
                       legacy: Mapping[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """``(net, optimizer, scheduler)`` with 0.1's flat keyword arguments folded in: network
    fields into ``net``, ``lr`` into the optimizer's config, ``lr_decay`` into the schedule's.
    A flat field wins over the nested one (it was set later, by an old preset on top)."""
    unknown = sorted(set(legacy) - set(MOVED))
    if unknown:
        raise InformerError(f"model: unknown field(s) {unknown}; expected net, optimizer, "
                            f"scheduler, schema or (0.1 spelling) some of {sorted(MOVED)}")
    net = dict(net or {})
    parts: dict[str, Any] = {"optimizer": optimizer, "scheduler": scheduler}
    if legacy:
        _note(f"model: {len(legacy)} field(s) in the 0.1 layout ({', '.join(sorted(legacy)[:3])}"
              f"{', ...' if len(legacy) > 3 else ''}) read as model.net.<field>, "
              "model.optimizer.lr and model.scheduler.decay")
    for old, value in legacy.items():
        node, key = MOVED[old]
        if node == "net":
            net[key] = value
        elif isinstance(parts[node], Mapping):
            parts[node] = {**parts[node], key: value}
        else:
            raise InformerError(f"model.{old}: cannot be applied to a {node} given as an "
                                f"object; set it in model.{node} instead")
    return net, parts["optimizer"], parts["scheduler"]
