"""Shared pieces of the console scripts: the config directory and user-error reporting."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from informer.errors import InformerError


def config_dir() -> str:
    """``conf/``: packaged inside ``informer/`` in a wheel, at the repository root in a checkout."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"informer: no conf/ directory next to {here}")


def compose_conf(config_name: str | None, overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/<config_name>`` composed with ``overrides`` (Hydra's compose API, no run dir)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def alias_argv(aliases: dict[str, str]) -> None:
    """Rewrite ``key=value`` command-line overrides whose key Hydra would read as a config group
    (``model=<artifact dir>`` -> ``model_path=<artifact dir>``)."""
    for i, arg in enumerate(sys.argv[1:], start=1):
        key, sep, value = arg.partition("=")
        if sep and key in aliases:
            sys.argv[i] = f"{aliases[key]}={value}"


def check_overrides(config_name: str, argv: list[str] | None = None) -> None:
    """Compose ``config_name`` with the command line's overrides first, so that an unknown key
    or group gets one ``error:`` line and exit 2 instead of Hydra's report (sweeps with ``-m``
    are left to Hydra)."""
    from hydra.errors import HydraException

    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-m", "--multirun") or not a or a[0] == "-" for a in args):
        return
    overrides = [a for a in args if not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    try:
        compose_conf(config_name, overrides)
    except (HydraException, OmegaConfBaseException) as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        cause = err.__cause__
        reason = str(cause).strip().splitlines()[0] if cause and str(cause).strip() else ""
        message = " ".join(x for x in (lines[0] if lines else repr(err), reason) if x)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


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
