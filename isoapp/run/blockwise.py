"""Restore a stack larger than memory straight to disk, block by block, resumable, locally or on Dask.

:func:`restore_blockwise` plans the blocks (:mod:`isoapp.run.blocks`), fixes the statistics every
block shares (the normaliser per channel from a bounded sample, the output conversion), creates
the output store in the work folder, runs the blocks in this process or on a Dask cluster
(:mod:`isoapp.run.cluster`), and finally adds the OME-Zarr pyramid and moves the output into
place. Killed or cancelled runs leave the store and the manifest of finished blocks behind;
``resume=True`` continues them.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError, OutputError
from ..core.memory import release_freed_memory
from ..core.volume import Volume
from ..data.io.convert import restoration_conversion
from ..data.io.lazy import bounded
from ..data.io.registry import blockwise_formats, describe_blockwise
from ..data.io.sinks import SinkSpec
from ..training.events import StageEvent
from .blocks import (
    DEFAULT_CHUNK,
    BlockGeometry,
    BlockRun,
    Manifest,
    block_memory_bytes,
    block_work,
    check_resume,
    choose_block,
    model_digest,
    plan_blocks,
    run_local,
    signature_of,
)

log = logging.getLogger(__name__)


@dataclass
class BlockwiseResult:
    """The written output and what the block-wise run did."""

    path: Path
    shape: tuple[int, ...]
    voxel_size: tuple[float, float, float]
    run: BlockRun
    info: dict[str, Any] = field(default_factory=dict)


def _leads(volume: Volume) -> list[tuple[int, ...]]:
    return list(np.ndindex(*volume.shape[:-3])) if volume.axes != "ZYX" else [()]


def _channel_of(lead: tuple[int, ...]) -> int:
    return int(lead[-1]) if lead else 0


def _zyx(volume: Volume, lead: tuple[int, ...]) -> Volume:
    if not lead:
        return volume
    return volume.channel(lead[-1], lead[0] if len(lead) == 2 else 0)


#: the estimated memory (isoapp.run.blocks.block_memory_bytes) blocks may use when the user gives no
#: --block-size (per process; less where less is free). Measured on 512 x 2048 x 2048 at F 4 (IsoNet
#: fast, 2 cores): 512 MiB picks 256^3 blocks, 1.43 GB peak RSS at 0.90 Mvoxel/s; 1 GiB picked
#: 768 x 256 x 256, 2.96 GB at 0.93 Mvoxel/s (freed memory, up to 1 GiB, stays with the process:
#: isoapp.core.memory.keep_freed_memory). The run's target is 2 GB of RSS whatever the stack.
BLOCK_BUDGET_BYTES = 2**29


def block_budget(workers: int = 1) -> int:
    """Bytes one block may use: ``BLOCK_BUDGET_BYTES``, or half the available memory if that is less."""
    from ..core.memory import available_bytes

    return int(min(BLOCK_BUDGET_BYTES, 0.5 * available_bytes()) // max(1, workers))


def check_block_memory(block: tuple[int, int, int], factor: float, geom: BlockGeometry, workers: int = 1) -> None:
    """Refuse a block size whose working memory (times the local workers) exceeds the available RAM."""
    from ..core.memory import available_bytes

    need = block_memory_bytes(block, factor, geom) * max(1, workers)
    avail = available_bytes()
    if need > 0.8 * avail:
        side = block[1]
        while side > 64 and block_memory_bytes((block[0], side, side), factor, geom) * max(1, workers) > 0.5 * avail:
            side //= 2
        raise ConfigError(f"blocks of {block[0]} x {block[1]} x {block[2]} output voxels need about "
                          f"{need / 2**30:.1f} GiB{' on ' + str(workers) + ' workers' if workers > 1 else ''} but "
                          f"{avail / 2**30:.1f} GiB is available; use --block-size {block[0]} {side} {side}"
                          + (" or fewer --workers" if workers > 1 else ""))


def merged_geometry(geoms: list[BlockGeometry]) -> BlockGeometry:
    """One geometry for the models of all channels: the largest halos, a common alignment, and
    plane-wise only if every model is (the block chooser's memory and work estimates depend on it)."""
    return BlockGeometry(max(g.halo_z for g in geoms), max(g.halo_yx for g in geoms),
                         int(np.lcm.reduce([g.align for g in geoms])), planewise=all(g.planewise for g in geoms))


def restore_blockwise(restorer: Any, volume: Volume, output: str | Path, *, dtype: str = "float32",
                      fmt: str | None = None, block: tuple[int, int, int] | None = None,
                      chunk: tuple[int, int, int] | None = None, work_dir: str | Path | None = None,
                      resume: bool = False, workers: int | None = None, scheduler: str | None = None,
                      pyramid: bool | int = True, keep_work_dir: bool = False) -> BlockwiseResult:
    """Restore ``volume`` (lazy) into ``output`` block by block with the Restorer's model(s).

    Parameters
    ----------
    restorer
        A fitted or loaded :class:`isoapp.run.restorer.Restorer`.
    volume
        The stack (lazy arrays are read block by block; nothing reads it whole).
    output
        ``.zarr`` (OME-Zarr with a pyramid), ``.tif`` (ImageJ) or ``.ome.tif`` (BigTIFF).
    dtype
        ``float32`` or ``uint16``/``uint8`` (integer inputs are clipped, float inputs mapped from
        the sampled input range; see :func:`isoapp.data.io.convert.restoration_conversion`).
    block, chunk
        Block and chunk edges in output voxels (z, y, x); blocks are multiples of chunks.
    work_dir
        Where the unfinished output and the manifest live (default ``OUTPUT.isoapp-blocks``
        beside the output, removed after success).
    resume
        Continue the interrupted run in ``work_dir`` without recomputing its finished blocks.
    pyramid
        Add halved OME-Zarr levels down to 256 px laterally (an int: down to that size; False: none).
    workers, scheduler
        Run the blocks on a local Dask cluster of ``workers`` processes, or on the cluster at
        ``scheduler`` (both need the input in a file every worker can read).
    """
    from ..data.io import output_format

    out = Path(output).expanduser().absolute()
    fmt = fmt or output_format(out)
    if fmt not in blockwise_formats():
        raise ConfigError(f"{out.name}: block-wise output is written to {describe_blockwise()}, not {fmt}; "
                          "choose one of those extensions")
    client = None
    if scheduler or workers:
        from .cluster import connect

        client = connect(scheduler=scheduler, workers=workers)  # an unreachable scheduler fails here
    try:
        return _run(restorer, volume, out, fmt, dtype, block, chunk, work_dir, resume, client, pyramid,
                    keep_work_dir, workers or 1)
    finally:
        if client is not None:
            from .cluster import close

            close(client)


def _run(restorer, volume, out, fmt, dtype, block, chunk, work_dir, resume, client, pyramid, keep_work_dir,
         n_workers) -> BlockwiseResult:
    if restorer.factor is None:
        restorer.resolve(volume)
    F = restorer.factor
    leads = _leads(volume)
    n_ch = volume.n_channels
    methods = {lead: restorer.method_for(_channel_of(lead), n_ch) for lead in leads}
    geoms = {lead: m.block_geometry() for lead, m in methods.items()}
    for lead, g in geoms.items():
        if g is None:
            m = methods[lead]
            from ..methods.base import block_methods

            able = block_methods()
            raise ConfigError(f"{m.label or m.name} cannot restore block by block (it has whole-volume steps); "
                              f"restore this stack with {', '.join(able[:-1])} or {able[-1]}, or crop it to fit "
                              "in memory")
    geom = merged_geometry(list(geoms.values()))
    n_proc = n_workers if client is not None and n_workers > 1 else 1
    out_zyx = methods[leads[0]].output_shape(volume.spatial_shape)
    if block is None:
        block = choose_block(out_zyx, F, geom, block_budget(n_proc), chunk or DEFAULT_CHUNK)
        log.info("blocks of %d x %d x %d output voxels (from %.2f GiB of memory per block): %.2f voxels computed "
                 "per output voxel", *block, block_budget(n_proc) / 2**30, block_work(block, F, geom, out_zyx))
    block = tuple(block)
    check_block_memory(block, F, geom, n_proc)
    blocks, chunks = plan_blocks(volume.spatial_shape, F, geom, block, chunk or DEFAULT_CHUNK,
                                 volume.shape[:-3] if volume.axes != "ZYX" else ())
    restorer.ctx.send(StageEvent("blocks", f"statistics of {volume.name} from a bounded sample"))
    norms = {lead: restorer.normalizer(_zyx(volume, lead)) for lead in leads}
    conv = restoration_conversion(volume, dtype, seed=restorer.seed)
    m0 = methods[leads[0]]
    out_shape = volume.shape[:-3] + m0.output_shape(volume.spatial_shape)
    voxel = m0.output_voxel_size(volume.voxel_size)

    default_wd = work_dir is None
    wd = Path(work_dir).expanduser().absolute() if work_dir else out.parent / f"{out.name}.isoapp-blocks"
    manifest = Manifest(wd)
    partial = wd / ("partial.zarr" if fmt == "ome-zarr" else "partial.tif")
    attrs = {"method": m0.name, "factor": F, "source": str(volume.path or ""), "rescale": conv.describe()}
    sink = SinkSpec(fmt, str(partial), tuple(out_shape), volume.axes, conv.dtype, tuple(chunks) if len(out_shape) == 3
                    else (1,) * (len(out_shape) - 3) + tuple(chunks), tuple(voxel), f"{volume.name}_{m0.name}", attrs)
    src = volume.path
    sig = signature_of(input=str(src or volume.name), input_size=src.stat().st_size if src and src.is_file() else None,
                       input_mtime=src.stat().st_mtime if src and src.is_file() else None, shape=volume.shape,
                       factor=F, models=sorted({model_digest(m) for m in methods.values()}),
                       norms={str(k): v.to_dict() for k, v in norms.items()}, block=block, chunks=chunks,
                       n_blocks=len(blocks), format=fmt, dtype=conv.dtype, conversion=conv.describe(),
                       output=str(out))
    done = check_resume(manifest, sig, resume)
    if done and not (partial.exists()):
        log.warning("the unfinished output %s is gone; starting from the first block", partial)
        done = set()
    if not done:
        if partial.exists():
            shutil.rmtree(partial) if partial.is_dir() else partial.unlink()
        wd.mkdir(parents=True, exist_ok=True)
        sink.create()
        manifest.start(sig)
    elif done:
        log.info("resuming: %d of %d blocks are done and will not be recomputed", len(done), len(blocks))
    # what the fit freed (its region, the checks' restorations: up to 1 GiB kept for reuse) is not the blocks'
    # buffers: handed back here, the blocks start from the model and the app (IsoNet in the GUI on the 4 GiB
    # stack: 2.10 GB peak in the blocks without it)
    release_freed_memory()
    restorer.ctx.send(StageEvent("blocks", f"restoring {volume.name} in {len(blocks)} blocks"
                                 + (f" ({len(done)} done before)" if done else "")))
    t0 = time.perf_counter()
    if client is None:
        sources: dict[tuple, Any] = {}

        def source(lead: tuple) -> Any:
            if lead not in sources:
                sources[lead] = bounded(_zyx(volume, lead).data)
            return sources[lead]

        run = run_local(blocks, methods, source, norms, sink, conv, manifest, done, restorer.ctx)
    else:
        from .cluster import run_distributed

        if volume.path is None:
            raise ConfigError("a Dask run reads the input on every worker: give it as a file, not an array")
        run = run_distributed(client, blocks, methods, volume, norms, sink, conv, manifest, done, restorer.ctx)
    restorer.predict_seconds += time.perf_counter() - t0
    restorer.ctx.send(StageEvent("blocks", "writing the pyramid" if fmt == "ome-zarr" and pyramid else "finishing"))
    path = sink.finalize(out, pyramid=bool(pyramid),
                         pyramid_min_size=pyramid if not isinstance(pyramid, bool) else 256)
    if default_wd and not keep_work_dir:
        shutil.rmtree(wd, ignore_errors=True)
    elif not keep_work_dir:
        for p in (manifest.plan_path, manifest.done_path):
            p.unlink(missing_ok=True)
    if not path.exists():
        raise OutputError(f"the output {path} was not written")
    log.info("%s: %d blocks (%d computed, %d resumed) in %.1f s", path.name, run.total, run.computed, run.skipped,
             run.seconds)
    return BlockwiseResult(path, tuple(out_shape), tuple(voxel), run,
                           {**restorer.info(), "blocks": run.as_dict(), "rescale": conv.describe()})
