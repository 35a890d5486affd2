"""SageMaker hyperparameters (``--key value`` arguments, ``SM_HPS``) as Hydra overrides.

``--experiment etth1_M_24 --trainer.max_epochs 3`` becomes
``experiment=etth1_M_24 trainer.max_epochs=3``. A key is a config group (``experiment``,
``model``...), a top-level key (``seed``...) or a dotted path into the config
(``model.net.d_model``); ``+key`` adds a key, ``++key`` adds or overrides. Anything else is refused
with the list of valid names before any work starts.

Shell-safe spelling: SageMaker SDK v3's container driver exports every hyperparameter as
``SM_HP_<KEY>`` in a shell file sourced under ``set -e``, so a key with ``.`` or ``+`` (or a
value with ``'``) stops the job before the entry point runs. The launchers therefore send
``trainer__max_epochs`` for ``trainer.max_epochs``, ``add__<key>`` for ``+<key>`` and
``force__<key>`` for ``++<key>`` (:func:`encode_key`); the entry point accepts both spellings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from informer.cli.common import compose_conf, config_dir
from informer.errors import InformerError, first_line
from informer.upgrade import upgrade_override

_KEY = re.compile(r"^(\+{0,2})([A-Za-z_][A-Za-z0-9_\-]*)((?:[./][A-Za-z0-9_\-]+)*)$")
# Hydra's own group, and keys SageMaker adds to hyperparameters.json for its own use.
_HIDDEN_GROUPS = {"hydra"}
_SAGEMAKER_PREFIX = "sagemaker_"


_PREFIXES = (("force__", "++"), ("add__", "+"))
_SHELL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def encode_key(key: str) -> str:
    """The shell-safe hyperparameter name of an override key (``a.b`` -> ``a__b``)."""
    for word, plus in _PREFIXES:
        if key.startswith(plus):
            return word + encode_key(key[len(plus):])
    return key.replace(".", "__")


def decode_key(key: str) -> str:
    """The override key of a hyperparameter name (``a__b`` -> ``a.b``); dotted keys pass."""
    for word, plus in _PREFIXES:
        if key.startswith(word):
            return plus + decode_key(key[len(word):])
    return key.replace("__", ".")


def shell_safe(key: str, value: str) -> tuple[str, str]:
    """``(encoded key, value)`` for SageMaker; refuses what its driver cannot export."""
    encoded = encode_key(key)
    if not _SHELL_KEY.match(encoded):
        raise InformerError(f"{key}: cannot be sent as a SageMaker hyperparameter; expected "
                            f"letters, digits, '_', '-', '.' and a leading '+' or '++'")
    if decode_key(encoded) != key:  # "__" or "_." in the key: the spelling would not round-trip
        raise InformerError(f"{key}: cannot be sent as a SageMaker hyperparameter; its "
                            f"shell-safe spelling {encoded!r} reads back as "
                            f"{decode_key(encoded)!r} (expected no '__' and no '_' before a '.')")
    if "'" in value:
        raise InformerError(f"{key}: the value contains a single quote, which SageMaker's "
                            f"container driver cannot pass; use double quotes")
    if "\0" in value or not _is_utf8(value):
        raise InformerError(f"{key}: the value is not UTF-8 text without NUL characters, which "
                            f"SageMaker's container driver cannot pass")
    return encoded, value


def _is_utf8(value: str) -> bool:
    """False for lone surrogates (a JSON escape such as \\ud800), which no file can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_cli(argv: Sequence[str], options: Iterable[str] = ()) -> tuple[dict[str, str],
                                                                         list[tuple[str, str]]]:
    """``(adapter options, [(key, value), ...])`` from ``--key value`` / ``--key=value`` tokens.

    Keys in ``options`` (e.g. ``channel``) are the adapter's own settings, not config overrides.
    """
    options = set(options)
    found: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or len(token) == 2:
            raise InformerError(f"hyperparameters: expected --key value pairs, got {token!r}")
        key, sep, value = token[2:].partition("=")
        if not sep:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise InformerError(f"hyperparameter --{key}: expected a value after it")
            value = tokens[i + 1]
            i += 1
        i += 1
        if key in options:
            found[key] = value
        elif not key.startswith(_SAGEMAKER_PREFIX):
            pairs.append((decode_key(key), value))
    return found, pairs


def from_sm_hps(text: str | None, options: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(key, value)`` pairs from the ``SM_HPS`` JSON object (non-strings JSON-encoded)."""
    if not text:
        return []
    try:
        hps = json.loads(text)
    except json.JSONDecodeError as err:
        raise InformerError(f"SM_HPS: expected a JSON object ({err})") from err
    if not isinstance(hps, dict):
        raise InformerError(f"SM_HPS: expected a JSON object, got {type(hps).__name__}")
    options = set(options)
    return [(decode_key(str(k)), v if isinstance(v, str) else json.dumps(v))
            for k, v in hps.items()
            if k not in options and not str(k).startswith(_SAGEMAKER_PREFIX)]


def merge(*sources: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Later sources win key by key; the order of first appearance is kept."""
    merged: dict[str, str] = {}
    for source in sources:
        for key, value in source:
            merged[key] = value
    return list(merged.items())


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


def _groups() -> list[str]:
    return sorted(p.name for p in Path(config_dir()).iterdir()
                  if p.is_dir() and p.name not in _HIDDEN_GROUPS and not p.name.startswith("."))


def _value(key: str, value: str) -> str:
    """``value`` as Hydra override text: kept when Hydra parses it as one value, else quoted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_override(f"x={value}")
    except HydraException:
        parsed = None
    if parsed is not None and not parsed.is_sweep_override():
        return value
    if parsed is not None and "," in value and not value.strip().startswith(("[", "{")):
        raise InformerError(f"hyperparameter --{key}: expected one value, got the sweep "
                            f"{value!r}; a job trains one configuration")
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def to_overrides(pairs: Sequence[tuple[str, str]], config_name: str = "train") -> list[str]:
    """Hydra override strings for ``pairs``; unknown groups, keys or options are refused."""
    base = compose_conf(config_name, [])
    groups = [g for g in _groups() if g in _listed_groups(config_name)]
    top_keys = sorted(k for k in base if k not in groups and k not in _HIDDEN_GROUPS)
    valid = groups + top_keys
    overrides = []
    for key, value in pairs:
        key = upgrade_override(key)  # 0.1's model.d_model is model.net.d_model
        match = _KEY.match(key)
        if not match or match.group(2) not in valid:
            raise InformerError(
                f"hyperparameter --{key}: unknown key; expected a config group {groups}, a "
                f"top-level key {top_keys} or a dotted path such as --trainer.max_epochs")
        plus, head, rest = match.groups()
        if not plus and not rest and head in groups:
            options = _options(head)
            if value not in options:  # Hydra refuses null for a group on the command line
                raise InformerError(f"hyperparameter --{key}: unknown {head} {value!r}; "
                                    f"expected one of {options}")
        overrides.append(f"{key}={_value(key, value)}")
    return overrides


def _listed_groups(config_name: str) -> set[str]:
    """Groups named in the entry config's defaults list (``experiment`` even when null)."""
    text = (Path(config_dir()) / f"{config_name}.yaml").read_text()
    return set(re.findall(r"^\s*-\s*(?:override\s+)?/?([A-Za-z_]+)\s*:", text, re.M))


def _explain(config_name: str, overrides: list[str], err: Exception) -> InformerError:
    """A one-line reason for a failed composition, naming the key and the valid choices."""
    groups_only = [o for o in overrides if "." not in o.split("=", 1)[0].lstrip("+")]
    try:
        base = compose_conf(config_name, groups_only)
    except Exception:  # noqa: BLE001 - fall back to Hydra's own first line
        base = None
    tree = OmegaConf.to_container(base, resolve=False) if base is not None else None
    for override in overrides:
        key = override.split("=", 1)[0]
        if tree is None or key.startswith("+") or "." not in key:
            continue
        parts = key.split(".")
        node: Any = tree
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                parent = ".".join(parts[:depth]) or "the config"
                keys = sorted(node) if isinstance(node, dict) else []
                return InformerError(f"hyperparameter --{key}: {parent} has no key {part!r}; "
                                     f"expected one of {keys} (use --+{key} to add a key)")
            node = node[part]
    return InformerError(f"hyperparameters: {first_line(err)}")


def compose_config(overrides: list[str], config_name: str = "train") -> DictConfig:
    """The composed config (Hydra compose API); composition errors become one-line errors."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = compose_conf(config_name, overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as err:  # Hydra raises some
        raise _explain(config_name, overrides, err) from err                # as ValueError
    return cfg
