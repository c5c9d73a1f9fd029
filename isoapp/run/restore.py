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
from .blockwise import BlockwiseResult
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


def in_memory_need(volume: Volume, factor: float | None = None, voxel_size: Sequence[float] | None = None) -> int:
    """Bytes an in-memory restoration of ``volume`` takes: the stack, its float32 result and two working copies.

    Above half the free memory, the CLI and the GUI restore block by block into a file instead.
    """
    import math

    from ..physics.forward import output_length
    from .resolve import sizing_factor

    shape = list(volume.shape)
    shape[-3] = output_length(shape[-3], sizing_factor(volume, factor, voxel_size))
    return int(volume.nbytes) + 3 * 4 * int(math.prod(shape))


def fits_in_memory(volume: Volume, factor: float | None = None, voxel_size: Sequence[float] | None = None,
                   limit_bytes: int | None = None) -> bool:
    """Whether :func:`in_memory_need` is within ``limit_bytes`` (default: half the free memory)."""
    from ..core.memory import available_bytes

    limit = limit_bytes if limit_bytes is not None else available_bytes() // 2
    return in_memory_need(volume, factor, voxel_size) <= limit


@dataclass
class FileRestoreResult(BlockwiseResult):
    """A block-wise restoration written to a file (:class:`BlockwiseResult`) and the time and memory it took."""

    train_seconds: float = 0.0
    restore_seconds: float = 0.0
    peak_rss_bytes: int = 0


def restore_to_file(volume: Volume, output: str | Path, method: str | None = None, *, dtype: str = "float32",
                    model_dir: str | Path | None = None, save_model: str | Path | None = None,
                    trust_torchscript: bool = False, block: tuple[int, int, int] | None = None,
                    blocks_dir: str | Path | None = None, workers: int | None = None, scheduler: str | None = None,
                    train_budget_bytes: int | None = None, **options: Any) -> FileRestoreResult:
    """Train on a bounded region of a (lazy) ``volume``, or load ``model_dir``, then restore block by block.

    The block-wise counterpart of :func:`restore`, for stacks larger than memory; the CLI's
    ``--blockwise`` runs and the GUI's large stacks both come here. ``options`` are
    :func:`restore`'s (``preset``, ``factor``, ``work_dir``, ``resume``, ``emit``, ``should_stop``...);
    ``resume`` also skips the blocks a cancelled run finished (their manifest is in ``blocks_dir``,
    default ``work_dir/blocks``). See :func:`isoapp.run.blockwise.restore_blockwise` for the output.
    """
    budget = {"train_budget_bytes": int(train_budget_bytes)} if train_budget_bytes else {}
    r = Restorer.open(method, model_dir=model_dir, trust_torchscript=trust_torchscript, **options, **budget)
    volume = r.validate(volume)
    work = options.get("work_dir")
    if blocks_dir is None and work is not None:
        blocks_dir = Path(work) / "blocks"
    res = r.ensure_fitted(volume, save_model).predict_to(
        volume, output, dtype=dtype, block=block, work_dir=blocks_dir, resume=bool(options.get("resume")),
        workers=workers, scheduler=scheduler, keep_work_dir=True)
    return FileRestoreResult(res.path, tuple(res.shape), tuple(res.voxel_size), res.run, res.info,
                             train_seconds=r.train_seconds, restore_seconds=res.run.seconds,
                             peak_rss_bytes=peak_rss_bytes())
