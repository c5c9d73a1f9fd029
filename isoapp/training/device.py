"""Device selection and mixed precision."""

from __future__ import annotations

import contextlib
import logging

import torch

from ..core.errors import ConfigError

log = logging.getLogger(__name__)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` into a :class:`torch.device`.

    ``auto`` picks CUDA when available, else the CPU.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use --device auto or cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        idx = device.index or 0
        props = torch.cuda.get_device_properties(idx)
        return f"cuda:{idx} ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    return f"cpu ({torch.get_num_threads()} threads)"


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` (CUDA) computes bfloat16 natively: compute capability 8.0+ (Ampere on), or ROCm.

    ``torch.cuda.is_bf16_supported()`` also says yes on older GPUs that only emulate bfloat16
    (slowly), and asks about the current device rather than ``device``; this does neither.
    """
    if torch.version.hip:
        return True
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def amp_dtype(device: torch.device, enabled: bool = True) -> torch.dtype | None:
    """The autocast dtype: bfloat16 on GPUs that support it, else float16; None on the CPU or when disabled.

    bfloat16 has float32's exponent range and needs no loss scaling; float16 does (see
    :func:`grad_scaler`).
    """
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if bf16_supported(device) else torch.float16


def autocast(device: torch.device, enabled: bool = True):
    """Mixed-precision context: :func:`amp_dtype` autocast on CUDA, a no-op on the CPU."""
    dtype = amp_dtype(device, enabled)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=dtype)


def needs_grad_scaler(device: torch.device, enabled: bool = True) -> bool:
    """True on the float16 path, where small gradients underflow unless the loss is scaled."""
    return amp_dtype(device, enabled) == torch.float16


def grad_scaler(device: torch.device, enabled: bool = True) -> torch.amp.GradScaler:
    """A GradScaler for one optimiser: active on the float16 path, a pass-through otherwise.

    A disabled scaler's ``scale(loss)`` returns ``loss`` unchanged and ``step(opt)`` just calls
    ``opt.step()``, so the CPU and bfloat16 paths compute exactly what they did without it.
    """
    return torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(device, enabled))


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a host tensor to ``device``; to CUDA through pinned (page-locked) memory, asynchronously.

    The copy is queued on the current stream, so kernels that use the result run after it while
    the host goes on preparing the next batch. The caching host allocator keeps the pinned buffer
    alive until the copy has finished. On the CPU this is ``t.to(device)`` (no copy).
    """
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)
