"""Settings of the MLOps commands: the composed ``conf/pipeline`` config, the subcommand
helper both CLIs build on, and a scoped change of environment variables."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from informer.errors import InformerError


def load_config(overrides: Sequence[str]) -> dict[str, Any]:
    """``conf/pipeline`` (option ``default`` unless ``pipeline=<option>``) with ``overrides``
    (``key=value`` is read as ``pipeline.key=value``), resolved to plain Python."""
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from informer.cli.common import compose_conf

    group, rest = "default", []
    for item in overrides:
        match = re.match(r"^([+~]*)(?:pipeline\.)?([^=]+)=(.*)$", item, re.S)
        if not match:
            raise InformerError(f"{item!r}: expected key=value")
        lead, key, value = match.groups()
        if key == "pipeline":
            group = value
        else:
            rest.append(f"{lead}pipeline.{key}={value}")
    try:
        cfg = compose_conf(None, [f"+pipeline={group}", *rest])
        settings = OmegaConf.to_container(cfg.pipeline, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise InformerError(str(err).strip().splitlines()[0]) from err
    check_bucket(settings.get("bucket"))
    return settings


# S3's rules for a general purpose bucket's name (no IP-address form, no "xn--" prefix)
BUCKET_NAME = re.compile(r"^(?!xn--)(?!\d+\.\d+\.\d+\.\d+$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_bucket(bucket: str | None) -> None:
    """Refuse a bucket name that S3 would refuse, before anything is built or uploaded."""
    if bucket is not None and (not BUCKET_NAME.match(str(bucket)) or ".." in str(bucket)):
        raise InformerError(
            f"bucket={bucket}: expected an S3 bucket name: 3-63 characters, lowercase letters, "
            "digits, dots and hyphens, starting and ending with a letter or digit")


def command(sub: Any, name: str, text: str, handler: Callable[..., None],
            config: bool = True) -> argparse.ArgumentParser:
    """A subcommand calling ``handler(args, cfg)``; ``config``: it takes conf/pipeline
    overrides (``cfg`` is then the composed ``pipeline`` config, else ``{}``)."""
    p = sub.add_parser(name, help=text, description=text)
    if config:
        p.add_argument("overrides", nargs="*", metavar="key=value",
                       help="override of conf/pipeline (pipeline.key=value or key=value)")
    p.set_defaults(handler=handler, config=config)
    return p



@contextmanager
def environment(values: Mapping[str, str], remove: Sequence[str] = ()) -> Iterator[None]:
    """``os.environ`` with ``values`` set and ``remove`` unset, restored afterwards."""
    saved = dict(os.environ)
    os.environ.update(values)
    for name in remove:
        os.environ.pop(name, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
