"""The single entry point for restoration, used by the CLI, ``demo``, ``bench`` and the GUI.

:func:`restore` validates the input, resolves the anisotropy factor and the PSF, trains (or
loads) the chosen method channel by channel, and returns a calibrated :class:`Volume` on the
output grid: plane ``k`` lies at input plane position ``k / F`` and z is sampled at ``dz / F``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.memory import peak_cuda_bytes, peak_rss_bytes
from ..core.volume import Volume
from ..methods.base import Method
from ..training.config import PSFSpec
from ..training.events import EventCallback, ignore_events
from .restorer import Restorer

log = logging.getLogger(__name__)



@dataclass
class RestoreResult:
    """The restored volume and what it took to make it."""

    volume: Volume
    methods: list[Method]
    train_seconds: float = 0.0
    restore_seconds: float = 0.0
    peak_rss_bytes: int = 0
    peak_cuda_bytes: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    residual: Any = None  # the data-consistency residual (noise sigmas, input grid) when asked for

    @property
    def method(self) -> Method:
        return self.methods[0]


def restore(
    volume: Volume,
    method: str | None = None,
    *,
    preset: str = "fast",
    factor: float | None = None,
    voxel_size: Sequence[float] | None = None,
    psf: PSFSpec | dict | None = None,
    steps: int | None = None,
    device: str = "auto",
    seed: int = 0,
    params: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    model_dir: str | Path | None = None,
    save_model: str | Path | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    emit: EventCallback = ignore_events,
    should_stop: Callable[[], bool] | None = None,
    preview_position: tuple[int, int] | None = None,
    trust_torchscript: bool = False,
    check: str | None = None,
    residual_map: bool = False,
) -> RestoreResult:
    """Restore isotropic resolution of ``volume``.

    Parameters
    ----------
    volume
        ZYX, CZYX or TCZYX stack; every channel/time point is restored separately.
    method
        A registered method name (see :func:`isoapp.methods.available_methods`); default
        :func:`isoapp.methods.default_method` (``auto``), as everywhere.
    preset
        ``fast`` (laptop CPU), ``balanced`` or ``quality`` (GPU).
    factor
        Anisotropy factor; default dz/dxy from the voxel size.
    voxel_size
        ``(z, y, x)`` µm overriding the file's metadata.
    psf
        A :class:`PSFSpec` (or dict) for methods that use a PSF; default ``auto``.
    model_dir
        Restore with a saved model instead of training.
    save_model
        Save the trained model(s) here (``channel_<c>`` sub-folders for multi-channel stacks).
    work_dir
        Checkpoint folder (``resume=True`` continues from it).
    emit, should_stop
        Event callback and cancellation poll (see :class:`RunContext`).
    preview_position
        ``(y, x)`` where live previews cut the xz/yz planes (the GUI's cursor).
    trust_torchscript
        With a bioimage.io package as ``model_dir``: allow running its TorchScript (code, in a
        child process) when isoapp cannot rebuild its network; refused otherwise.
    check
        Self-checks after training: ``both`` (default), ``axial``, ``lateral`` or ``none``
        (see :data:`isoapp.run.restorer.CHECKS`).
    residual_map
        Keep the data-consistency residual of the first channel in ``RestoreResult.residual``.

    Returns
    -------
    RestoreResult
    """
    r = Restorer.open(method, model_dir=model_dir, trust_torchscript=trust_torchscript, preset=preset, factor=factor, voxel_size=voxel_size, psf=psf,
                      steps=steps, device=device, seed=seed, params=params, train=train, work_dir=work_dir,
                      resume=resume, emit=emit, should_stop=should_stop, preview_position=preview_position,
                      residual_map=residual_map, **({"check": check} if check is not None else {}))
    volume = r.validate(volume, load=True)
    if r.ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(r.ctx.device)
    out = r.ensure_fitted(volume, save_model).predict(volume)
    peak_cuda = peak_cuda_bytes(r.ctx.device) or 0
    info = r.info()
    log.info("%s: trained %.1f s, restored %.1f s, output %s", info["method"], r.train_seconds, r.predict_seconds,
             out.shape)
    return RestoreResult(out, [r.methods[c] for c in sorted(r.methods)], r.train_seconds, r.predict_seconds,
                         peak_rss_bytes(), peak_cuda, info, residual=r.residual)
