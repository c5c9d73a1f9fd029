"""Stacks read plane by plane for viewing: what a viewer needs of a stack larger than memory.

A viewer shows three planes through a cursor, a projection and a display range. For a stack in
memory these are numpy slices. For a lazy one (a memory-mapped TIFF, Zarr, HDF5, Bio-Formats),
:class:`PlaneReader` reads only the planes asked for (through :func:`isoapp.data.io.lazy.bounded`,
so the pages read leave the process again), keeps the last few, and makes the projection and the
statistics from a strided subset of planes, which it says. :class:`InterpolatedPlanes` is the
input linearly interpolated onto the output grid, made plane by plane when it is shown, so a
before/after comparison of a large result never holds the interpolated stack.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from typing import Any

import numpy as np

from ..physics.forward import output_length, upsample

log = logging.getLogger(__name__)

#: the projection of a lazy stack is the maximum over at most this many evenly spaced planes
MIP_PLANES = 32
#: ...read within this many seconds. One xy plane of a 2048 x 2048 OME-Zarr result (64-plane chunks)
#: took 0.49 s to read here, a TIFF memory map's a few ms: 2 s takes all 32 planes of a TIFF and
#: about 4 of such a Zarr, instead of a 16 s stall
MIP_SECONDS = 2.0
#: seconds the display-range sample may read for (at least two planes; same measurement)
SAMPLE_SECONDS = 1.0
_clock = time.perf_counter  # (tests replace it to simulate a slow store)
#: planes kept per reader (a cursor moving back and forth does not re-read them)
CACHE_PLANES = 6


def in_memory(data: Any) -> bool:
    """True for arrays whose pixels are in this process (not memory maps, Zarr, HDF5 or readers)."""
    return isinstance(data, np.ndarray) and not isinstance(data, np.memmap)


def viewable(data: Any) -> Any:
    """``data`` as a viewer holds it: an ndarray when in memory, else a :class:`PlaneReader`."""
    if isinstance(data, _Planes) or in_memory(data):
        return data
    return PlaneReader(data)


class _Planes(ABC):
    """What both readers share: shape, a small plane cache, a strided projection and sample."""

    shape: tuple[int, int, int]
    dtype: np.dtype

    def __init__(self) -> None:
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # a viewer reads in a background thread and looks up in the GUI thread
        self.mip_step = 1
        self.mip_planes = 0  # how many planes the last projection took
        self.mip_z: list[int] = []

    @property
    def ndim(self) -> int:
        return 3

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    def __array__(self, *_args: Any, **_kwargs: Any) -> np.ndarray:
        raise TypeError(f"a {type(self).__name__} of {self.shape} is read plane by plane; index it instead of "
                        "converting the whole stack to an array")

    @abstractmethod
    def _read(self, key: tuple) -> np.ndarray:
        """The selection ``key`` (one int or slice per axis, z first) read from the source."""

    @staticmethod
    def _hashable(key: Any) -> tuple:
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        return tuple((k.start, k.stop, k.step) if isinstance(k, slice) else int(k) for k in key)

    def cached(self, key: Any) -> np.ndarray | None:
        """The selection ``key`` if it can be had without reading (a plane kept, or a voxel of one), else None."""
        hashable = self._hashable(key)
        every = (None, None, None)
        with self._lock:
            hit = self._cache.get(hashable)
            if hit is not None:
                self._cache.move_to_end(hashable)
                return hit
            if all(isinstance(k, int) for k in hashable):  # a voxel of an xy, xz or yz plane already read
                z, y, x = hashable
                for plane_key, at in (((z, every, every), (y, x)), ((every, y, every), (z, x)),
                                      ((every, every, x), (z, y))):
                    plane = self._cache.get(plane_key)
                    if plane is not None:
                        return plane[at]
        return None

    def __getitem__(self, key: Any) -> np.ndarray:
        hit = self.cached(key)
        if hit is not None:
            return hit
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        hit = np.asarray(self._read(key))  # outside the lock: a slow read must not block lookups
        with self._lock:
            self._cache[self._hashable(key)] = hit
            while len(self._cache) > CACHE_PLANES:
                self._cache.popitem(last=False)
        return hit

    def max(self, axis: int = 0) -> np.ndarray:
        """Maximum along z over evenly spaced planes (at most :data:`MIP_PLANES`, read within :data:`MIP_SECONDS`).

        The planes are read spread-first (first, middle, quarters...), so a slow store (a chunked
        Zarr reads a whole chunk row per plane) stops early with a subset still spread over the stack.
        ``mip_z`` lists the planes taken.
        """
        if axis != 0:
            raise ValueError("a plane reader projects along z only")
        nz = self.shape[0]
        self.mip_step = max(1, -(-nz // MIP_PLANES))
        out = None
        self.mip_z = []
        t0 = _clock()
        for z in spread_order(range(self.mip_step // 2, nz, self.mip_step)):
            plane = np.asarray(self._read((z, slice(None), slice(None))))
            out = plane.copy() if out is None else np.maximum(out, plane, out=out)
            self.mip_z.append(z)
            if _clock() - t0 > MIP_SECONDS:
                break
        self.mip_planes = len(self.mip_z)
        return out

    def stats_sample(self, n: int) -> np.ndarray:
        """About ``n`` values from evenly spaced planes (read within :data:`SAMPLE_SECONDS`), strided in y and x.

        Kept: a viewer's auto contrast and histogram take the same sample, not two seconds of reads."""
        kept = getattr(self, "_samples", {})
        if n not in kept:
            self._samples = {**kept, n: self._stats_sample(n)}
        return self._samples[n]

    def _stats_sample(self, n: int) -> np.ndarray:
        nz, ny, nx = self.shape
        planes = min(nz, 16)
        step = max(1, int(math.ceil(math.sqrt(planes * ny * nx / max(n, 1)))))
        parts, t0 = [], _clock()
        for z in spread_order(np.linspace(0, nz - 1, planes).round().astype(int)):
            parts.append(np.asarray(self._read((int(z), slice(None, None, step), slice(None, None, step)))).ravel())
            if len(parts) >= 2 and _clock() - t0 > SAMPLE_SECONDS:
                break
        return np.concatenate(parts)


def spread_order(indices: Any) -> list[int]:
    """``indices`` reordered so that every prefix is spread over them (bit-reversed positions: 0, 1/2, 1/4, 3/4...)."""
    idx = [int(i) for i in indices]
    n = len(idx)
    if n <= 2:
        return idx
    bits = (n - 1).bit_length()
    return [idx[i] for i in sorted(range(n), key=lambda i: (int(f"{i:0{bits}b}"[::-1], 2), i))]


class PlaneReader(_Planes):
    """A lazy ZYX array read a plane (or a strided subset) at a time; ``np.asarray`` of it is refused.

    ``lead`` picks one stack of a CZYX/TCZYX array (``(c,)`` or ``(t, c)``) without reading the others:
    every read is prefixed with it.
    """

    def __init__(self, data: Any, lead: tuple[int, ...] = ()) -> None:
        super().__init__()
        from ..data.io.lazy import bounded

        if len(data.shape) != 3 + len(lead):
            raise ValueError(f"a plane reader takes a ZYX stack, got shape {data.shape} with leading index {lead}")
        self.source = bounded(data)
        self.lead = tuple(int(i) for i in lead)
        self.shape = tuple(int(s) for s in data.shape[len(lead):])
        self.dtype = np.dtype(data.dtype)

    def _read(self, key: tuple) -> np.ndarray:
        return np.asarray(self.source[self.lead + key])


def _lead(axes: str, c: int, t: int) -> tuple[int, ...]:
    return () if axes == "ZYX" else (c,) if axes == "CZYX" else (t, c)


def channel_view(volume: Any, c: int = 0, t: int = 0) -> Any:
    """Channel ``c`` at time ``t`` of a :class:`~isoapp.core.volume.Volume` as a viewer holds it.

    In memory: the ndarray. Lazy: a :class:`PlaneReader` (or the interpolated planes of an
    :class:`InterpolatedStack`) that reads nothing until a plane is shown.
    """
    if isinstance(volume.data, InterpolatedStack):
        return volume.data.channel(c, t)
    if not volume.is_lazy:
        return np.asarray(volume.channel(c, t).data)
    if not (0 <= c < volume.n_channels and 0 <= t < volume.n_timepoints):
        raise IndexError(f"channel {c}, time {t} asked of a stack with {volume.n_channels} channel(s) and "
                         f"{volume.n_timepoints} time point(s)")
    return PlaneReader(volume.data, _lead(volume.axes, c, t))


class InterpolatedPlanes(_Planes):
    """``source`` (ZYX) linearly interpolated along z by ``factor``, made plane by plane as float32.

    Plane ``k`` lies at input position ``k / factor``, the grid of every restoration (and of
    :func:`isoapp.physics.forward.upsample`, whose values each plane here equals).
    """

    def __init__(self, source: Any, factor: float) -> None:
        super().__init__()
        self.source = viewable(source)
        self.factor = float(factor)
        nz, ny, nx = self.source.shape
        self.shape = (output_length(nz, self.factor), ny, nx)
        self.dtype = np.dtype(np.float32)

    def _read(self, key: tuple) -> np.ndarray:
        kz, ky, kx = key
        nz = self.source.shape[0]
        if isinstance(kz, slice):  # an xz or yz plane (or a strided block): interpolate the lines along z
            lines = np.asarray(self.source[slice(None), ky, kx], np.float32)
            return upsample(lines, self.factor, axis=0, order=1)[kz]
        pos = int(kz) / self.factor
        lo = min(int(math.floor(pos)), nz - 1)
        w = pos - lo
        a = np.asarray(self.source[lo, ky, kx], np.float32)
        if w <= 0 or lo + 1 >= nz:
            return a
        b = np.asarray(self.source[lo + 1, ky, kx], np.float32)
        return ((1 - w) * a + w * b).astype(np.float32)


class InterpolatedStack:
    """A lazy (C/T)ZYX stack interpolated along z by ``factor``: the 'before' of a large comparison.

    Holds nothing but the source; :meth:`channel` gives the :class:`InterpolatedPlanes` of one stack.
    """

    def __init__(self, data: Any, axes: str, factor: float) -> None:
        self.source, self.axes, self.factor = data, axes, float(factor)
        lead = tuple(int(s) for s in data.shape[:-3])
        nz, ny, nx = (int(s) for s in data.shape[-3:])
        self.shape = (*lead, output_length(nz, self.factor), ny, nx)
        self.dtype = np.dtype(np.float32)
        self.ndim = len(self.shape)

    def channel(self, c: int, t: int) -> InterpolatedPlanes:
        return InterpolatedPlanes(PlaneReader(self.source, _lead(self.axes, c, t)), self.factor)

    def __array__(self, *_args: Any, **_kwargs: Any) -> np.ndarray:
        raise TypeError(f"an interpolated stack of {self.shape} is made plane by plane; use channel(c, t)")


def interpolated_view(volume: Any, factor: float) -> Any:
    """``volume`` (lazy) linearly interpolated onto the output grid, as a Volume that reads on demand."""
    dz, dy, dx = volume.voxel_size
    return volume.with_data(InterpolatedStack(volume.data, volume.axes, factor), voxel_size=(dz / factor, dy, dx),
                            name=f"{volume.name}_interpolated")
