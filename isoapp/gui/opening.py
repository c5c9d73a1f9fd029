"""Turning a path into a Volume: format dispatch, the HDF5 dataset chooser and Bio-Formats via Fiji."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QWidget

from ..errors import InputError
from ..io import SUPPORTED_EXTENSIONS, read_volume
from ..volume import Volume
from . import dialogs

log = logging.getLogger(__name__)

HDF5_EXT = (".h5", ".hdf5", ".hdf")
BIOFORMATS_EXT = (".czi", ".nd2", ".lif", ".lsm", ".oib", ".oif", ".ims", ".vsi", ".dv", ".ics", ".ids",
                  ".stk", ".zvi", ".sld", ".lei", ".nd")
FILE_FILTER = ("Images (*.tif *.tiff *.h5 *.hdf5 *.hdf " + " ".join(f"*{e}" for e in BIOFORMATS_EXT) + ");;"
               "TIFF / OME-TIFF (*.tif *.tiff);;HDF5 (*.h5 *.hdf5 *.hdf);;"
               "Bio-Formats via Fiji (" + " ".join(f"*{e}" for e in BIOFORMATS_EXT) + ");;All files (*)")
SAVE_FILTER = "ImageJ TIFF (*.tif);;OME-TIFF (*.ome.tif);;HDF5 (*.h5);;OME-Zarr (*.zarr)"


def split_recent(entry: str) -> tuple[str, str | None]:
    """Recent-file entries are ``path`` or ``path::dataset``."""
    if "::" in entry:
        path, ds = entry.rsplit("::", 1)
        return path, ds or None
    return entry, None


def list_datasets(path: str | Path) -> list[tuple[str, tuple[int, ...], str]]:
    """The HDF5 datasets with at least 3 dimensions, as ``(name, shape, dtype)``."""
    import h5py

    from ..io.hdf5 import list_datasets as _all

    try:
        with h5py.File(path, "r") as f:
            found = _all(f)
    except OSError as exc:
        raise InputError(f"{Path(path).name} is not a readable HDF5 file ({exc}); re-export it "
                         "(in Fiji: File > Export > HDF5) or copy it again") from exc
    return [d for d in found if len(d[1]) >= 3]


LABEL_WORDS = ("label", "seg", "mask", "annot", "pred", "prob", "truth", "instance", "boundar")
RAW_WORDS = ("raw", "image", "data", "signal", "intensit", "volume", "stack", "channel", "input")


def dataset_rank(name: str, dtype: str) -> tuple[int, int]:
    """Sort key putting raw images first and segmentations (``/label``, masks, predictions) last."""
    import re

    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    leaf = words[-1:] if words else []
    if any(w == "gt" or w.startswith(LABEL_WORDS) for w in leaf):
        return (2, 0)
    if any(w.startswith(RAW_WORDS) for w in leaf):
        return (0, 0)
    kind = str(dtype).lower()
    return (1, 0 if kind.startswith(("uint16", "float", "int16", "uint8")) else 1)


def is_supported(path: str | Path) -> bool:
    name = str(path).lower().rstrip("/\\")
    return name.endswith(tuple(SUPPORTED_EXTENSIONS)) or name.endswith(BIOFORMATS_EXT)


def load_volume(parent: QWidget | None, path: str | Path, dataset: str | None = None,
                fiji_session: Callable[[], Any] | None = None) -> tuple[Volume | None, str | None]:
    """Read ``path``; returns ``(volume, dataset)`` or ``(None, None)`` when the user cancelled a chooser.

    Raises
    ------
    IsoappError
        Unreadable, corrupt or unsupported files (the caller shows the dialog).
    """
    p = Path(path)
    name = p.name.lower().rstrip("/\\")
    if name.endswith(HDF5_EXT) and dataset is None and p.is_file():
        found = list_datasets(p)
        if not found:
            raise InputError(f"{p.name} holds no 3D dataset; it needs a (Z, Y, X) array")
        found = sorted(found, key=lambda d: dataset_rank(d[0], d[2]))  # stable: file order otherwise
        if len(found) > 1:
            labels = [f"{n}  {tuple(s)}  {d}" for n, s, d in found]  # the first is preselected
            choice = dialogs.choose(parent, "HDF5 dataset", f"{p.name} holds several stacks; open which?", labels)
            if choice is None:
                return None, None
            dataset = found[labels.index(choice)][0]
        else:
            dataset = found[0][0]
    if name.endswith(BIOFORMATS_EXT):
        if fiji_session is None:
            raise InputError(f"{p.name}: this format is read through Fiji's Bio-Formats, which is not available")
        log.info("reading %s with Bio-Formats through Fiji", p.name)
        return fiji_session().read_bioformats(p), None
    if not name.endswith(tuple(SUPPORTED_EXTENSIONS)):
        raise InputError(f"{p.name}: unsupported file type; open TIFF, OME-TIFF, HDF5, OME-Zarr or a "
                         "Bio-Formats file (in Fiji: File > Save As > Tiff...)")
    return read_volume(p, dataset=dataset), dataset


def describe(volume: Volume) -> str:
    """HTML for the info panel: shape, dtype, voxel size, anisotropy, memory."""
    dz, dy, dx = volume.voxel_size
    md = volume.metadata
    mem = volume.nbytes / 2**20
    rows = [
        ("Name", volume.name),
        ("File", str(volume.path) if volume.path else "—"),
        ("Format", str(md.get("format", "—")) + (f" ({md['dataset']})" if md.get("dataset") else "")),
        ("Axes / shape", f"{volume.axes} {' x '.join(str(s) for s in volume.shape)}"),
        ("Dtype", str(volume.dtype)),
        ("Voxel (z, y, x)", f"{dz:g} x {dy:g} x {dx:g} µm"),
        ("Anisotropy", f"{volume.anisotropy:.3g} (dz/dxy)"),
        ("Memory", f"{mem:.1f} MiB" if mem < 1024 else f"{mem / 1024:.2f} GiB"),
    ]
    html = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    warn = ("" if md.get("calibrated", True) else
            "<p style='color:#b36b00'>No voxel size in the file: type it under Voxel (µm) below "
            "(or fix the calibration in Fiji: Image &gt; Properties).</p>")
    return f"<table cellspacing='2'>{html}</table>{warn}"
