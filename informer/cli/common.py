"""Shared pieces of the console scripts: the config directory and user-error reporting."""

from __future__ import annotations

import difflib
import logging
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from informer.errors import InformerError

# Known third-party noise on every run, never actionable by the user of this library.
NOISY_WARNINGS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # lightning's _pytree
                  r".*_pytree.*deprecated")
NOISY_LOG_PREFIXES = ("💡 Tip:",)  # Lightning's litlogger advertisement
NOISY_LOGGERS = ("lightning.fabric.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(NOISY_LOG_PREFIXES)


def quiet_console() -> None:
    """Filter known third-party noise (Lightning's litlogger tip, the ``_pytree`` deprecation
    warning) at a console script's entry; idempotent. Everything else still shows."""
    for pattern in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in NOISY_LOGGERS:
        log = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in log.filters):
            log.addFilter(_DropNoise())


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


def _close(word: str, options: Sequence[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``options``, else ``""``."""
    match = difflib.get_close_matches(word, [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _keys_at(config_name: str | None, overrides: Sequence[str], parent: str) -> list[str]:
    """The keys of node ``parent`` ("" for the root) of the composed config (with the other
    overrides when they compose, else without)."""
    from omegaconf import OmegaConf

    for attempt in (list(overrides), []):
        try:
            cfg = compose_conf(config_name, attempt)
        except Exception:  # noqa: BLE001 - another bad override: try without them
            continue
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return [str(k) for k in node] if isinstance(node, DictConfig) else []
    return []


def override_error(config_name: str | None, overrides: Sequence[str]) -> str | None:
    """``None`` when ``overrides`` compose with ``conf/<config_name>``, else the one-line reason,
    with "did you mean" where a config option or key is close to the one given."""
    from hydra.errors import HydraException, MissingConfigException

    try:
        compose_conf(config_name, overrides)
    except MissingConfigException as err:
        found = re.search(r"Could not find '([^']+)/([^']+)'", str(err))
        if found and err.options:
            group, name = found.groups()
            listed = (f"one of {err.options}" if len(err.options) <= 8 else
                      f"one of the {len(err.options)} files in {config_dir()}/{group}")
            return (f"{group}={name}: no such option in conf/{group}"
                    f"{_close(name, err.options) or f'; expected {listed}'}")
        return _first_line(err)
    except (HydraException, OmegaConfBaseException) as err:
        found = re.search(r"Could not override '([^']+)'", str(err))
        if not found:
            return _first_line(err)
        key = found.group(1)
        parent, _, leaf = key.rpartition(".")
        others = [o for o in overrides if o.lstrip("+~").partition("=")[0] != key]
        hint = _close(leaf, _keys_at(config_name, others, parent))
        where = f"'{parent}'" if parent else "the config"
        return (f"{key}: {where} has no key {leaf!r}"
                f"{hint or f' (use +{key}=... to add one)'}")
    return None


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    cause = err.__cause__
    reason = str(cause).strip().splitlines()[0] if cause and str(cause).strip() else ""
    return " ".join(x for x in (lines[0] if lines else repr(err), reason) if x)


def check_overrides(config_name: str, argv: list[str] | None = None) -> None:
    """Compose ``config_name`` with the command line's overrides first, so that an unknown key
    or group gets one ``error:`` line (with "did you mean" where one is close) and exit 2
    instead of Hydra's report (sweeps with ``-m`` are left to Hydra). Also quiets known
    third-party noise (:func:`quiet_console`): every Hydra console script calls this first."""
    quiet_console()  # the first step of every Hydra console script
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-m", "--multirun") or not a or a[0] == "-" for a in args):
        return
    overrides = [a for a in args if not a.lstrip("+~").startswith(("hydra.", "hydra/"))]
    message = override_error(config_name, overrides)
    if message is not None:
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
    """Report bad input as one ``error: ...`` line on stderr and exit 2 (no traceback); so is
    an operating-system error about a named file (unwritable, missing, full disk)."""
    try:
        yield
    except OSError as err:
        if err.filename is None:
            raise
        print(f"error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        sys.exit(2)
    except (InformerError, InstantiationException, OmegaConfBaseException) as err:
        cause = _user_error(err)
        if cause is None:
            raise
        message = str(cause).strip().splitlines()[0] if str(cause).strip() else repr(cause)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
