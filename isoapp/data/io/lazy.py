"""Lazy stacks: bounded-memory reads, sampled statistics and the training region of a large stack.

Nothing here reads a whole stack unless it fits the budget it is given. A memory-mapped TIFF is
re-mapped for every read (:func:`bounded`), so the pages a block touched are unmapped after it and
do not accumulate in the process's resident memory; statistics come from a bounded random sample
of blocks (:func:`sample_blocks`), and a method trains on one bounded, foreground-rich region
(:func:`training_region`) read on demand.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..normalize import NORM_PERCENTILES, Normalizer
from .arrays import LazyArray

log = logging.getLogger(__name__)

#: The default memory a run may spend on its statistics sample and its training region.
SAMPLE_BUDGET_BYTES = 256 * 2**20
TRAIN_BUDGET_BYTES = 384 * 2**20
_PLANES_PER_MAP = 16


def _remap_reader(filename: str, root_offset: int, root_nbytes: int, start: int, dtype: np.dtype,
                  shape: tuple, strides: tuple):
    def read_mapped(key: tuple) -> np.ndarray:
        buf = np.memmap(filename, dtype=np.uint8, mode="r", offset=root_offset, shape=(root_nbytes,))
        try:
            base = buf[start:].view(dtype)
            view = np.lib.stride_tricks.as_strided(base, shape=shape, strides=strides, writeable=False)
            return np.array(view[key])
        finally:
            del buf  # unmap: the touched pages leave this process's resident set

    def read(key: tuple) -> np.ndarray:
        # a window of many planes maps whole pages of every row it touches: read a few planes per mapping
        first = key[0] if key else slice(None)
        if not isinstance(first, slice) or len(shape) < 3:
            return read_mapped(key)
        idx = range(shape[0])[first]
        if len(idx) <= _PLANES_PER_MAP:
            return read_mapped(key)
        parts = [read_mapped((slice(idx[i], idx[min(i + _PLANES_PER_MAP, len(idx)) - 1] + 1, idx.step),) + key[1:])
                 for i in range(0, len(idx), _PLANES_PER_MAP)]
        return np.concatenate(parts, axis=0)
    return read


def bounded(data: Any) -> Any:
    """``data`` whose reads do not grow resident memory: a ``np.memmap`` becomes a re-mapping LazyArray.

    Views of a memory map (a transposed or channel-sliced stack) keep their strides and start.
    Other arrays (LazyArray, zarr, h5py datasets, in-memory arrays) are returned unchanged.
    """
    if not isinstance(data, np.memmap):
        return data
    root = data
    while isinstance(root.base, np.memmap):
        root = root.base
    filename = getattr(root, "filename", None)
    if not filename or data.size == 0:
        return data
    start = data.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return LazyArray(_remap_reader(str(filename), int(root.offset), int(root.nbytes), int(start), data.dtype,
                                   tuple(data.shape), tuple(data.strides)), data.shape, data.dtype)


def fits(shape: Sequence[int], budget_bytes: int, itemsize: int = 4) -> bool:
    """Whether an array of ``shape`` in float32 (``itemsize``) fits ``budget_bytes``."""
    return int(np.prod(shape, dtype=np.int64)) * itemsize <= budget_bytes


def sample_boxes(shape: Sequence[int], n: int, box: Sequence[int], rng: np.random.Generator) -> list[tuple]:
    """``n`` random boxes (tuples of slices) of at most ``box`` inside a ZYX ``shape``."""
    out = []
    for _ in range(n):
        sl = []
        for s, b in zip(shape, box, strict=True):
            b = min(int(b), int(s))
            o = int(rng.integers(0, s - b + 1))
            sl.append(slice(o, o + b))
        out.append(tuple(sl))
    return out


def sample_blocks(data: Any, budget_bytes: int = SAMPLE_BUDGET_BYTES, *, seed: int = 0,
                  box: Sequence[int] = (16, 128, 128)) -> np.ndarray:
    """A bounded random sample of a ZYX array's voxels (float32, flat), read block by block.

    The whole array when it fits ``budget_bytes``; otherwise random boxes of ``box`` until the
    budget is used (at least 8 boxes).
    """
    shape = tuple(int(s) for s in data.shape)
    if fits(shape, budget_bytes):
        return np.asarray(data[...], np.float32).ravel()
    box = tuple(min(b, s) for b, s in zip(box, shape, strict=True))
    per = int(np.prod(box)) * 4
    n = max(8, budget_bytes // per)
    rng = np.random.default_rng(seed)
    parts = [np.asarray(data[b], np.float32).ravel() for b in sample_boxes(shape, n, box, rng)]
    return np.concatenate(parts)


def fit_normalizer(data: Any, budget_bytes: int = SAMPLE_BUDGET_BYTES, *, seed: int = 0,
                   percentiles: tuple[float, float] = NORM_PERCENTILES) -> Normalizer:
    """The :class:`Normalizer` of a ZYX array from a bounded sample (exact for an array within the budget)."""
    if isinstance(data, np.ndarray) and not isinstance(data, np.memmap):
        return Normalizer.fit(data, percentiles)
    return Normalizer.fit(sample_blocks(data, budget_bytes, seed=seed), percentiles)


def _overview(data: Any, max_planes: int = 16, step_xy: int = 8) -> tuple[np.ndarray, int]:
    """A coarse mean-over-z map (planes subsampled, y/x strided) for choosing a foreground region."""
    nz = int(data.shape[0])
    zs = np.unique(np.linspace(0, nz - 1, min(nz, max_planes)).round().astype(int))
    acc = None
    for z in zs:
        plane = np.asarray(data[int(z)], np.float32)[::step_xy, ::step_xy]
        acc = plane if acc is None else acc + plane
    return acc / len(zs), step_xy


def training_region(data: Any, budget_bytes: int = TRAIN_BUDGET_BYTES, *, min_lateral: int = 64,
                    purpose: str = "the method's training region") -> tuple:
    """The box (slices) of a ZYX array a method trains on: all of it if it fits ``budget_bytes``.

    Otherwise the lateral window (all z planes, or a centred run of planes when even a
    ``min_lateral`` window of every plane would not fit) whose coarse overview holds the most
    signal above the median: training then sees the structures rather than the background.
    """
    nz, ny, nx = (int(s) for s in data.shape)
    if fits((nz, ny, nx), budget_bytes):
        return (slice(0, nz), slice(0, ny), slice(0, nx))
    vox = budget_bytes // 4
    z_len = nz if nz * min_lateral * min_lateral <= vox else max(8, vox // (min_lateral * min_lateral))
    z0 = (nz - z_len) // 2
    side = int(math.isqrt(max(vox // z_len, 1)))
    wy, wx = min(ny, side), min(nx, side)
    if wy < side:  # a narrow stack: widen x with the unused budget
        wx = min(nx, vox // (z_len * wy))
    ov, step = _overview(data)
    sig = np.clip(ov - np.median(ov), 0, None)
    cy, cx = max(1, wy // step), max(1, wx // step)
    # box sums of the overview by integral image
    ii = np.pad(sig, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    sums = ii[cy:, cx:] - ii[:-cy, cx:] - ii[cy:, :-cx] + ii[:-cy, :-cx]
    iy, ix = np.unravel_index(int(np.argmax(sums)), sums.shape)
    y0 = min(int(iy) * step, ny - wy)
    x0 = min(int(ix) * step, nx - wx)
    box = (slice(z0, z0 + z_len), slice(y0, y0 + wy), slice(x0, x0 + wx))
    log.info("the stack (%d x %d x %d) exceeds %s of %d MiB (float32): using the "
             "region z %d:%d, y %d:%d, x %d:%d, where the overview holds the most signal", nz, ny, nx, purpose,
             budget_bytes // 2**20,
             z0, z0 + z_len, y0, y0 + wy, x0, x0 + wx)
    return box
