"""The same method and preset, trained on the kept planes of a thinned stack: the axial check's sub-run.

:func:`isoapp.quality.axial.axial_check` withholds every other recorded plane and asks for a
restoration of the rest at twice the factor; :func:`thin_restorer` gives it one that trains the
method exactly as the real run does (preset, training overrides, parameters, seed, device, the
user's PSF), with the stack's degradation model at factor ``2F`` (the blur and noise are
physical and do not change with the plane spacing). Nothing of the withheld planes reaches it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..physics.degradation import Degradation
from ..training.config import RunConfig
from ..training.context import RunContext
from ..training.events import Event, EventCallback, PreviewEvent, ProgressEvent, StageEvent
from .base import build_config, get_method

log = logging.getLogger(__name__)


AXIAL_STAGE = "axial check"


def check_events(emit: EventCallback) -> EventCallback:
    """Relay the sub-run's events as the check's own: its progress under the stage ``axial check`` without
    losses (its loss curve and its previews are not the run's, so a viewer does not mix them in). Its
    training steps carry ``extra["training"]``: they are a large part of the run's time (see
    :func:`isoapp.gui.estimate.is_training_step`)."""

    def relay(ev: Event) -> None:
        if isinstance(ev, ProgressEvent):  # a training step still says so: the run's clock counts it
            emit(replace(ev, stage=AXIAL_STAGE, loss=None, val_loss=None,
                         extra={**ev.extra, "training": ev.loss is not None}))
        elif isinstance(ev, StageEvent):
            emit(StageEvent(AXIAL_STAGE, f"axial check: {ev.description or ev.stage}"))
        elif not isinstance(ev, PreviewEvent):
            emit(ev)

    return relay


def thin_restorer(method: str, config: RunConfig, psf: np.ndarray | None, degradation: Degradation | None,
                  ctx: RunContext, params: dict[str, Any] | None = None) -> Callable[[np.ndarray, float], np.ndarray]:
    """``restore_thin(kept, factor)``: train ``method`` as ``config`` says on ``kept`` at ``factor``, restore it."""

    def restore_thin(kept: np.ndarray, factor: float) -> np.ndarray:
        cls = get_method(method)
        c = config
        ratio = factor / c.factor
        vs = (c.voxel_size[0] * ratio, c.voxel_size[1], c.voxel_size[2])
        deg = degradation.model_copy(update={"factor": factor}) if degradation is not None else None
        cfg = build_config(method, preset=c.preset, factor=factor, voxel_size=vs, psf=c.psf.model_dump(),
                           train=c.train_overrides, params=c.params if params is None else params, seed=c.seed,
                           device=c.device, input_name=c.input_name, input_shape=tuple(kept.shape),
                           degradation=deg.model_dump() if deg is not None else None)
        m = cls(cfg, psf=psf if cls.uses_psf else None, degradation=deg)
        sub = RunContext(device=ctx.device, amp=ctx.amp, seed=c.seed, emit=check_events(ctx.emit),
                         should_stop=ctx.should_stop)
        if m.trainable:
            log.info("axial check: training %s on %d kept planes at factor %g", method, kept.shape[0], factor)
            m.fit(kept, sub)
        m.fitted = True
        restore_thin.method = m  # the axial check asks it for its own model's planes (Method.model_planes)
        return m.predict(kept, sub)

    return restore_thin
