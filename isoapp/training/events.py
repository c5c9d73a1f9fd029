"""Events emitted by long-running work (training, restoration).

The core emits plain dataclasses through a callback; the CLI renders them with tqdm and the
GUI worker relays them as Qt signals. Nothing here knows about either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class StageEvent:
    """A new stage begins (e.g. ``"train"``, ``"restore"``, ``"stage1"``)."""

    stage: str
    description: str = ""


@dataclass(frozen=True)
class ProgressEvent:
    """Progress within a stage. ``loss``/``val_loss`` are None outside training."""

    stage: str
    step: int
    total: int
    loss: float | None = None
    val_loss: float | None = None
    eta_s: float | None = None
    elapsed_s: float = 0.0
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PreviewEvent:
    """Restored planes for a live preview, e.g. ``{"xz": arr2d, "yz": arr2d}``."""

    stage: str
    step: int
    planes: dict[str, np.ndarray]


@dataclass(frozen=True)
class LogEvent:
    level: str
    message: str


Event = StageEvent | ProgressEvent | PreviewEvent | LogEvent
EventCallback = Callable[[Event], None]


def ignore_events(event: Event) -> None:  # noqa: ARG001 - the default sink
    """An event callback that drops everything."""
