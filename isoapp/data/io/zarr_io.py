"""OME-Zarr / Zarr reading and writing (optional: ``pip install isoapp[zarr]``).

Reads NGFF multiscales (0.4 in ``.zattrs``, 0.5 under ``ome``): the first (full-resolution)
dataset, its axes and units, and the ``scale`` coordinate transformations (dataset-level
times global). Writes NGFF 0.4 (Zarr format 2) with a single scale level.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import InputError, OutputError
from ...core.volume import Volume, unit_to_um_scale
from . import LazyArray, RawImage, iter_blocks, tidy
from .links import check_store_links
from .origin import raised_by_library

log = logging.getLogger(__name__)

DEFAULT_AXES = {3: "ZYX", 4: "CZYX", 5: "TCZYX"}
_INSTALL = "pip install isoapp[zarr]"
AXIS_META = {  # NGFF axis metadata, shared with the block-wise sink
    "T": {"name": "t", "type": "time", "unit": "second"},
    "C": {"name": "c", "type": "channel"},
    "Z": {"name": "z", "type": "space", "unit": "micrometer"},
    "Y": {"name": "y", "type": "space", "unit": "micrometer"},
    "X": {"name": "x", "type": "space", "unit": "micrometer"},
}


def _zarr(error: type[Exception], path: Path):
    try:
        import zarr
    except ImportError as exc:
        raise error(f"{path.name}: Zarr support is not installed; run `{_INSTALL}` and try again") from exc
    return zarr


def _is_array(obj: Any) -> bool:
    return hasattr(obj, "shape") and hasattr(obj, "dtype") and not hasattr(obj, "group_keys")


def _multiscales(attrs: dict) -> list | None:
    ms = attrs.get("multiscales")
    if ms is None and isinstance(attrs.get("ome"), dict):
        ms = attrs["ome"].get("multiscales")
    return ms if isinstance(ms, list) and ms else None


def _list_arrays(group: Any, prefix: str = "") -> list[tuple[str, tuple[int, ...]]]:
    found = []
    for name, arr in group.arrays():
        found.append((f"{prefix}{name}", tuple(arr.shape)))
    for name, sub in group.groups():
        found.extend(_list_arrays(sub, f"{prefix}{name}/"))
    return found


def _scale(transforms: Any, n: int) -> np.ndarray:
    scale = np.ones(n)
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale" and len(t.get("scale", [])) == n:
            scale = scale * np.asarray(t["scale"], dtype=float)
    return scale


def _from_multiscales(group: Any, ms: dict, path: Path) -> tuple[Any, str, tuple]:
    datasets = ms.get("datasets") or []
    if not datasets:
        raise InputError(f"{path.name}: the OME-Zarr multiscales lists no datasets; re-export the file")
    arr = group[datasets[0]["path"]]
    n = arr.ndim
    axes_meta = ms.get("axes") or []
    names = [a.get("name", "") if isinstance(a, dict) else str(a) for a in axes_meta]
    axes = "".join(nm[:1].upper() for nm in names) if len(names) == n else DEFAULT_AXES.get(n, "")
    scale = _scale(datasets[0].get("coordinateTransformations"), n) * _scale(ms.get("coordinateTransformations"), n)
    voxel: list[float | None] = []
    for ax in "ZYX":
        if ax not in axes:
            voxel.append(None)
            continue
        i = axes.index(ax)
        unit = axes_meta[i].get("unit") if i < len(axes_meta) and isinstance(axes_meta[i], dict) else None
        if unit is None:
            factor = 1.0 if not np.isclose(scale[i], 1.0) else None  # a scale without unit: assume µm
        else:
            try:
                factor = unit_to_um_scale(unit)
            except InputError as exc:
                raise InputError(f"{path.name}: {exc}") from exc
        voxel.append(None if factor is None else tidy(scale[i] * factor))
    return arr, axes, tuple(voxel)


def read(path: Path, *, dataset: str | None = None, lazy: bool = False) -> RawImage:
    """Read an OME-Zarr / Zarr folder; see :func:`isoapp.data.io.read_volume`."""
    zarr = _zarr(InputError, path)
    if not path.is_dir():
        raise InputError(f"{path.name} is not a Zarr folder; a .zarr path must be a directory")
    check_store_links(path)  # a chunk linked to a file outside the store is never read as image data
    try:
        root = zarr.open(str(path), mode="r")
        obj = root[dataset.strip("/")] if dataset else root
    except KeyError as exc:
        listing = ", ".join(n for n, _ in _list_arrays(root)) if not _is_array(root) else "(a single array)"
        raise InputError(f"{path.name} has no dataset {dataset!r}; arrays: {listing}") from exc
    except Exception as exc:  # zarr's own failures on a damaged store; isoapp bugs propagate
        if not (isinstance(exc, OSError) or raised_by_library(exc)):
            raise
        raise InputError(f"{path.name} is not a readable Zarr store ({exc}); re-export it or copy it again") from exc
    meta: dict = {}
    voxel: tuple = (None, None, None)
    fmt = "zarr"
    try:
        attrs = dict(obj.attrs)
        ms = None if _is_array(obj) else _multiscales(attrs)
        if ms is not None:
            arr, axes, voxel = _from_multiscales(obj, ms[0], path)
            fmt = "ome-zarr"
        elif _is_array(obj):
            arr = obj
        else:
            volumes = [(n, s) for n, s in _list_arrays(obj) if len(s) >= 3]
            if len(volumes) != 1:
                what = ", ".join(n for n, _ in volumes) or "none"
                raise InputError(f"{path.name} holds {len(volumes)} 3D arrays ({what}); choose one with --dataset PATH")
            arr = obj[volumes[0][0]]
        arr_attrs = dict(arr.attrs)
        if ms is None:
            axes = str(arr_attrs.get("axes", DEFAULT_AXES.get(arr.ndim, "")))
            if "element_size_um" in arr_attrs:
                voxel = tuple(tidy(v) for v in list(arr_attrs["element_size_um"])[-3:])
        isoapp_attrs = attrs.get("isoapp") or arr_attrs.get("isoapp") or {}
        if isinstance(isoapp_attrs, dict) and isoapp_attrs.get("rescale"):
            meta["rescale"] = isoapp_attrs["rescale"]
        if arr.ndim < 3:
            raise InputError(f"{path.name}: the array has shape {tuple(arr.shape)}; a 3D stack (Z, Y, X) is required")
        if not axes:
            raise InputError(f"{path.name}: the array has {arr.ndim} dimensions; pass its axis order, e.g. axes='TCZYX'")
        meta["dataset"] = dataset or None
        data = LazyArray(arr.__getitem__, arr.shape, arr.dtype) if lazy else np.asarray(arr[...])
    except InputError:
        raise
    except Exception as exc:
        if not (isinstance(exc, OSError) or raised_by_library(exc)):
            raise
        raise InputError(f"{path.name}: the Zarr store is damaged or incomplete ({exc}); re-export it") from exc
    return RawImage(data=data, axes=axes, voxel_size=voxel, fmt=fmt, metadata=meta)


def write(tmp: Path, volume: Volume, *, convert, dtype: np.dtype, rescale: dict | None, fmt: str) -> None:
    """Write ``volume`` to the folder ``tmp`` as OME-Zarr (NGFF 0.4, one scale level)."""
    zarr = _zarr(OutputError, tmp)
    shape = volume.shape
    nz, ny, nx = volume.spatial_shape
    depth = min(nz, 16)
    chunks = (1,) * (len(shape) - 3) + (depth, min(ny, 256), min(nx, 256))
    major = int(str(zarr.__version__).split(".")[0])
    if major >= 3:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        arr = group.create_array("0", shape=shape, dtype=dtype, chunks=chunks)
    else:
        group = zarr.open_group(str(tmp), mode="w")
        arr = group.create_dataset("0", shape=shape, dtype=dtype, chunks=chunks)
    scale = [1.0] * (len(shape) - 3) + [float(v) for v in volume.voxel_size]
    group.attrs["multiscales"] = [{
        "version": "0.4",
        "name": volume.name,
        "axes": [AXIS_META[a] for a in volume.axes],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        "type": "none",
        "metadata": {"description": "written by isoapp (single scale level)"},
    }]
    if rescale:
        group.attrs["isoapp"] = {"rescale": json.loads(json.dumps(rescale))}
    for key in iter_blocks(shape, depth):
        arr[key] = convert(np.asarray(volume.data[key]))
