"""HDF5 reading and writing (Fiji HDF5 plugin / ilastik conventions).

The voxel size is the dataset attribute ``element_size_um`` = ``(z, y, x)``. Axes come from an
``axes`` string attribute, ilastik's ``axistags`` JSON, or the number of dimensions
(3: ZYX, 4: CZYX, 5: TCZYX). isoapp writes the dataset ``data``.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ...core.errors import InputError
from ...core.volume import Volume
from . import LazyArray, RawImage, iter_blocks, rescale_json, tidy

log = logging.getLogger(__name__)

DEFAULT_AXES = {3: "ZYX", 4: "CZYX", 5: "TCZYX"}
_FIX = "re-export it (in Fiji: File > Export > HDF5) or copy it again"


def list_datasets(f: h5py.File) -> list[tuple[str, tuple[int, ...], str]]:
    """All datasets in an open file as ``(path, shape, dtype)``."""
    found: list[tuple[str, tuple[int, ...], str]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(("/" + name, tuple(obj.shape), str(obj.dtype)))

    f.visititems(visit)
    return found


def _listing(found: list) -> str:
    if not found:
        return "it holds no datasets"
    shown = "; ".join(f"{n} {s} {d}" for n, s, d in found[:12])
    return f"datasets: {shown}" + (f" (+{len(found) - 12} more)" if len(found) > 12 else "")


def _select(f: h5py.File, path: Path, dataset: str | None) -> h5py.Dataset:
    found = list_datasets(f)
    if dataset:
        name = "/" + dataset.strip("/")
        obj = f.get(name)
        if not isinstance(obj, h5py.Dataset):
            raise InputError(f"{path.name} has no dataset {dataset!r}; {_listing(found)}")
        return obj
    volumes = [n for n, s, _ in found if len(s) >= 3]
    if len(volumes) == 1:
        return f[volumes[0]]
    if not volumes:
        raise InputError(f"{path.name} holds no 3D dataset ({_listing(found)}); a 3D stack (Z, Y, X) is required")
    raise InputError(f"{path.name} holds {len(volumes)} 3D datasets ({', '.join(volumes)}); "
                     "choose one with --dataset PATH")


def _axes(ds: h5py.Dataset) -> str | None:
    value = ds.attrs.get("axes")
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and len(value) == ds.ndim:
        return value.upper()
    tags = ds.attrs.get("axistags")
    if tags is not None:
        try:
            keys = "".join(a["key"] for a in json.loads(tags if isinstance(tags, str) else tags.decode())["axes"])
            if len(keys) == ds.ndim:
                return keys.upper()
        except (ValueError, KeyError, TypeError, AttributeError):
            log.debug("unreadable axistags on %s", ds.name)
    return DEFAULT_AXES.get(ds.ndim)


def _voxel(ds: h5py.Dataset, path: Path) -> tuple[float | None, float | None, float | None]:
    value = ds.attrs.get("element_size_um")
    if value is None:
        return None, None, None
    sizes = np.asarray(value, dtype=float).ravel()
    if sizes.size < 3:
        log.warning("%s: element_size_um %s has fewer than 3 values; ignoring it", path.name, sizes.tolist())
        return None, None, None
    return tuple(tidy(v) for v in sizes[-3:])  # type: ignore[return-value]


def read(path: Path, *, dataset: str | None = None, lazy: bool = False) -> RawImage:
    """Read one dataset of an HDF5 file; see :func:`isoapp.data.io.read_volume`."""
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path.name} is not a readable HDF5 file ({exc}); {_FIX}") from exc
    try:
        ds = _select(f, path, dataset)
        if ds.ndim < 3:
            raise InputError(f"{path.name}: dataset {ds.name} has shape {ds.shape}; "
                             "a 3D stack (Z, Y, X) is required (a single 2D plane cannot be made isotropic)")
        axes = _axes(ds)
        if axes is None:
            raise InputError(f"{path.name}: dataset {ds.name} has {ds.ndim} dimensions {ds.shape}; "
                             "isoapp reads 3D (ZYX), 4D (CZYX) or 5D (TCZYX) datasets")
        meta: dict = {"dataset": ds.name}
        rescale = ds.attrs.get("isoapp_rescale")
        if rescale is not None:
            try:
                meta["rescale"] = json.loads(rescale if isinstance(rescale, str) else rescale.decode())
            except (ValueError, AttributeError):
                pass
        voxel = _voxel(ds, path)
        if lazy:
            data: Any = LazyArray(ds.__getitem__, ds.shape, ds.dtype, close=f.close)
        else:
            data = ds[...]
            f.close()
    except InputError:
        f.close()
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        f.close()
        raise InputError(f"{path.name}: the HDF5 file is damaged ({exc}); {_FIX}") from exc
    return RawImage(data=data, axes=axes, voxel_size=voxel, fmt="hdf5", metadata=meta)


def write(tmp: Path, volume: Volume, *, convert, dtype: np.dtype, rescale: dict | None, fmt: str) -> None:
    """Write ``volume`` to ``tmp`` as dataset ``data`` with ``element_size_um`` (z, y, x).

    HDF5 cannot recover from a full disk (h5py raises RuntimeError, and closing the file then
    crashes the process), so the free space is checked before the file is created and before
    every block: the writer stops with ENOSPC while the file can still be closed cleanly.
    """
    shape = volume.shape
    nz, ny, nx = volume.spatial_shape
    depth = min(nz, 16)
    chunks = (1,) * (len(shape) - 3) + (depth, min(ny, 256), min(nx, 256))
    n_chunks = int(np.prod([-(-s // c) for s, c in zip(shape, chunks, strict=True)]))
    chunk_bytes = int(np.prod(chunks)) * np.dtype(dtype).itemsize
    total = n_chunks * chunk_bytes + _HEADER_BYTES
    per_block = -(-ny // chunks[-2]) * -(-nx // chunks[-1]) * chunk_bytes  # one z block allocates these chunks
    _check_space(tmp, total)
    written = 0
    with h5py.File(tmp, "w") as f:
        with _h5_errors():
            ds = f.create_dataset("data", shape=shape, dtype=dtype, chunks=chunks)
            ds.attrs["element_size_um"] = np.asarray(volume.voxel_size, dtype=np.float64)
            ds.attrs["axes"] = volume.axes
            if rescale:
                ds.attrs["isoapp_rescale"] = rescale_json(rescale)
        for key in iter_blocks(shape, depth):
            block = convert(np.asarray(volume.data[key]))
            _check_space(tmp, total - written)  # what is still to be allocated, headers included
            with _h5_errors():
                ds[key] = block
            written += per_block


@contextmanager
def _h5_errors():
    """h5py reports failed writes (e.g. ENOSPC that appeared after the check) as RuntimeError."""
    try:
        yield
    except RuntimeError as exc:
        raise OSError(errno.EIO, f"HDF5 write failed ({str(exc).splitlines()[0][:120]})") from None


_HEADER_BYTES = 2**20


def _check_space(tmp: Path, needed: int) -> None:
    try:
        free = shutil.disk_usage(tmp.parent).free
    except OSError:
        return
    if free < needed:
        raise OSError(errno.ENOSPC, f"No space left on device (about {needed / 2**20:.1f} MiB needed, "
                                    f"{free / 2**20:.1f} MiB free)")
