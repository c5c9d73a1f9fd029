"""The format registry: one entry per file format, the single place that knows extensions.

Each :class:`FileFormat` says what a format is called, which file-name endings it has, which
function reads it and which writes it (``"module:function"`` strings imported on first use, so
``import isoapp.data.io`` stays cheap and optional back-ends such as ``zarr`` or Java stay unloaded),
whether it is a folder store, and how it appears in the GUI's file dialogs. Everything that used
to list extensions (format detection, ``SUPPORTED_EXTENSIONS``, output-format choice, the GUI's
open/save filters, the CLI's help and error texts, ``isoapp info``) asks this module, so a new
format is one entry in :data:`FORMATS`.

Reader functions are called as ``read(path, *, dataset, lazy) -> RawImage``; writer functions as
``write(tmp, volume, *, convert, dtype, rescale, fmt)`` with ``fmt`` the entry's name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...core.errors import ConfigError, InputError, OutputError


@dataclass(frozen=True)
class FileFormat:
    """One file format.

    Attributes
    ----------
    name
        The registry key; for formats isoapp writes, also the output-format name (``--format``).
    title
        What users call it (``"ImageJ TIFF"``); shown by ``isoapp info`` and the GUI.
    extensions
        Lower-case file-name endings (``".ome.tif"``); the first is the one a save dialog offers.
        Empty for a format that is only written on request (plain TIFF).
    family
        The reader family (:func:`detect_format`'s answer): ``tiff``, ``hdf5``, ``zarr``, ``bioformats``.
    reader, writer
        ``"module:function"``; a leading dot is relative to :mod:`isoapp.data.io`. None when the format
        cannot be read (or written) by isoapp.
    folder
        The format is a folder (a Zarr store), not a file.
    aliases
        Other names accepted for the output format (``"zarr"``, ``"h5"``).
    variants
        ``(fmt, title)`` pairs for other values of ``RawImage.fmt`` its reader reports
        (``("zarr", "Zarr")`` for a Zarr array without NGFF metadata).
    group
        The GUI open-dialog filter this format is listed under (entries sharing it are merged);
        None lists it under ``title``.
    needs
        What reading it needs beyond isoapp's own dependencies (``"Java"``), for texts listing it.
    blockwise
        Block-wise restoration can write it as blocks finish (:class:`isoapp.data.io.sinks.SinkSpec`).
    """

    name: str
    title: str
    extensions: tuple[str, ...]
    family: str
    reader: str | None = None
    writer: str | None = None
    folder: bool = False
    aliases: tuple[str, ...] = ()
    variants: tuple[tuple[str, str], ...] = ()
    group: str | None = None
    needs: str = ""
    blockwise: bool = False

    def load(self, which: str = "reader") -> Callable[..., Any]:
        """Import and return the reader (or ``"writer"``) function."""
        spec = getattr(self, which)
        if spec is None:
            raise ConfigError(f"isoapp cannot {which[:-2]} {self.title} files")
        module, func = spec.split(":")
        return getattr(importlib.import_module(module, __package__), func)


_TIFF, _HDF5, _ZARR = ".tiff", ".hdf5", ".zarr_io"
#: Vendor formats read through Bio-Formats (Java); every Bio-Formats reader is tried on them.
BIOFORMATS_EXTENSIONS = (
    ".czi", ".nd2", ".lif", ".lof", ".lsm", ".oib", ".oif", ".oir", ".ims", ".vsi", ".dv", ".r3d",
    ".ics", ".ids", ".stk", ".zvi", ".sld", ".lei", ".nd", ".mvd2",
)

#: Every format isoapp knows, in the order the GUI's dialogs list them.
FORMATS: tuple[FileFormat, ...] = (
    FileFormat("imagej", "ImageJ TIFF", (".tif", ".tiff"), "tiff", f"{_TIFF}:read", f"{_TIFF}:write",
               aliases=("imagej-tiff",), variants=(("imagej-tiff", "ImageJ TIFF"),), group="TIFF / OME-TIFF",
               blockwise=True),
    FileFormat("ome-tiff", "OME-TIFF", (".ome.tif", ".ome.tiff"), "tiff", f"{_TIFF}:read", f"{_TIFF}:write",
               aliases=("ome",), group="TIFF / OME-TIFF", blockwise=True),
    FileFormat("tiff", "TIFF", (), "tiff", f"{_TIFF}:read", f"{_TIFF}:write", aliases=("tif",),
               blockwise=True),
    FileFormat("hdf5", "HDF5", (".h5", ".hdf5", ".hdf"), "hdf5", f"{_HDF5}:read", f"{_HDF5}:write",
               aliases=("h5",)),
    FileFormat("ome-zarr", "OME-Zarr", (".zarr", ".ome.zarr"), "zarr", f"{_ZARR}:read", f"{_ZARR}:write",
               folder=True, aliases=("zarr",), variants=(("zarr", "Zarr"),), blockwise=True),
    FileFormat("bioformats", "Bio-Formats", BIOFORMATS_EXTENSIONS, "bioformats", "fiji_bridge.bioformats:read",
               group="Bio-Formats: vendor formats, needs Java", needs="Java"),
)


def get(name: str) -> FileFormat:
    """The entry called ``name`` (or one of its aliases); ConfigError for an unknown name."""
    key = name.lower().replace("_", "-")
    for f in FORMATS:
        if key == f.name or key in f.aliases:
            return f
    raise ConfigError(f"unknown file format {name!r}; choose one of {', '.join(f.name for f in FORMATS)}")


def _name_of(path: str | os.PathLike) -> str:
    return Path(str(path).rstrip("/\\")).name.lower()


def _match(path: str | os.PathLike, candidates: Iterable[FileFormat]) -> tuple[FileFormat, str] | None:
    """The entry with the longest extension ``path`` ends with (``.ome.tif`` beats ``.tif``)."""
    name = _name_of(path)
    best: tuple[FileFormat, str] | None = None
    for f in candidates:
        for ext in f.extensions:
            if name.endswith(ext) and (best is None or len(ext) > len(best[1])):
                best = (f, ext)
    return best


def readable() -> tuple[FileFormat, ...]:
    """The entries picked by extension for reading."""
    return tuple(f for f in FORMATS if f.reader and f.extensions)


def writable() -> tuple[FileFormat, ...]:
    """The entries isoapp writes (plain TIFF only on request: it has no extension of its own)."""
    return tuple(f for f in FORMATS if f.writer)


def read_extensions(*, native: bool = False) -> tuple[str, ...]:
    """Every extension :func:`isoapp.data.io.read_volume` reads (``native``: only those needing nothing extra)."""
    return tuple(dict.fromkeys(e for f in readable() if not (native and f.needs) for e in f.extensions))


def reader_for(path: str | os.PathLike, format: str | None = None) -> FileFormat:
    """The entry that reads ``path`` (by extension, or the one named ``format``).

    Raises
    ------
    InputError
        For an extension no entry reads; the message lists what isoapp reads.
    """
    if format is not None:
        f = get(format)
        if f.reader is None:
            raise ConfigError(f"isoapp cannot read {f.title} files; choose one of "
                              f"{', '.join(r.name for r in readable())}")
        return f
    found = _match(path, readable())
    if found is None:
        raise InputError(f"{Path(path).name}: unsupported file type; isoapp reads {describe_readable()} "
                         "(in Fiji: File > Save As > Tiff...)")
    return found[0]


def writer_for(path: str | os.PathLike) -> FileFormat | None:
    """The entry whose writer the extension of ``path`` picks, or None."""
    found = _match(path, writable())
    return found[0] if found else None


def output_format(path: str | os.PathLike, format: str | None = None) -> str:
    """The writer's name for ``path`` (``imagej``, ``ome-tiff``, ``tiff``, ``hdf5``, ``ome-zarr``).

    Raises
    ------
    ConfigError
        ``format`` names no format isoapp writes.
    OutputError
        No writer has the extension of ``path``.
    """
    names = ", ".join(f.name for f in writable())
    if format is not None:
        try:
            f = get(format)
        except ConfigError:
            f = None
        if f is None or f.writer is None:
            raise ConfigError(f"unknown output format {format!r}; choose one of {names}")
        return f.name
    f = writer_for(path)
    if f is None:
        raise OutputError(f"{Path(path).name}: cannot tell the output format from the extension; "
                          f"use {describe_writable()}")
    return f.name


def strip_extension(path: str | os.PathLike) -> str:
    """The file name without its format extension (``cells.ome.tif`` -> ``cells``)."""
    raw = Path(str(path).rstrip("/\\")).name
    found = _match(path, FORMATS)
    if found is None:
        return Path(raw).stem
    return raw[: -len(found[1])] or raw


def is_folder_format(path: str | os.PathLike) -> bool:
    """True when ``path``'s extension names a folder store (``.zarr``)."""
    found = _match(path, FORMATS)
    return bool(found and found[0].folder)


def title(fmt: str | None, metadata: dict | None = None) -> str:
    """The human name of a ``RawImage.fmt`` value (``"imagej-tiff"`` -> ``"ImageJ TIFF"``).

    Bio-Formats files add the vendor format Bio-Formats recognised (``metadata['bioformats_format']``).
    """
    if fmt is None:
        return "unknown"
    for f in FORMATS:
        for variant, text in f.variants:
            if fmt == variant:
                return text
    try:
        name = get(fmt).title
    except ConfigError:
        return str(fmt)
    detail = (metadata or {}).get("bioformats_format")
    return f"{name}: {detail}" if detail else name


def describe_readable() -> str:
    """One line naming the readable formats and their extensions, for help and error texts."""
    parts = [f"{f.title} ({f.needs + ': ' if f.needs else ''}{'/'.join(f.extensions)}{' folder' if f.folder else ''})"
             for f in readable()]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


def input_help() -> str:
    """Short text for a CLI input argument: ``"TIFF, OME-TIFF, HDF5, OME-Zarr or a Bio-Formats file (.czi, ...)"``."""
    native = [f.title.removeprefix("ImageJ ") for f in readable() if not f.needs]
    other = [f"a {f.title} file ({', '.join(f.extensions[:3])}...)" for f in readable() if f.needs]
    return ", ".join(native + other[:-1]) + (" or " + other[-1] if other else "")


def describe_writable() -> str:
    """``".tif (ImageJ TIFF), .ome.tif (OME-TIFF), .h5 (HDF5) or .zarr (OME-Zarr)"``."""
    items = [f"{f.extensions[0]} ({f.title})" for f in writable() if f.extensions]
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else "".join(items)


def blockwise_formats() -> tuple[str, ...]:
    """Output formats block-wise restoration writes as blocks finish."""
    return tuple(f.name for f in FORMATS if f.blockwise and f.writer)


def describe_blockwise() -> str:
    """``".tif (ImageJ TIFF), .ome.tif (OME-TIFF) or .zarr (OME-Zarr)"``."""
    items = [f"{f.extensions[0]} ({f.title})" for f in writable() if f.extensions and f.blockwise]
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else "".join(items)


def blockwise_extensions() -> tuple[str, ...]:
    """The extensions block-wise restoration writes (``.zarr``, ``.ome.tif``, ``.tif``...)."""
    return tuple(e for f in writable() if f.blockwise for e in f.extensions)


def blockwise_filter() -> str:
    """The GUI's save-dialog filter for a block-wise run's output, OME-Zarr first."""
    fmts = sorted((f for f in writable() if f.extensions and f.blockwise), key=lambda f: f.name != "ome-zarr")
    return ";;".join(f"{f.title} (*{f.extensions[0]})" for f in fmts)


def _patterns(exts: Iterable[str]) -> str:
    exts = list(dict.fromkeys(exts))
    kept = [e for e in exts if not any(o != e and e.endswith(o) for o in exts)]  # *.tif covers *.ome.tif
    return " ".join(f"*{e}" for e in kept)


def open_filter(*, folders: bool = False) -> str:
    """The GUI's open-dialog filter: all images, then one entry per format group, then all files.

    Folder formats (Zarr) are opened with a folder dialog and are left out unless ``folders``.
    """
    fmts = [f for f in readable() if folders or not f.folder]
    groups: dict[str, list[str]] = {}
    for f in fmts:
        label = f.group or f.title
        groups.setdefault(label, []).extend(f.extensions)
    items = [f"Images ({_patterns(e for f in fmts for e in f.extensions)})"]
    items += [f"{label} ({_patterns(exts)})" for label, exts in groups.items()]
    return ";;".join([*items, "All files (*)"])


def save_filter() -> str:
    """The GUI's save-dialog filter: one entry per format written by extension."""
    return ";;".join(f"{f.title} (*{f.extensions[0]})" for f in writable() if f.extensions)


def module(family: str) -> Any:
    """The Python module of a reader family (``tiff``, ``hdf5``, ``zarr``); kept for scripts."""
    for f in FORMATS:
        if f.family == family and (f.reader or f.writer):
            return importlib.import_module((f.reader or f.writer).split(":")[0], __package__)
    raise KeyError(family)
