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
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import ConfigError, InputError, OutputError
from ...core.volume import Volume, canonicalize_axes
from . import registry
from .arrays import LazyArray
from .atomic import atomic_path, check_output_path
from .convert import Conversion, plan_conversion, rescale_json  # noqa: F401 - used by the writers

log = logging.getLogger(__name__)

__all__ = [
    "SUPPORTED_EXTENSIONS", "LazyArray", "RawImage", "atomic_path", "check_output_path",
    "describe_file", "read_volume", "write_volume",
]

#: Every extension read_volume reads (vendor formats through Bio-Formats need Java).
SUPPORTED_EXTENSIONS = registry.read_extensions()
OUTPUT_DTYPES = ("float32", "uint16", "uint8")
_WRITE_FORMATS = tuple(f.name for f in registry.writable())


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


def write_volume(volume: Volume, path: str | os.PathLike, *, dtype: str = "float32",
                 inputs: Sequence[str | os.PathLike] = (), format: str | None = None,
                 overwrite: bool = True, conversion: Conversion | None = None) -> Path:
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
    conversion
        The integer conversion fixed before the data existed (a restoration's, planned from its
        input by :func:`~isoapp.data.io.convert.restoration_conversion`, as block-wise runs do);
        None: planned from ``volume`` itself (:func:`~isoapp.data.io.convert.plan_conversion`).

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
    if conversion is not None and np.dtype(conversion.dtype) != np.dtype(dtype):
        raise ConfigError(f"the conversion is to {conversion.dtype} but the output dtype is {dtype}")
    if conversion is None or conversion.dtype == "float32":
        convert, info = plan_conversion(volume, str(dtype))
    else:
        convert, info = conversion, conversion.describe()
        volume.metadata["rescale"] = info
    writer = registry.get(fmt).load("writer")
    try:
        with atomic_path(out) as tmp:
            writer(tmp, volume, convert=convert, dtype=np.dtype(dtype), rescale=info, fmt=fmt)
    except OSError as exc:
        raise OutputError(f"could not write {out}: {exc.strerror or exc}; check free disk space and "
                          "write permission of the folder") from exc
    log.info("wrote %s (%s, %s, %s)", out, fmt, volume.axes, dtype)
    return out
