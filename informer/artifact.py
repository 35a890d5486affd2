"""The model artifact: a directory every later stage loads, with nothing but torch + stdlib.

Layout: ``weights.pt`` (a plain state dict, loaded with ``weights_only=True``), ``config.json``
(network config, data schema, resolved run config, library version) and ``manifest.json``
(sha256 of each file).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from informer.config import InformerConfig
from informer.data.sources import sha256_file
from informer.errors import InformerError, first_line
from informer.files import replace_path
from informer.nn.model import Informer
from informer.schema import DataSchema

FORMAT_VERSION = 1
WEIGHTS, CONFIG, MANIFEST = "weights.pt", "config.json", "manifest.json"


@dataclass
class LoadedModel:
    """A ready (eval-mode) network with the data contract it was trained on."""

    net: Informer
    schema: DataSchema
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> InformerConfig:
        return self.net.config


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def save_artifact(directory: str | Path, net: Informer, schema: DataSchema,
                  run_config: dict | None = None) -> Path:
    """Write the artifact to ``directory`` atomically (built in a temp dir, then renamed)."""
    from informer import __version__

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        torch.save(state, tmp / WEIGHTS)
        _write_json(tmp / CONFIG, {
            "format_version": FORMAT_VERSION, "library_version": __version__,
            "model": net.config.to_dict(), "data": schema.to_dict(), "run": run_config or {},
        })
        _write_json(tmp / MANIFEST, {
            "format_version": FORMAT_VERSION, "library_version": __version__,
            "files": {name: sha256_file(tmp / name) for name in (WEIGHTS, CONFIG)},
        })
        replace_path(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def _read_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise InformerError(f"{path}: missing; expected a model artifact directory "
                            f"({WEIGHTS}, {CONFIG}, {MANIFEST})") from err
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise InformerError(f"{path}: not valid JSON ({first_line(err)})") from err
    if not isinstance(payload, dict):
        raise InformerError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload


def verify_artifact(directory: str | Path) -> dict:
    """Check the manifest's version and sha256 of every file; returns the parsed config."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InformerError(f"{directory}: not a model artifact directory")
    manifest = _read_json(directory / MANIFEST)
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InformerError(f"{directory / MANIFEST}: format_version: expected a positive "
                            f"integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise InformerError(f"{directory / MANIFEST}: artifact format {version!r} is newer than "
                            f"this library reads ({FORMAT_VERSION}); upgrade informer-mlops")
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != {WEIGHTS, CONFIG}:
        raise InformerError(f"{directory / MANIFEST}: expected entries for {WEIGHTS} and {CONFIG}")
    for name, digest in files.items():
        path = directory / name
        if not path.is_file():
            raise InformerError(f"{path}: missing; the manifest lists it")
        if sha256_file(path) != digest:
            raise InformerError(f"{path}: sha256 does not match {MANIFEST}; the artifact was "
                                f"modified or corrupted")
    config = _read_json(directory / CONFIG)
    for key in ("model", "data"):
        if not isinstance(config.get(key), dict):
            raise InformerError(f"{directory / CONFIG}: expected a {key!r} object")
    return config


def upgrade_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights saved before the value embedding's conv had a bias get a zero one: the same
    function, in the current layout (keys may carry a prefix, as a checkpoint's ``net.``)."""
    suffix = "value_embedding.token_conv.weight"
    if not isinstance(state, dict):
        return state
    for key in [k for k in state if isinstance(k, str) and k.endswith(suffix)]:
        bias = key[: -len("weight")] + "bias"
        if bias not in state and isinstance(state[key], torch.Tensor):
            state[bias] = state[key].new_zeros(state[key].shape[0])
    return state


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load an artifact directory: verified, weights-only, eval mode."""
    config = verify_artifact(path)
    # artifacts written before decoder_selection existed were trained with causal selection
    net = Informer(InformerConfig.from_dict({"decoder_selection": "causal", **config["model"]}))
    try:  # weights_only: tensors and plain containers, never arbitrary objects
        state = torch.load(Path(path) / WEIGHTS, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - a refused or broken file is bad input, not a bug
        reason = ("it holds objects other than tensors and plain containers; refused unread"
                  if type(err).__name__ == "UnpicklingError"  # pickle's, raised by torch
                  else f"{type(err).__name__}: {first_line(err)[:200]}")
        raise InformerError(f"{Path(path) / WEIGHTS}: not a loadable tensor state dict "
                            f"({reason})") from err
    try:
        net.load_state_dict(upgrade_state_dict(state))
    except (RuntimeError, TypeError, AttributeError) as err:
        raise InformerError(f"{Path(path) / WEIGHTS}: weights do not fit the stored config "
                            f"({first_line(err)})") from err
    net.to(map_location).eval()
    info = {k: config.get(k) for k in ("format_version", "library_version", "run")}
    return LoadedModel(net=net, schema=DataSchema.from_dict(config["data"]), info=info)
