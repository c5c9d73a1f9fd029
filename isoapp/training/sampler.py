"""Foreground-biased patch sampling and symmetry-aware augmentation.

Patches are drawn from a volume with probability ``foreground_fraction`` around foreground
voxels (a smoothed intensity above a percentile threshold), otherwise uniformly, so that empty
background patches do not dominate training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..core.errors import InputError

log = logging.getLogger(__name__)


_PERCENTILE_SAMPLE = 2**24


class _BoxPool:
    """The C-order flat indices of ``mask`` inside a box, drawn by rank without materialising them.

    ``pool[k]`` equals ``np.flatnonzero(mask & box)[k]`` (``mask=None``: every voxel of the box),
    at the memory of one count per leading index instead of eight bytes per voxel. ``rows``
    (sorted indices along the first axis) replaces the box's first slice.
    """

    def __init__(self, shape: tuple[int, ...], box: tuple[slice, ...], mask: np.ndarray | None,
                 rows: np.ndarray | None = None) -> None:
        self.shape, self.box, self.mask = shape, box, mask
        self.sub = tuple(len(range(*b.indices(n))) for b, n in zip(box, shape, strict=True))
        self.rows = range(*box[0].indices(shape[0])) if rows is None else rows  # leading indices in the pool
        if mask is None:
            per = np.full(len(self.rows), int(np.prod(self.sub[1:], dtype=np.int64)), np.int64)
        else:
            per = np.array([int(np.count_nonzero(mask[(i,) + box[1:]])) for i in self.rows], np.int64)
        self.cum = np.cumsum(per)
        self._cache: tuple[int, np.ndarray] | None = None

    @property
    def size(self) -> int:
        return int(self.cum[-1]) if len(self.cum) else 0

    def __getitem__(self, k: int) -> int:
        r = int(np.searchsorted(self.cum, k, side="right"))
        j = int(k - (self.cum[r - 1] if r else 0))
        if self.mask is None:
            local = np.unravel_index(j, self.sub[1:])
        else:
            if self._cache is None or self._cache[0] != r:
                self._cache = (r, np.flatnonzero(self.mask[(self.rows[r],) + self.box[1:]]))
            local = np.unravel_index(int(self._cache[1][j]), self.sub[1:])
        coords = (self.rows[r],) + tuple(int(b.indices(n)[0]) + int(c) for b, n, c
                                         in zip(self.box[1:], self.shape[1:], local, strict=True))
        return int(np.ravel_multi_index(coords, self.shape))


def foreground_mask(vol: np.ndarray, *, level: float = 0.2, smooth: float = 2.0) -> np.ndarray:
    """Voxels whose smoothed intensity lies above ``level`` of the way from background to signal.

    Background and signal are the 5th and 99.9th percentiles of the smoothed volume (CSBDeep's
    patch filter works the same way, relative to the maximum).
    """
    sm = ndimage.uniform_filter(vol.astype(np.float32, copy=False), size=max(1, int(2 * smooth + 1)))
    step = max(1, sm.size // _PERCENTILE_SAMPLE)  # large stacks: percentiles of a strided sample (no copy)
    lo, hi = np.percentile(sm.reshape(-1)[::step], [5, 99.9])
    if hi <= lo:  # flat image: everything counts
        return np.ones(vol.shape, bool)
    return sm > lo + level * (hi - lo)


class PatchSampler:
    """Draw crops of ``size`` from ``vol`` (any dimensionality) with a foreground bias.

    Parameters
    ----------
    vol
        Source array; crops are taken over its last ``len(size)`` axes, the leading axes (e.g. z
        for lateral planes) are drawn at random too.
    size
        Crop size for the trailing axes, e.g. ``(64, 64)`` for lateral planes of a ZYX volume or
        ``(32, 64, 64)`` for 3D crops.
    rng
        Generator used for every draw (checkpoint it to make resumes exact).
    foreground_fraction
        Probability that a crop is centred on a foreground voxel.
    index_range
        Optional ``(start, stop)`` restricting the first axis (e.g. to hold out validation planes).
    exclude
        Indices along the first axis that no crop may cover (the held-out check's planes,
        :mod:`isoapp.quality.heldout`): with leading axes those indices are never drawn, with a first crop
        axis no crop spans any of them.
    """

    def __init__(self, vol: np.ndarray, size: Sequence[int], rng: np.random.Generator, *,
                 foreground_fraction: float = 0.9, index_range: tuple[int, int] | None = None,
                 mask: np.ndarray | None = None, exclude: Sequence[int] = ()) -> None:
        self.vol = vol
        self.size = tuple(int(s) for s in size)
        nd = len(self.size)
        if any(s > n for s, n in zip(self.size, vol.shape[-nd:], strict=True)):
            raise InputError(f"patch size {self.size} is larger than the data {vol.shape[-nd:]}; "
                             "use a smaller patch size (or a larger stack)")
        self.rng = rng
        self.fg = float(foreground_fraction)
        self.index_range = index_range or (0, vol.shape[0])
        m = foreground_mask(vol) if mask is None else mask
        lo, hi = self.index_range
        lead = vol.ndim - nd
        # valid centres (a box): far enough from the border so the crop fits, within index_range
        box = [slice(0, n) for n in vol.shape]
        if lead:
            box[0] = slice(lo, hi)
        for i, s in enumerate(self.size):
            ax = lead + i
            box[ax] = slice(s // 2, vol.shape[ax] - (s - s // 2) + 1)
        if not lead:
            a = box[0].indices(vol.shape[0])
            box[0] = slice(max(a[0], lo), max(min(a[1], hi), max(a[0], lo)))
        box = tuple(box)
        rows = None
        if len(exclude):
            ex = np.unique(np.asarray(exclude, int))
            rows = np.arange(*box[0].indices(vol.shape[0]))
            start = rows if lead else rows - self.size[0] // 2  # first index each crop covers
            span = 1 if lead else self.size[0]
            rows = rows[~((ex[None] >= start[:, None]) & (ex[None] < start[:, None] + span)).any(axis=1)]
        self._fg_idx = _BoxPool(vol.shape, box, m, rows)
        self._all_idx = _BoxPool(vol.shape, box, None, rows)
        if self._all_idx.size == 0:
            held = f" outside the held-out planes {min(exclude)}-{max(exclude)}" if len(exclude) else ""
            raise InputError(f"no room for {self.size} patches in data of shape {vol.shape}{held}")
        if self._fg_idx.size == 0:
            log.info("no foreground found for patch sampling; sampling uniformly")

    def corner(self) -> tuple[int, ...]:
        """The start index of one crop (leading axes: the index itself)."""
        pool = self._fg_idx if (self._fg_idx.size and self.rng.random() < self.fg) else self._all_idx
        centre = np.unravel_index(pool[self.rng.integers(pool.size)], self.vol.shape)
        lead = self.vol.ndim - len(self.size)
        return tuple(int(c) for c in centre[:lead]) + tuple(
            int(c) - s // 2 for c, s in zip(centre[lead:], self.size, strict=True))

    def crop(self, corner: tuple[int, ...], source: np.ndarray | None = None) -> np.ndarray:
        src = self.vol if source is None else source
        lead = src.ndim - len(self.size)
        idx = tuple(corner[:lead]) + tuple(slice(c, c + s) for c, s in zip(corner[lead:], self.size, strict=True))
        return src[idx]

    def sample(self, n: int) -> np.ndarray:
        """``n`` crops stacked on a new first axis."""
        return np.stack([self.crop(self.corner()) for _ in range(n)])


def augment(batch: Sequence[np.ndarray], rng: np.random.Generator, *, axes: tuple[int, int] = (-2, -1),
            rotate: bool = True, flip_axes: Sequence[int] = (-2, -1)) -> list[np.ndarray]:
    """Apply one random flip/rot90 combination to every array of ``batch`` identically.

    Use it only where the transformation commutes with the PSF: e.g. rotations in the lateral
    plane of *clean* data (before a synthetic anisotropic blur), or flips along axes in which the
    PSF is symmetric.
    """
    out = list(batch)
    if rotate:
        k = int(rng.integers(4))
        if k:
            out = [np.rot90(a, k, axes=axes) for a in out]
    for ax in flip_axes:
        if rng.random() < 0.5:
            out = [np.flip(a, axis=ax) for a in out]
    return [np.ascontiguousarray(a) for a in out]
