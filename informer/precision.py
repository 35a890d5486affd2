"""Numeric precision choice: ``auto`` picks bf16 autocast where the hardware runs it fast.

On CPUs with AMX (or AVX512-BF16) and on CUDA GPUs with bf16 support, bf16 autocast is several
times faster than fp32 with test metrics within 1% (docs/benchmarks.md); elsewhere bf16 is
emulated and slower, so ``auto`` stays at fp32. Pure torch: used by the inference path too.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

from informer.errors import InformerError

PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "64-true")


@cache
def cpu_has_fast_bf16() -> bool:
    """True where the CPU has AMX tiles or AVX512-BF16 instructions."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        if probe is not None and probe():
            return True
    except RuntimeError:  # pragma: no cover - depends on the torch build
        pass
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str | int, device_type: str = "cpu",
                      field: str = "precision") -> str:
    """``auto`` -> ``bf16-mixed`` or ``32-true`` for ``device_type``; other values unchanged.
    An unknown value is an error naming ``field`` (the setting it came from)."""
    precision = str(precision)
    if precision not in PRECISIONS:
        raise InformerError(f"{field}: expected one of {list(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device_type == "cuda":
        fast = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    else:
        fast = device_type == "cpu" and cpu_has_fast_bf16()
    return "bf16-mixed" if fast else "32-true"


def uses_bf16(precision: str | int, device_type: str = "cpu") -> bool:
    """Whether inference at ``precision`` runs under bf16 autocast on ``device_type``."""
    return resolve_precision(precision, device_type).startswith("bf16")


def trainer_device_type(accelerator: str | None) -> str:
    """The torch device type a Lightning ``accelerator`` setting trains on."""
    if accelerator in ("gpu", "cuda") or (accelerator in (None, "auto")
                                          and torch.cuda.is_available()):
        return "cuda"
    return "cpu"
