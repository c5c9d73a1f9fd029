"""Turning a path into a Volume: the format registry, and choosers for HDF5 datasets and Bio-Formats series."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QWidget

from ..core.errors import InputError, IsoappError
from ..core.volume import Volume
from ..data.io import read_volume, registry
from . import dialogs

log = logging.getLogger(__name__)

# all from the format registry (isoapp.data.io.registry): a new format needs no change here
BIOFORMATS_EXT = registry.get("bioformats").extensions
FILE_FILTER = registry.open_filter()
SAVE_FILTER = registry.save_filter()


def split_recent(entry: str) -> tuple[str, str | None]:
    """Recent-file entries are ``path`` or ``path::dataset``."""
    if "::" in entry:
        path, ds = entry.rsplit("::", 1)
        return path, ds or None
    return entry, None


def list_datasets(path: str | Path) -> list[tuple[str, tuple[int, ...], str]]:
    """The HDF5 datasets with at least 3 dimensions, as ``(name, shape, dtype)``."""
    import h5py

    from ..data.io.hdf5 import list_datasets as _all

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
    """True when some reader of the format registry takes ``path``'s extension."""
    return str(path).lower().rstrip("/\\").endswith(registry.read_extensions())


def is_writable(path: str | Path) -> bool:
    """True when the extension of ``path`` picks one of the registry's writers."""
    return registry.writer_for(path) is not None


def load_volume(parent: QWidget | None, path: str | Path, dataset: str | None = None,
                fiji_session: Callable[[], Any] | None = None,
                limit_bytes: int | None = None) -> tuple[Volume | None, str | None]:
    """Read ``path``; returns ``(volume, dataset)`` or ``(None, None)`` when the user cancelled a chooser.

    A stack whose in-memory restoration would need more than ``limit_bytes`` (default: half the
    free memory, as in the CLI) stays in its file: the volume is lazy, the viewer reads the planes
    it shows and a run restores it block by block into a file.

    Raises
    ------
    IsoappError
        Unreadable, corrupt or unsupported files (the caller shows the dialog).
    """
    p = Path(path)
    family = registry.reader_for(p).family  # InputError naming what isoapp opens
    if family == "hdf5" and dataset is None and p.is_file():
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
    if family == "bioformats" and p.is_file():
        if fiji_session is not None:
            try:  # start Java the way the GUI's Fiji bridge does (its Fiji.app setting); reused below
                fiji_session()
            except IsoappError as exc:  # the reader starts Java itself, or says what to install
                log.info("Fiji bridge not available (%s); reading %s with the Bio-Formats jar", exc, p.name)
        if dataset is None:
            from fiji_bridge.bioformats import list_series

            found = list_series(p)
            if len(found) > 1:
                labels = [f"{i}: {n or 'series ' + str(i)}  (T, C, Z, Y, X) = {tuple(s)}  {d}" for i, n, s, d in found]
                choice = dialogs.choose(parent, "Bio-Formats series", f"{p.name} holds several series; open which?",
                                        labels)
                if choice is None:
                    return None, None
                dataset = str(found[labels.index(choice)][0])
        log.info("reading %s with Bio-Formats", p.name)
    return open_bounded(p, dataset, limit_bytes), dataset


def open_bounded(path: Path, dataset: str | None, limit_bytes: int | None) -> Volume:
    """The stack in memory when its restoration fits ``limit_bytes``, else left lazy in its file."""
    from ..run.restore import fits_in_memory, in_memory_need

    vol = read_volume(path, dataset=dataset, lazy=True)
    if fits_in_memory(vol, limit_bytes=limit_bytes):
        return vol.load()
    need = in_memory_need(vol)
    log.info("%s: restoring it in memory would need %s; it stays in its file (the views read the planes they show) "
             "and a run restores it block by block into a file", vol.name,
             f"{need / 2**30:.1f} GiB" if need >= 2**30 else f"{need / 2**20:.0f} MiB")
    return vol


def describe(volume: Volume) -> str:
    """HTML for the info panel: shape, dtype, voxel size, anisotropy, memory."""
    dz, dy, dx = volume.voxel_size
    md = volume.metadata
    mem = volume.nbytes / 2**20
    rows = [
        ("Name", volume.name),
        ("File", str(volume.path) if volume.path else "—"),
        ("Format", (registry.title(md["format"], md) if md.get("format") else "—")
         + (f" ({md['dataset']})" if md.get("dataset") else "")),
        ("Axes / shape", f"{volume.axes} {' x '.join(str(s) for s in volume.shape)}"),
        ("Dtype", str(volume.dtype)),
        *([("Channels", ", ".join(n or "?" for n in md["channel_names"]))] if md.get("channel_names") else []),
        ("Voxel (z, y, x)", f"{dz:g} x {dy:g} x {dx:g} µm"),
        ("Anisotropy", f"{volume.anisotropy:.3g} (dz/dxy)"),
        ("Memory", (f"{mem:.1f} MiB" if mem < 1024 else f"{mem / 1024:.2f} GiB")
         + (" (read from the file as shown; restored block by block)" if volume.is_lazy else "")),
    ]
    html = "".join(f"<tr><td><b>{k}</b></td><td>{v}</td></tr>" for k, v in rows)
    warn = ("" if md.get("calibrated", True) else
            "<p style='color:#b36b00'>No voxel size in the file: type it under Voxel (µm) below "
            "(or fix the calibration in Fiji: Image &gt; Properties).</p>")
    return f"<table cellspacing='2'>{html}</table>{warn}"
