"""Reading and writing volumes: format dispatch, lazy arrays, dtype conversion.

``read_volume`` / ``write_volume`` pick the format from the extension through the format
registry (:mod:`.registry`: TIFF, OME-TIFF, HDF5, OME-Zarr, and vendor formats through
Bio-Formats) and delegate to its reader or writer. Readers return a :class:`RawImage` (data in
the file's axis order plus calibration); this module maps it onto a canonical
:class:`~isoapp.core.volume.Volume`. Format modules are imported when first needed so
``import isoapp.data.io`` stays cheap and ``zarr`` and Java stay optional.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import ConfigError, InputError, OutputError
from ...core.volume import Volume, canonicalize_axes
from . import registry
from .atomic import atomic_path, check_output_path

log = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_EXTENSIONS", "LazyArray", "RawImage", "atomic_path", "check_output_path",
    "describe_file", "read_volume", "write_volume",
]

#: Every extension read_volume reads (vendor formats through Bio-Formats need Java).
SUPPORTED_EXTENSIONS = registry.read_extensions()
OUTPUT_DTYPES = ("float32", "uint16", "uint8")
_WRITE_FORMATS = tuple(f.name for f in registry.writable())


# ---------------------------------------------------------------------------- lazy arrays
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
@dataclass
class RawImage:
    """What a format reader returns: data in the file's own axis order plus calibration.

    ``voxel_size`` is ``(z, y, x)`` in µm with ``None`` for each axis the file does not
    calibrate. ``fmt`` names the format (``imagej-tiff``, ``ome-tiff``, ``tiff``, ``hdf5``,
    ``ome-zarr``, ``zarr``).
    """

    data: Any
    axes: str
    voxel_size: tuple[float | None, float | None, float | None]
    fmt: str
    metadata: dict = field(default_factory=dict)


def tidy(value: float) -> float:
    """Round away float noise (e.g. from rational resolution tags) to 12 significant digits."""
    return float(f"{float(value):.12g}")


def detect_format(path: str | os.PathLike) -> str:
    """The reader family of ``path`` (``tiff``, ``hdf5``, ``zarr``, ``bioformats``); InputError if none."""
    return registry.reader_for(path).family


def _display_name(path: Path) -> str:
    return registry.strip_extension(path)


def _prepare_axes(data: Any, axes: str, path: Path) -> tuple[Any, str]:
    """Squeeze singleton unknown axes and add C to T-only layouts without reading the data."""
    axes = axes.upper().replace("S", "C")
    if "Z" not in axes:
        for alias in ("Q", "I"):
            if alias in axes:
                axes = axes.replace(alias, "Z", 1)
                break
    for i in reversed(range(len(axes))):
        a = axes[i]
        if a in "TCZYX":
            continue
        if data.shape[i] != 1:
            raise InputError(
                f"{path.name}: the file does not say what its axis {a!r} of size {data.shape[i]} is "
                f"(axes {axes!r}, shape {tuple(data.shape)}); pass the axis order explicitly, e.g. axes='CZYX'"
            )
        data = data.take_index(i, 0) if isinstance(data, LazyArray) else data[(slice(None),) * i + (0,)]
        axes = axes[:i] + axes[i + 1:]
    if "T" in axes and "C" not in axes:
        i = axes.index("T") + 1
        data = data.expand_dims(i) if isinstance(data, LazyArray) else np.expand_dims(data, i)
        axes = axes[:i] + "C" + axes[i:]
    return data, axes


def _reader_module(family: str):
    """The module of a reader family (``tiff``, ``hdf5``, ``zarr``), for scripts that patch it."""
    return registry.module(family)


def read_volume(path: str | os.PathLike, *, dataset: str | None = None, lazy: bool = False,
                axes: str | None = None, format: str | None = None) -> Volume:
    """Read a 3D stack (ZYX, CZYX or TCZYX) with its voxel size in µm.

    Parameters
    ----------
    path
        A file or folder of a format in the registry (:mod:`isoapp.data.io.registry`): ``.tif/.tiff/
        .ome.tif``, ``.h5/.hdf5/.hdf``, a ``.zarr`` folder, or a vendor file (``.czi``, ``.lif``,
        ``.nd2``, ``.ics``...) read through Bio-Formats, which needs Java and the Bio-Formats jar.
    dataset
        HDF5 / Zarr: the dataset (array) path inside the file; needed only when the file holds
        several 3D datasets. TIFF and Bio-Formats: an optional series number.
    lazy
        Do not read the pixels: ``data`` is a memory map or a :class:`LazyArray` that reads
        on indexing (``Volume.load()`` reads it all).
    axes
        Override the file's axis order (letters T, C, Z, Y, X), e.g. ``"CZYX"``.
    format
        Read with this registry entry instead of the one the extension picks, e.g.
        ``"bioformats"`` for a TIFF variant only Bio-Formats understands.

    Returns
    -------
    Volume
        Canonical axes; ``metadata`` has ``format``, ``file_axes`` and ``calibrated`` (False when
        the file has no voxel size, which is then ``(1, 1, 1)``).

    Raises
    ------
    InputError
        If the file is missing, unreadable, corrupt, not 3D or has a zero-size axis, or its
        format needs something that is not installed (Java, the Bio-Formats jar).
    """
    path = Path(path).expanduser()
    entry = registry.reader_for(path, format)
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path (drag the file onto the terminal to paste it)")
    if not entry.folder and path.is_dir():
        raise InputError(f"{path} is a folder, not an image file; give the path of a {entry.title} file")
    raw = entry.load("reader")(path, dataset=dataset, lazy=lazy)
    return _finish(raw, path, axes)


def _finish(raw: RawImage, path: Path, axes: str | None) -> Volume:
    data = raw.data
    file_axes = (axes or raw.axes).upper()
    if len(file_axes) != data.ndim:
        raise InputError(f"{path.name}: axes {file_axes!r} do not fit the data shape {tuple(data.shape)}; "
                         f"give {data.ndim} letters from T, C, Z, Y, X")
    try:
        data, canon = _prepare_axes(data, file_axes, path)
        data, canon = canonicalize_axes(data, canon)
    except InputError as exc:
        msg = str(exc)
        raise InputError(msg if msg.startswith(path.name) else f"{path.name}: {msg}") from exc
    missing = [a for a, v in zip("zyx", raw.voxel_size, strict=True) if v is None]
    voxel = tuple(1.0 if v is None else float(v) for v in raw.voxel_size)
    if missing:
        log.warning("%s: no voxel size for axis %s in the file; using %s µm. Set it in Fiji "
                    "(Image > Properties) or pass --voxel-size Z Y X", path.name, "/".join(missing),
                    " x ".join(f"{v:g}" for v in voxel))
    metadata = {**raw.metadata, "format": raw.fmt, "file_axes": raw.axes, "calibrated": not missing}
    try:
        return Volume(data=data, axes=canon, voxel_size=voxel, path=path, name=_display_name(path),
                      metadata=metadata)
    except InputError as exc:
        raise InputError(f"{path.name}: {exc}") from exc


def describe_file(path: str | os.PathLike, dataset: str | None = None, format: str | None = None) -> dict:
    """Summarise a file without reading its pixels.

    Returns
    -------
    dict
        ``path, format, format_name, shape, dtype, axes, voxel_size (z, y, x µm), anisotropy,
        calibrated, size_on_disk, size_in_memory`` (bytes) and ``dataset`` where relevant.
    """
    vol = read_volume(path, dataset=dataset, lazy=True, format=format)
    p = Path(vol.path)
    files = [Path(f) for f in vol.metadata.get("files", ())] or [p]  # e.g. an .ics header and its .ids
    disk = 0
    for f in files:
        disk += sum(g.stat().st_size for g in f.rglob("*") if g.is_file()) if f.is_dir() else f.stat().st_size
    info = {
        "path": str(p.resolve()), "format": vol.metadata.get("format"),
        "format_name": registry.title(vol.metadata.get("format"), vol.metadata), "shape": list(vol.shape),
        "dtype": str(vol.dtype), "axes": vol.axes, "voxel_size": list(vol.voxel_size),
        "anisotropy": vol.anisotropy, "calibrated": bool(vol.metadata.get("calibrated")),
        "size_on_disk": int(disk), "size_in_memory": int(vol.nbytes),
    }
    if vol.metadata.get("dataset"):
        info["dataset"] = vol.metadata["dataset"]
    if vol.metadata.get("channel_names"):
        info["channel_names"] = list(vol.metadata["channel_names"])
    if isinstance(vol.data, LazyArray):
        vol.data.close()
    return info


# ---------------------------------------------------------------------------- writing
def iter_blocks(shape: Sequence[int], depth: int) -> Iterator[tuple]:
    """Index tuples covering an array in blocks of ``depth`` planes along axis -3."""
    lead, nz = tuple(shape[:-3]), int(shape[-3])
    for idx in itertools.product(*(range(n) for n in lead)):
        for z0 in range(0, nz, depth):
            yield idx + (slice(z0, min(z0 + depth, nz)),)


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The writer for ``path``: ``imagej`` (.tif), ``ome-tiff``, ``tiff`` (plain), ``hdf5``, ``ome-zarr``."""
    return registry.output_format(path, format)


def _min_max(data: Any) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for i in range(data.shape[0]):
        block = np.asarray(data[i])
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
    return lo, hi


def plan_conversion(volume: Volume, dtype: str) -> tuple[Callable[[np.ndarray], np.ndarray], dict | None]:
    """The per-block conversion to ``dtype`` and, for integer outputs, the rescaling applied.

    float32: a plain cast. uint16/uint8: integer data already within the output range is
    written unchanged; float data within the range (and not normalised to max <= 1) is
    rounded; anything else is rescaled linearly from its [min, max] to the full range. The
    rescaling is logged (WARNING) and stored in ``volume.metadata['rescale']``.
    """
    out = np.dtype(dtype)
    if out == np.float32:
        return (lambda b: np.asarray(b, dtype=np.float32)), None
    top = int(np.iinfo(out).max)
    lo, hi = _min_max(volume.data)
    is_int = np.issubdtype(volume.dtype, np.integer) or volume.dtype == bool
    if lo >= 0 and hi <= top and (is_int or hi > 1):
        scale, offset, mode = 1.0, 0.0, "none"
        text = (f"{out} output: values {lo:g}..{hi:g} already lie within 0..{top}; written without rescaling"
                + ("" if is_int else " (rounded to integers)"))
        log.info("%s: %s", volume.name, text)
    else:
        scale = top / (hi - lo) if hi > lo else 0.0
        offset = -lo * scale
        mode = "linear"
        text = (f"{out} output: intensities rescaled linearly from [{lo:g}, {hi:g}] to [0, {top}] "
                f"(stored = value * {scale:.6g} {'-' if offset < 0 else '+'} {abs(offset):.6g})")
        log.warning("%s: %s; write float32 to keep the original values", volume.name, text)
    info = {"dtype": str(out), "mode": mode, "input_min": lo, "input_max": hi, "scale": scale,
            "offset": offset, "text": text}
    volume.metadata["rescale"] = info

    def convert(block: np.ndarray) -> np.ndarray:
        block = np.asarray(block)
        if mode == "none" and is_int:
            return block.astype(out)
        values = block.astype(np.float64) * scale + offset if mode == "linear" else block
        return np.clip(np.rint(values), 0, top).astype(out)

    return convert, info


def rescale_json(info: dict | None) -> str | None:
    return None if info is None else json.dumps(info, sort_keys=True)


def write_volume(volume: Volume, path: str | os.PathLike, *, dtype: str = "float32",
                 inputs: Sequence[str | os.PathLike] = (), format: str | None = None,
                 overwrite: bool = True) -> Path:
    """Write ``volume`` atomically; the format follows the extension unless ``format`` is given.

    Parameters
    ----------
    volume
        The volume to write (lazy data is read block by block).
    path
        ``.tif`` (ImageJ hyperstack), ``.ome.tif`` (OME-TIFF), ``.h5`` (dataset ``data`` with
        ``element_size_um``) or ``.zarr`` (OME-Zarr, NGFF 0.4, one scale level).
    dtype
        ``float32`` (default), ``uint16`` or ``uint8`` (see :func:`plan_conversion`).
    inputs
        Input files of the run; the output may not overwrite any of them nor ``volume.path``.
    format
        Force ``imagej``, ``tiff`` (plain, JSON metadata), ``ome-tiff``, ``hdf5`` or ``ome-zarr``.
    overwrite
        Replace an existing output (default; never a folder holding files isoapp did not write).

    Returns
    -------
    Path
        The absolute path written.

    Raises
    ------
    OutputError
        Output equals an input, its folder does not exist, or it cannot be written.
    InputError
        The data contains NaN or Inf.
    """
    fmt = output_format(path, format)
    out = check_output_path(path, [*inputs, volume.path], overwrite=overwrite)
    if str(dtype) not in OUTPUT_DTYPES:
        raise ConfigError(f"output dtype {dtype!r} is not supported; choose one of {', '.join(OUTPUT_DTYPES)}")
    volume.check_finite()
    convert, info = plan_conversion(volume, str(dtype))
    writer = registry.get(fmt).load("writer")
    try:
        with atomic_path(out) as tmp:
            writer(tmp, volume, convert=convert, dtype=np.dtype(dtype), rescale=info, fmt=fmt)
    except OSError as exc:
        raise OutputError(f"could not write {out}: {exc.strerror or exc}; check free disk space and "
                          "write permission of the folder") from exc
    log.info("wrote %s (%s, %s, %s)", out, fmt, volume.axes, dtype)
    return out
