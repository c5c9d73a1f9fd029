"""LazyArray: a read-only array whose planes are read from a file when indexed (TIFF pages, HDF5)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _as_int(k: Any, n: int, axis: int) -> int:
    i = int(k)
    if not -n <= i < n:
        raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
    return i % n


class LazyArray:
    """A read-on-demand array: indexing reads only the requested part and returns an ndarray.

    ``reader(key)`` receives one ``int`` or ``slice`` (positive step) per dimension of the
    stored array and returns that selection. Views (:meth:`transpose`, :meth:`take_index`,
    :meth:`expand_dims`) cost nothing; fancy indices and negative steps are applied after a
    bounding read. ``np.asarray(lazy)`` reads everything.
    """

    def __init__(self, reader: Callable[[tuple], Any], shape: Sequence[int], dtype: Any, *,
                 close: Callable[[], None] | None = None, order: tuple | None = None,
                 fixed: dict[int, int] | None = None) -> None:
        self._reader = reader
        self._base_shape = tuple(int(s) for s in shape)
        self._dtype = np.dtype(dtype)
        self._close = close
        self._order = tuple(range(len(self._base_shape))) if order is None else tuple(order)
        self._fixed = dict(fixed or {})

    # -- array protocol
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(1 if o is None else self._base_shape[o] for o in self._order)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self._order)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self._dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"LazyArray(shape={self.shape}, dtype={self._dtype})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        arr = self[...]
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def close(self) -> None:
        """Release the underlying file (views share it)."""
        if self._close is not None:
            self._close()

    # -- views
    def _view(self, order: tuple, fixed: dict[int, int]) -> LazyArray:
        return LazyArray(self._reader, self._base_shape, self._dtype, close=self._close, order=order, fixed=fixed)

    def transpose(self, *axes: Any) -> LazyArray:
        if len(axes) == 1 and axes[0] is not None and not isinstance(axes[0], int):
            axes = tuple(axes[0])
        perm = tuple(range(self.ndim))[::-1] if not axes or axes == (None,) else tuple(int(a) for a in axes)
        if sorted(perm) != list(range(self.ndim)):
            raise ValueError(f"axes {perm} are not a permutation of {self.ndim} dimensions")
        return self._view(tuple(self._order[a] for a in perm), self._fixed)

    def take_index(self, axis: int, index: int) -> LazyArray:
        """Drop ``axis`` by fixing it at ``index`` (a lazy ``np.take`` with a scalar)."""
        b = self._order[axis]
        fixed = dict(self._fixed)
        if b is not None:
            fixed[b] = _as_int(index, self._base_shape[b], axis)
        return self._view(self._order[:axis] + self._order[axis + 1:], fixed)

    def expand_dims(self, axis: int) -> LazyArray:
        """Insert a singleton axis at position ``axis``."""
        return self._view(self._order[:axis] + (None,) + self._order[axis:], self._fixed)

    # -- reading
    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is None for k in key):
            raise IndexError("LazyArray does not support np.newaxis; use expand_dims")
        n_ell = sum(k is Ellipsis for k in key)
        if n_ell > 1:
            raise IndexError("an index can only have a single ellipsis")
        if n_ell:
            i = next(j for j, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1:]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for an array of {self.ndim} dimensions")
        key = key + (slice(None),) * (self.ndim - len(key))

        nbase = len(self._base_shape)
        sel: list[Any] = [None] * nbase  # int or 1-D index array per stored dimension
        for b, i in self._fixed.items():
            sel[b] = i
        kept: list[Any] = []  # view positions that stay: stored dim or ("new", indices)
        for pos, (o, k) in enumerate(zip(self._order, key, strict=True)):
            n = 1 if o is None else self._base_shape[o]
            if isinstance(k, slice):
                idx: Any = np.arange(n)[k]
            elif np.ndim(k) == 0 and not isinstance(k, np.ndarray | list):
                idx = _as_int(k, n, pos)
            else:
                idx = np.asarray(k)
                if idx.dtype == bool:
                    idx = np.nonzero(idx)[0]
                idx = np.where(idx < 0, idx + n, idx).astype(np.intp).ravel()
                if idx.size and (idx.min() < 0 or idx.max() >= n):
                    raise IndexError(f"index out of bounds for axis {pos} with size {n}")
            if o is None:
                if not isinstance(idx, int):
                    kept.append(("new", idx))
            else:
                sel[o] = idx
                if not isinstance(idx, int):
                    kept.append(o)

        read_key: list[Any] = []
        post: list[Any] = []  # per kept stored dim: None or the indices into the bounding read
        for s in sel:
            if isinstance(s, int):
                read_key.append(s)
                continue
            if s.size == 0:
                read_key.append(slice(0, 0))
                post.append(None)
                continue
            lo, hi = int(s.min()), int(s.max())
            step = int(s[1] - s[0]) if s.size > 1 else 1
            if step > 0 and np.array_equal(s, np.arange(lo, hi + 1, step)):
                read_key.append(slice(lo, hi + 1, step))
                post.append(None)
            else:
                read_key.append(slice(lo, hi + 1))
                post.append(s - lo)
        arr = np.asarray(self._reader(tuple(read_key)))
        for axis, p in enumerate(post):
            if p is not None:
                arr = np.take(arr, p, axis=axis)
        labels = [b for b in range(nbase) if not isinstance(sel[b], int)]
        arr = arr.transpose([labels.index(t) for t in kept if not isinstance(t, tuple)])
        for pos, t in enumerate(kept):
            if isinstance(t, tuple):
                arr = np.expand_dims(arr, pos)
                if t[1].size == 0:
                    arr = np.take(arr, [], axis=pos)
        return arr


# ---------------------------------------------------------------------------- reading
