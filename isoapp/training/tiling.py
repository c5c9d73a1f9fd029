"""Tiled inference for plane-wise (2D) and volumetric (3D) networks.

Tiles overlap by at least the network's receptive-field radius (``halo``); each output voxel is
taken from the tile in which it lies farthest from a cut (``blend="crop"``), which makes tiled and
whole-volume predictions agree to floating-point precision. ``blend="linear"`` discards a border cut of
half the halo at each inner tile edge and averages the rest of the overlap with linear ramps (for
GAN generators, where it hides seams, as Park et al.'s border cut and overlap do). Tile origins are multiples
of ``divisor`` so that pooling grids line up with the whole-volume case. On a CUDA
out-of-memory error the tile is halved and the prediction retried. On CUDA, batches go to the GPU
from pinned memory and come back without blocking, so the host places one batch's tiles while the
GPU computes the next.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core.errors import Cancelled
from ..physics.forward import output_length, upsample
from .device import autocast, to_device

log = logging.getLogger(__name__)

NetFn = Callable[[torch.Tensor], torch.Tensor]


def _round_up(n: int, d: int) -> int:
    return -(-n // d) * d


def _axis_tiles(n: int, tile: int, halo: int, divisor: int) -> list[tuple[int, int, int, int]]:
    """Split an axis of length ``n`` into tiles.

    Returns ``(in_start, in_stop, keep_start, keep_stop)``: the input range to feed and the output
    range (absolute) this tile is responsible for.
    """
    if tile >= n:
        return [(0, n, 0, n)]
    core = tile - 2 * halo
    if core < divisor:
        raise ValueError(f"tile {tile} too small for halo {halo}")
    core = max(divisor, core // divisor * divisor)
    out = []
    start = 0
    while start < n:
        stop = min(start + core, n)
        a = max(0, (start - halo) // divisor * divisor)
        b = min(n, stop + halo)
        out.append((a, b, start, stop))
        start = stop
    return out


def _pad_to(x: torch.Tensor, divisor: int, ndim: int) -> tuple[torch.Tensor, list[int]]:
    sizes = list(x.shape[-ndim:])
    target = [_round_up(s, divisor) for s in sizes]
    pad = []
    for s, t in zip(reversed(sizes), reversed(target), strict=True):
        pad += [0, t - s]
    if any(pad):
        mode = "reflect" if all(p < s for p, s in zip(pad[1::2], reversed(sizes), strict=True)) else "replicate"
        x = torch.nn.functional.pad(x, pad, mode=mode)
    return x, sizes


def _ramp(n: int, lo_cut: bool, hi_cut: bool, width: int, cut: int | None = None) -> np.ndarray:
    """Blend weights along one axis: at a cut side, zero over ``cut`` voxels (the border cut, where the
    tile edge contaminates the output; default ``width // 2``), then a linear ramp up to one over the
    rest of ``width``."""
    w = np.ones(n, np.float32)
    width = min(width, n // 2)
    cut = width // 2 if cut is None else min(cut, width - 1)
    ramp = width - cut
    r = np.concatenate([np.zeros(cut, np.float32), (np.arange(ramp, dtype=np.float32) + 1) / (ramp + 1)])
    if width > 0:
        if lo_cut:
            w[:width] = r
        if hi_cut:
            w[-width:] = r[::-1]
    return w


def _predict_tiled(fn: NetFn, arr: np.ndarray, *, ndim: int, tile: Sequence[int], halo: Sequence[int],
                   divisor: int, scale: Sequence[int], batch_voxels: int, device: torch.device, amp: bool,
                   blend: str, border: int | None, should_stop: Callable[[], bool] | None,
                   progress: Callable[[int, int], None] | None) -> np.ndarray:
    lead = arr.shape[:-ndim]
    spatial = arr.shape[-ndim:]
    flat = arr.reshape((-1,) + spatial)
    out_spatial = tuple(int(s * k) for s, k in zip(spatial, scale, strict=True))
    out = np.zeros((flat.shape[0],) + out_spatial, np.float32)
    weight = np.zeros(out_spatial, np.float32) if blend == "linear" else None
    per_axis = [_axis_tiles(n, t, h, divisor) for n, t, h in zip(spatial, tile, halo, strict=True)]
    jobs = list(itertools.product(range(flat.shape[0]), itertools.product(*per_axis)))
    done_weights = set()

    def finish(group: list, y_host: torch.Tensor, sizes: list[int], ready: torch.cuda.Event | None) -> None:
        """Wait for a batch's device-to-host copy, then crop and place (or blend) its tiles."""
        if ready is not None:
            ready.synchronize()
        y = y_host.numpy()
        y = y[(slice(None),) + tuple(slice(0, s * k) for s, k in zip(sizes, scale, strict=True))]
        for j, (k, bx) in enumerate(group):
            if blend == "crop":
                src = tuple(slice((ks - a) * sc, (ke - a) * sc) for (a, _, ks, ke), sc in zip(bx, scale, strict=True))
                dst = tuple(slice(ks * sc, ke * sc) for (_, _, ks, ke), sc in zip(bx, scale, strict=True))
                out[(k,) + dst] = y[(j,) + src]
            else:
                dst = tuple(slice(a * sc, b * sc) for (a, b, _, _), sc in zip(bx, scale, strict=True))
                w = np.ones((), np.float32)
                for ax, ((a, b, _, _), sc) in enumerate(zip(bx, scale, strict=True)):
                    r = _ramp((b - a) * sc, a > 0, b < spatial[ax], halo[ax] * sc,
                              None if border is None else border * sc)
                    w = np.multiply.outer(w, r) if w.ndim else r
                out[(k,) + dst] += y[j] * w
                key = tuple((a, b) for a, b, _, _ in bx)
                if key not in done_weights:
                    weight[dst] += w
                    done_weights.add(key)

    # On CUDA the batches form a two-stage pipeline: batch i's tiles are placed on the host while the
    # GPU computes batch i + 1 (pinned, non-blocking copies both ways); on the CPU each batch is placed
    # as soon as it is computed, as before.
    pending = None
    finished = 0
    i = 0
    while i < len(jobs):
        if should_stop is not None and should_stop():
            raise Cancelled("prediction stopped on request")
        # group jobs of identical input tile shape into one batch
        _, boxes = jobs[i]
        shape = tuple(b - a for a, b, _, _ in boxes)
        vox = int(np.prod(shape))
        n_batch = max(1, batch_voxels // max(vox, 1))
        group = [jobs[i]]
        while len(group) < n_batch and i + len(group) < len(jobs):
            nxt = jobs[i + len(group)]
            if tuple(b - a for a, b, _, _ in nxt[1]) != shape:
                break
            group.append(nxt)
        x = np.stack([flat[(k,) + tuple(slice(a, b) for a, b, _, _ in bx)] for k, bx in group])
        xt = to_device(torch.from_numpy(np.ascontiguousarray(x, np.float32)).unsqueeze(1), device)
        xt, sizes = _pad_to(xt, divisor, ndim)
        with torch.no_grad(), autocast(device, amp):
            yt = fn(xt)
        yt = yt.float()[:, 0]
        i += len(group)
        if device.type == "cuda":
            y_host, ready = yt.to("cpu", non_blocking=True), torch.cuda.Event()  # lands in pinned memory
            ready.record()
            done, pending = pending, (group, y_host, sizes, ready)
        else:
            done = (group, yt.cpu(), sizes, None)
        if done is not None:
            finish(*done)
            finished += len(done[0])
            if progress is not None:
                progress(finished, len(jobs))
    if pending is not None:
        finish(*pending)
        if progress is not None:
            progress(len(jobs), len(jobs))
    if blend == "linear":
        out /= np.maximum(weight, 1e-8)
    return out.reshape(lead + out_spatial)


def predict_tiled(fn: NetFn, arr: np.ndarray, *, ndim: int, tile: int | Sequence[int] | None = None,
                  halo: int | Sequence[int] = 16, divisor: int = 1, scale: int | Sequence[int] = 1,
                  batch_voxels: int | None = None, device: torch.device | str = "cpu", amp: bool = False,
                  blend: str = "crop", border: int | None = None,
                  should_stop: Callable[[], bool] | None = None, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Apply a network to every ``ndim``-D block of ``arr`` in memory-bounded tiles.

    Parameters
    ----------
    fn
        Maps a ``(B, 1, *spatial)`` tensor to ``(B, 1, *spatial*scale)``.
    arr
        ``(..., *spatial)``; leading axes are looped over (e.g. the planes of a stack for 2D nets).
    ndim
        2 for plane-wise networks, 3 for volumetric ones.
    tile
        Tile edge (per axis); ``None`` means whole blocks.
    halo
        Overlap on each side; use at least the receptive-field radius (see :func:`receptive_field`).
    divisor
        Network input sizes must be multiples of it (``2**depth`` for a U-Net); inputs are padded.
    scale
        Integer output/input size ratio per axis for networks that upsample.
    batch_voxels
        Bound on input voxels per forward pass (default 4 Mi on CUDA, 1 Mi on the CPU).
    blend
        ``"crop"`` (exact; default) or ``"linear"``.
    border
        With ``blend="linear"``: voxels discarded at each inner tile edge before the ramp (Park et
        al. used an overlap of 15 with a border cut of 10); default ``halo // 2``.
    """
    device = torch.device(device)
    nd = ndim
    spatial = arr.shape[-nd:]
    tile = tuple(spatial) if tile is None else ((tile,) * nd if isinstance(tile, int) else tuple(tile))
    tile = tuple(min(t, s) for t, s in zip(tile, spatial, strict=True))
    halo = (halo,) * nd if isinstance(halo, int) else tuple(halo)
    scale = (scale,) * nd if isinstance(scale, int) else tuple(int(s) for s in scale)
    if batch_voxels is None:
        batch_voxels = 2**22 if device.type == "cuda" else 2**20
    while True:
        try:
            return _predict_tiled(fn, arr, ndim=nd, tile=tile, halo=halo, divisor=divisor, scale=scale,
                                  batch_voxels=batch_voxels, device=device, amp=amp, blend=blend, border=border,
                                  should_stop=should_stop, progress=progress)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            new = tuple(max(_round_up(2 * h + divisor, divisor), t // 2) for t, h in zip(tile, halo, strict=True))
            if new == tile and batch_voxels <= min(int(np.prod(tile)), 2**12):
                raise
            log.warning("CUDA out of memory with tile %s; retrying with tile %s", tile, new)
            tile, batch_voxels = new, max(batch_voxels // 2, 1)


def receptive_field(net: torch.nn.Module, ndim: int, size: int = 96, device: str | torch.device = "cpu") -> int:
    """Empirical receptive-field radius (voxels) of ``net`` from input gradients at the centre.

    Measured on copies with random weights, so zero-initialised layers do not hide paths: once
    with signed weights and input, once with positive ones (every ReLU then passes, so a path that
    dead units hide in the first draw still shows); the union counts. Block-wise prediction takes
    its halo from this, so an input too small to contain the field is doubled and measured again.
    """
    import copy

    while True:
        hits = None
        for trial in range(2):
            net_c = copy.deepcopy(net).to(device)
            gen = torch.Generator().manual_seed(trial)
            with torch.no_grad():
                for p in net_c.parameters():
                    w = torch.randn(p.shape, generator=gen) * 0.1
                    p.copy_(w.abs() if trial else w)
            net_c.eval()
            shape = (1, 1) + (size,) * ndim
            x0 = torch.rand(shape, generator=gen) if trial else torch.randn(shape, generator=gen)
            x = x0.to(device).requires_grad_(True)
            y = net_c(x)
            c = tuple(s // 2 for s in y.shape[2:])
            y[(0, 0) + c].backward()
            g = x.grad[0, 0].abs() > 0
            hits = g if hits is None else hits | g
        radius = 0
        for ax in range(ndim):
            other = tuple(a for a in range(ndim) if a != ax)
            hit = np.flatnonzero(hits.any(dim=other).cpu().numpy()) if other else np.flatnonzero(hits.cpu().numpy())
            if hit.size:
                radius = max(radius, int(max(size // 2 - hit.min(), hit.max() - size // 2)))
        if radius < size // 2 - 1 or size >= 512:
            return radius
        size *= 2


def crop_ranges(crop: Sequence[slice] | None, shape: Sequence[int]) -> list[tuple[int, int]]:
    """``(start, stop)`` per axis of ``crop`` (slices, None: everything) within ``shape``."""
    return [s.indices(n)[:2] for s, n in zip(crop or (slice(None),) * len(shape), shape, strict=True)]


def restore_axial_planes(restore_planes: Callable[[np.ndarray], np.ndarray], vol: np.ndarray, factor: float, *,
                         fusion: str = "geometric", slab: int = 32,
                         crop: Sequence[slice] | None = None,
                         progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Restore every xz and yz plane of a stack, interpolated along z by ``factor``, and fuse.

    ``restore_planes`` maps ``(N, Z', W)`` planes (z along rows) of the z-interpolated stack to
    restored planes of the same shape. Each slab of planes is interpolated when it is needed (linear
    interpolation along z is independent per column, so a slab equals that part of the whole
    interpolated stack): memory stays at the input, the result and one slab. The xz result is written
    first, then each slab of yz planes is fused into it in place (geometric mean of the non-negative
    parts, or the arithmetic mean). Used by IsoNet and Self-Net.

    ``crop`` (three slices of the output grid) returns only that region. A block-wise run reads a
    halo on every side, but an xz plane needs context only along its own axes (z and x): the xz
    pass then restores only the rows ``y`` inside the crop, the yz pass only the columns ``x``
    inside it, which removes the lateral halo across each pass. Every kept voxel is computed from
    the same whole plane as without ``crop``.
    """
    (z0, z1), (y0, y1), (x0, x1) = crop_ranges(crop, (output_length(vol.shape[0], factor),) + tuple(vol.shape[1:]))
    out = np.empty((z1 - z0, y1 - y0, x1 - x0), np.float32)
    total = (y1 - y0) + (x1 - x0)
    for y in range(y0, y1, slab):  # xz planes: (Y, Z', X)
        ye = min(y + slab, y1)
        up = upsample(vol[:, y:ye, :], factor, axis=0, order=1)
        planes = np.ascontiguousarray(up.transpose(1, 0, 2))
        out[:, y - y0:ye - y0, :] = restore_planes(planes)[:, z0:z1, x0:x1].transpose(1, 0, 2)
        if progress is not None:
            progress(ye - y0, total)
    for x in range(x0, x1, slab):  # yz planes: (X, Z', Y)
        xe = min(x + slab, x1)
        up = upsample(vol[:, :, x:xe], factor, axis=0, order=1)
        planes = np.ascontiguousarray(up.transpose(2, 0, 1))
        b = restore_planes(planes)[:, z0:z1, y0:y1].transpose(1, 2, 0)
        a = out[:, :, x - x0:xe - x0]
        if fusion == "geometric":
            out[:, :, x - x0:xe - x0] = np.sqrt(np.clip(a, 0, None) * np.clip(b, 0, None))
        else:
            out[:, :, x - x0:xe - x0] = 0.5 * (a + b)
        if progress is not None:
            progress((y1 - y0) + xe - x0, total)
    return out


@dataclass(frozen=True)
class BlockGeometry:
    """What a method needs to predict a block exactly as in the whole volume.

    ``halo_z``: input planes of context on each side in z; ``halo_yx``: pixels in y and x;
    ``align``: block origins on the z-interpolated grid and in y/x are multiples of it (a
    U-Net's pooling grid).
    """

    halo_z: int
    halo_yx: int
    align: int = 1
    #: True for plane-wise methods (:func:`restore_axial_planes`): each pass needs the lateral halo
    #: only across its own planes, and the z-interpolated block is never held whole
    planewise: bool = False
