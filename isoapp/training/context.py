"""The run context handed to every method: device, precision, seed, events and cancellation."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.errors import Cancelled
from .device import amp_dtype, autocast, grad_scaler, resolve_device
from .events import Event, EventCallback, ignore_events


def _never() -> bool:
    return False


@dataclass
class RunContext:
    """Everything a method needs from its caller besides the data.

    Parameters
    ----------
    device
        ``"auto"``, ``"cpu"``, ``"cuda"`` or a torch device.
    amp
        Use mixed precision on CUDA (ignored on the CPU): bfloat16 where the GPU supports it,
        else float16 with a GradScaler per optimiser (:meth:`grad_scaler`).
    seed
        Seeds python, numpy and torch; methods draw from :attr:`rng`.
    emit
        Receives :mod:`isoapp.training.events` objects.
    should_stop
        Polled between steps; when it returns True the work checkpoints and raises
        :class:`isoapp.core.errors.Cancelled`.
    work_dir
        Where checkpoints go; ``None`` disables checkpointing.
    resume
        Continue from the checkpoint in ``work_dir`` if one exists.
    preview_position
        ``(y, x)`` at which live previews show the xz and yz planes (default: the centre).
    heldout
        Lateral planes (z indices) that training must not use: the held-out check restores them.
    """

    device: torch.device | str = "auto"
    amp: bool = True
    seed: int = 0
    emit: EventCallback = ignore_events
    should_stop: Callable[[], bool] = _never
    work_dir: Path | None = None
    resume: bool = False
    preview_position: tuple[int, int] | None = None
    heldout: tuple[int, ...] = ()
    rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        if self.work_dir is not None:
            self.work_dir = Path(self.work_dir)
        self.rng = np.random.default_rng(self.seed)
        seed_everything(self.seed)

    @property
    def use_amp(self) -> bool:
        return bool(self.amp and self.device.type == "cuda")

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype (bfloat16 or float16), or None when training runs in float32."""
        return amp_dtype(self.device, self.use_amp)

    def autocast(self):
        return autocast(self.device, self.use_amp)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A new GradScaler for one optimiser: active on the float16 path only, else a pass-through.

        Use it through :func:`isoapp.training.trainer.optimizer_step` and put it in the training
        loop's ``state`` so that a resumed run continues with the same loss scale.
        """
        return grad_scaler(self.device, self.use_amp)

    def preview_yx(self, ny: int, nx: int) -> tuple[int, int]:
        """The (y, x) where live previews cut the xz and yz planes: the caller's cursor or the centre."""
        if self.preview_position is None:
            return ny // 2, nx // 2
        y, x = self.preview_position
        return min(max(int(y), 0), ny - 1), min(max(int(x), 0), nx - 1)

    def send(self, event: Event) -> None:
        self.emit(event)

    def check_stop(self) -> None:
        """Raise :class:`Cancelled` if the caller asked to stop."""
        if self.should_stop():
            raise Cancelled("stopped on request")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
