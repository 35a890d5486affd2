"""The SageMaker training container contract: ``/opt/ml`` paths, the failure file, hosts/GPUs.

Every path comes from, in order: an explicit argument, the ``SM_*`` variable SageMaker sets,
the default under the base directory (``--base-dir``, else ``SAGEMAKER_BASE_DIR``, else
``/opt/ml``), so tests and local rehearsals run in a temporary tree.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from informer.errors import InformerError, first_line
from informer.files import atomic_write_text

DEFAULT_BASE = "/opt/ml"
DEFAULT_CHANNEL = "training"
# Channels SageMaker SDK v3 adds for its own drivers and the uploaded source code.
SDK_CHANNELS = ("code", "sm_drivers")


@dataclass(frozen=True)
class ContainerPaths:
    """Where a training job reads data and writes the model, outputs and checkpoints."""

    base: Path
    channel: str
    data_dir: Path
    model_dir: Path
    output_dir: Path
    output_data_dir: Path
    checkpoint_dir: Path

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @classmethod
    def resolve(cls, options: Mapping[str, str] | None = None,
                env: Mapping[str, str] | None = None) -> ContainerPaths:
        """From ``options`` (``base-dir``, ``channel``, ``data-dir``, ``model-dir``,
        ``output-data-dir``, ``checkpoint-dir``) and the environment."""
        options = dict(options or {})
        env = os.environ if env is None else env
        base = Path(options.get("base-dir") or base_dir(env))
        channel = options.get("channel") or env.get("INFORMER_SM_CHANNEL") or DEFAULT_CHANNEL

        def pick(option: str, var: str | None, default: Path) -> Path:
            value = options.get(option) or (env.get(var) if var else None)
            return Path(value) if value else default

        output_dir = pick("output-dir", "SM_OUTPUT_DIR", base / "output")
        return cls(
            base=base, channel=channel,
            data_dir=pick("data-dir", f"SM_CHANNEL_{channel.upper()}",
                          base / "input" / "data" / channel),
            model_dir=pick("model-dir", "SM_MODEL_DIR", base / "model"),
            output_dir=output_dir,
            output_data_dir=pick("output-data-dir", "SM_OUTPUT_DATA_DIR", output_dir / "data"),
            checkpoint_dir=pick("checkpoint-dir", "INFORMER_SM_CHECKPOINT_DIR",
                                base / "checkpoints"),
        )

    def check_data(self, env: Mapping[str, str] | None = None) -> Path:
        """The channel directory; a clear error when the job has no such channel."""
        if self.data_dir.is_dir():
            return self.data_dir
        env = os.environ if env is None else env
        try:
            channels = [c for c in json.loads(env.get("SM_CHANNELS") or "[]")
                        if c not in SDK_CHANNELS]
        except json.JSONDecodeError:
            channels = []
        present = f"; the job has channels {channels}" if channels else ""
        raise InformerError(
            f"SM_CHANNEL_{self.channel.upper()}: channel {self.channel!r} not found at "
            f"{self.data_dir}{present}; expected the data channel (set --channel or "
            f"INFORMER_SM_CHANNEL to its name)")


def base_dir(env: Mapping[str, str] | None = None) -> Path:
    """The container's ``/opt/ml``, or ``SAGEMAKER_BASE_DIR`` where a local job moved it."""
    env = os.environ if env is None else env
    return Path(env.get("SAGEMAKER_BASE_DIR") or DEFAULT_BASE)


def processing_dir(env: Mapping[str, str] | None = None) -> Path:
    """``/opt/ml/processing`` under :func:`base_dir` (a processing job's inputs and outputs)."""
    return base_dir(env) / "processing"


PATH_OPTIONS = ("base-dir", "channel", "data-dir", "model-dir", "output-dir", "output-data-dir",
                "checkpoint-dir")


def write_failure(path: Path, message: str) -> None:
    """SageMaker shows the first 1 KB of ``/opt/ml/output/failure`` (training) or
    ``/opt/ml/output/message`` (processing) in DescribeJob. Skipped outside a container tree
    (when not even the parent of the file's directory exists)."""
    if not path.parent.parent.is_dir():
        return
    try:
        atomic_write_text(path, message.strip() + "\n")
    except OSError as err:  # never hide the original error behind this one
        print(f"warning: could not write {path}: {err}", file=sys.stderr)


def user_cause(err: BaseException | None) -> BaseException | None:
    """The user-facing error behind ``err`` (bad input or config), following Hydra's
    instantiation chaining; ``None`` for a bug."""
    from hydra.errors import HydraException, InstantiationException
    from omegaconf.errors import OmegaConfBaseException

    while err is not None:
        if isinstance(err, (InformerError, OmegaConfBaseException)):
            return err
        if not isinstance(err, InstantiationException):
            return err if isinstance(err, HydraException) else None
        err = err.__cause__
    return None


@contextmanager
def job_errors(failure_file: Path) -> Iterator[None]:
    """User errors: ``error: <reason>`` on stderr, the reason in ``failure``, exit 2, no
    traceback. Other exceptions: the reason in ``failure``, then the usual traceback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except (InformerError, HydraException, OmegaConfBaseException) as err:
        cause = user_cause(err)
        if cause is None:
            write_failure(failure_file, f"{type(err).__name__}: {first_line(err)}")
            raise
        message = first_line(cause)
        write_failure(failure_file, message)
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        last = traceback.extract_tb(err.__traceback__)[-1:]
        where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
        write_failure(failure_file, f"{type(err).__name__}: {first_line(err)}{where}")
        raise


def processing_main(run: Callable[[Sequence[str]], object], argv: Sequence[str] | None = None
                    ) -> None:
    """Entry of a processing script: ``run(argv)`` under :func:`job_errors`, the reason of a
    failure in ``--message-file`` (default ``/opt/ml/output/message``, whose first 1 KB is
    DescribeProcessingJob's ExitMessage)."""
    import argparse

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--message-file", default=str(base_dir() / "output" / "message"))
    known, _ = parser.parse_known_args(argv)
    with job_errors(Path(known.message_file)):
        run(argv)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(env.get(name) or default)
    except ValueError as err:
        raise InformerError(f"{name}: expected an integer, got {env.get(name)!r}") from err


@dataclass(frozen=True)
class Cluster:
    """Processes of the job: ``num_nodes`` x ``devices``, on GPUs or CPUs."""

    num_nodes: int
    devices: int
    gpus: bool
    torchrun: bool

    @property
    def world_size(self) -> int:
        return self.num_nodes * self.devices


def detect_cluster(env: Mapping[str, str] | None = None) -> Cluster:
    """From torchrun (``WORLD_SIZE``, ``LOCAL_WORLD_SIZE``) or ``SM_HOSTS`` / ``SM_NUM_GPUS``."""
    env = os.environ if env is None else env
    gpus = _int(env, "SM_NUM_GPUS", 0)
    if "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE", 1)
        local = _int(env, "LOCAL_WORLD_SIZE", world)
        return Cluster(max(world // max(local, 1), 1), local, gpus > 0 or _cuda(), True)
    try:
        hosts = json.loads(env.get("SM_HOSTS") or "[]")
    except json.JSONDecodeError as err:
        raise InformerError(f"SM_HOSTS: expected a JSON list of host names ({err})") from err
    return Cluster(max(len(hosts), 1), max(gpus, 1), gpus > 0, False)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def cluster_overrides(cluster: Cluster, user_keys: set[str]) -> list[str]:
    """Trainer overrides for ``cluster``; nothing the user set explicitly is touched."""
    if cluster.world_size == 1 and not cluster.gpus:
        return []
    wanted: list[tuple[str, str]] = []
    if cluster.gpus and "trainer" not in user_keys:
        wanted.append(("trainer", "gpu"))
    wanted += [("trainer.accelerator", "gpu" if cluster.gpus else "cpu"),
               ("trainer.devices", str(cluster.devices)),
               ("++trainer.num_nodes", str(cluster.num_nodes))]
    if cluster.world_size > 1:
        wanted.append(("++trainer.strategy", "ddp"))
    return [f"{k}={v}" for k, v in wanted if k.lstrip("+") not in user_keys]


def rendezvous_env(cluster: Cluster, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``MASTER_ADDR``/``MASTER_PORT``/``NODE_RANK`` for Lightning on several SageMaker hosts
    without torchrun (torchrun sets its own)."""
    env = os.environ if env is None else env
    if cluster.torchrun or cluster.num_nodes == 1:
        return {}
    hosts = sorted(json.loads(env.get("SM_HOSTS") or "[]"))
    current = env.get("SM_CURRENT_HOST", hosts[0])
    rank = env.get("SM_CURRENT_HOST_RANK") or str(hosts.index(current) if current in hosts else 0)
    wanted = {"MASTER_ADDR": env.get("SM_MASTER_ADDR") or hosts[0],
              "MASTER_PORT": str(env.get("SM_MASTER_PORT") or 7777), "NODE_RANK": rank}
    return {k: v for k, v in wanted.items() if k not in env}
