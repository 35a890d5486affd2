"""Shared pieces of the console scripts: the config directory and user-error reporting."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf.errors import OmegaConfBaseException

from informer.errors import InformerError


def config_dir() -> str:
    """``conf/``: packaged inside ``informer/`` in a wheel, at the repository root in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"informer: no conf/ directory next to {here}")


def alias_argv(aliases: dict[str, str]) -> None:
    """Rewrite ``key=value`` command-line overrides whose key Hydra would read as a config group
    (``model=<artifact dir>`` -> ``model_path=<artifact dir>``)."""
    for i, arg in enumerate(sys.argv[1:], start=1):
        key, sep, value = arg.partition("=")
        if sep and key in aliases:
            sys.argv[i] = f"{aliases[key]}={value}"


def _user_error(err: BaseException) -> BaseException | None:
    """The user-facing cause of ``err``, if any, following Hydra's exception chaining."""
    while err is not None:
        if isinstance(err, (InformerError, OmegaConfBaseException)):
            return err
        if not isinstance(err, InstantiationException):
            return None
        err = err.__cause__
    return None


@contextmanager
def user_errors() -> Iterator[None]:
    """Report bad input as one ``error: ...`` line on stderr and exit 2 (no traceback)."""
    try:
        yield
    except (InformerError, InstantiationException, OmegaConfBaseException) as err:
        cause = _user_error(err)
        if cause is None:
            raise
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else repr(cause)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
