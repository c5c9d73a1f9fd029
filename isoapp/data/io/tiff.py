"""TIFF reading and writing: ImageJ hyperstacks, OME-TIFF and plain (tifffile JSON) TIFF.

Calibration is read, in order of precedence, from OME ``PhysicalSize*`` attributes, the
tifffile JSON description (``voxel_size_um`` as written by isoapp), and ImageJ ``spacing`` +
``unit`` with the X/YResolution tags (pixels per unit, so size = 1 / resolution).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from ...core.errors import InputError
from ...core.volume import Volume, unit_to_um_scale
from . import LazyArray, RawImage, rescale_json, tidy
from .origin import raised_by_library

log = logging.getLogger(__name__)

# tifffile reports damaged files through its logger; without a handler Python would print them.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

_CORRUPT_HINTS = ("corrupt", "invalid", "truncat", "failed to reshape", "failed to read", "not a tiff")
_RESUNIT_UM = {2: 25400.0, 3: 1e4, 4: 1e3, 5: 1.0}  # inch, centimetre, millimetre, micrometre
_OME_UNIT_UM = {"Å": 1e-4, "pm": 1e-6, "cm": 1e4, "m": 1e6, "in": 25400.0}  # OME units beyond unit_to_um_scale
_DEFAULT_DPI = (72.0, 96.0, 300.0)  # inch "calibrations" written by non-microscopy software
_FIX = "re-save it from Fiji (File > Save As > Tiff...) or copy it again"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _tifffile_messages() -> Iterator[Callable[[], list[str]]]:
    """Collect tifffile's log messages and warnings instead of printing them.

    Yields a function returning the messages so far; they are logged at DEBUG on exit.
    """
    logger = logging.getLogger("tifffile")
    handler = _Collect()
    old = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")

            def messages() -> list[str]:
                return handler.messages + [str(w.message) for w in caught]

            yield messages
            for msg in messages():
                log.debug("tifffile: %s", msg)
    finally:
        logger.removeHandler(handler)
        logger.propagate = old


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


# ---------------------------------------------------------------------------- reading
def read(path: Path, *, dataset: str | None = None, lazy: bool = False) -> RawImage:
    """Read a TIFF file (series ``dataset`` or 0); see :func:`isoapp.data.io.read_volume`."""
    index = 0
    if dataset not in (None, ""):
        if not str(dataset).isdigit():
            raise InputError(f"{path.name}: a TIFF file has no dataset {dataset!r}; "
                             "--dataset takes a series number (0, 1, ...) for TIFF files")
        index = int(dataset)
    with _tifffile_messages() as messages:
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:  # tifffile's own failures on a damaged file; isoapp bugs propagate
            if not (isinstance(exc, OSError) or raised_by_library(exc)):
                raise
            raise InputError(f"{path.name} is not a readable TIFF file ({_short(exc)}); "
                             f"check that it is a complete image file, e.g. {_FIX}") from exc
        try:
            return _read_open(tif, path, index, lazy, messages)
        except InputError:
            tif.close()
            raise
        except Exception as exc:
            tif.close()
            if not (isinstance(exc, OSError) or raised_by_library(exc)):
                raise  # an isoapp bug: not the file's fault
            raise InputError(f"{path.name}: the TIFF file is damaged or truncated ({_short(exc)}); {_FIX}") from exc


def _read_open(tif: tifffile.TiffFile, path: Path, index: int, lazy: bool, messages) -> RawImage:
    if not tif.series:
        raise InputError(f"{path.name} holds no image; {_FIX}")
    if index >= len(tif.series):
        raise InputError(f"{path.name} has {len(tif.series)} image series; choose --dataset 0..{len(tif.series) - 1}")
    if len(tif.series) > 1 and index == 0:
        log.info("%s holds %d image series; reading series 0 (choose another with --dataset N)",
                 path.name, len(tif.series))
    series = tif.series[index]
    n_pages = len(tif.pages)  # walks the whole IFD chain: a cut-off file makes tifffile log an error
    problems = [m for m in messages() if any(h in m.lower() for h in _CORRUPT_HINTS)]
    n_planes = int(np.prod(series.shape, dtype=np.int64)) // max(1, int(np.prod(series.keyframe.shape)))
    multifile = bool(getattr(series, "is_multifile", False))  # e.g. Micro-Manager/OME file sets
    if 1 < n_pages < n_planes and not multifile:  # (a single page is a valid contiguous ImageJ/tifffile layout)
        problems.append(f"{n_pages} of {n_planes} image pages present")
    if problems:
        raise InputError(f"{path.name}: the TIFF file looks damaged or truncated ({problems[0][:160]}); {_FIX}")
    if not multifile:
        _check_extent(series, path)
    try:
        voxel, fmt, meta = _calibration(tif, series, index, path)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:  # tag values of the wrong kind
        raise InputError(f"{path.name}: the calibration tags are damaged ({_short(exc)}); {_FIX}") from exc
    axes = series.axes
    if fmt == "imagej-tiff" and "Z" not in axes and "C" in axes:
        n_c = series.shape[axes.index("C")]
        if voxel[0] is not None or n_c > 8:
            # tifffile (imagej=True without metadata axes) labels the first axis of a 3D array C
            log.warning("%s: the file declares %d channels and no Z slices; reading the channels as Z "
                        "slices (set Image > Properties in Fiji, or pass axes='CYX' if they really are channels)",
                        path.name, n_c)
            axes = axes.replace("C", "Z")
    if lazy:
        data = _lazy_data(tif, series, index, path)
    else:
        data = series.asarray()
        tif.close()
    meta["series"] = index
    return RawImage(data=data, axes=axes, voxel_size=voxel, fmt=fmt, metadata=meta)


def _check_extent(series: Any, path: Path) -> None:
    """Refuse files whose pixel data reach past the end of the file (truncated copies)."""
    size = os.path.getsize(path)
    if series.dataoffset is not None:
        end = int(series.dataoffset) + int(series.nbytes)
    else:
        end = 0
        for page in series.pages:
            if page is None:
                continue
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                end = max(end, int(offset) + int(count))
    if end > size:
        raise InputError(f"{path.name} is truncated: the image needs {end:,} bytes but the file has {size:,}; {_FIX}")


def _unit_scale(unit: Any, path: Path) -> float | None:
    try:
        return unit_to_um_scale(unit)
    except InputError as exc:
        raise InputError(f"{path.name}: {exc}") from exc


def _tag(page: Any, name: str) -> Any:
    tag = page.tags.get(name)
    return None if tag is None else tag.value


def _resolution_sizes(page: Any, scale: float | None) -> tuple[float | None, float | None]:
    """(dy, dx) in µm from the Y/XResolution tags (pixels per unit) and the unit's µm scale."""
    if scale is None:
        return None, None
    out = []
    for name in ("YResolution", "XResolution"):
        value = _tag(page, name)
        if value is None:
            out.append(None)
            continue
        res = value[0] / value[1] if isinstance(value, tuple) and value[1] else float(value)
        out.append(tidy(scale / res) if res > 0 else None)
    return out[0], out[1]


def _resunit_scale(page: Any) -> float | None:
    unit = _tag(page, "ResolutionUnit")
    scale = _RESUNIT_UM.get(int(unit)) if unit is not None else None
    if scale == 25400.0:
        value = _tag(page, "XResolution")
        if isinstance(value, tuple) and value[1] and value[0] / value[1] in _DEFAULT_DPI:
            return None  # a screen/print dpi default, not a microscope calibration
    return scale


def _parse_rescale(value: Any) -> dict | None:
    if not value:
        return None
    try:
        info = json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _calibration(tif: Any, series: Any, index: int, path: Path) -> tuple[tuple, str, dict]:
    page = series.keyframe
    meta: dict = {}
    if tif.is_ome and tif.ome_metadata:
        return _ome_calibration(tif.ome_metadata, index, path)
    if tif.is_imagej:
        ij = tif.imagej_metadata or {}
        fmt = "imagej-tiff"
        unit = ij.get("unit")
        scale = _unit_scale(unit, path) if unit is not None else _resunit_scale(page)
        dy, dx = _resolution_sizes(page, scale)
        spacing = ij.get("spacing")
        dz = tidy(float(spacing) * scale) if spacing and scale else None
        meta["unit"] = unit
        rescale = _parse_rescale(ij.get("isoapp_rescale"))
    else:
        fmt = "tiff"
        shaped = (tif.shaped_metadata or [{}])[0] if tif.is_shaped else {}
        rescale = _parse_rescale(shaped.get("isoapp_rescale"))
        if isinstance(shaped.get("voxel_size_um"), list | tuple) and len(shaped["voxel_size_um"]) == 3:
            dz, dy, dx = (tidy(v) for v in shaped["voxel_size_um"])
        else:
            unit = shaped.get("unit")
            scale = _unit_scale(unit, path) if unit is not None else _resunit_scale(page)
            dy, dx = _resolution_sizes(page, scale)
            spacing = shaped.get("spacing")
            dz = tidy(float(spacing) * scale) if spacing and scale else None
    if rescale:
        meta["rescale"] = rescale
    return (dz, dy, dx), fmt, meta


def _ome_calibration(xml: str, index: int, path: Path) -> tuple[tuple, str, dict]:
    """Voxel size (µm) and isoapp's rescale note of image ``index`` from OME-XML (parsed by ome-types)."""
    from ome_types import from_xml

    meta: dict = {}
    try:
        ome = from_xml(xml, validate=False)
    except ValueError as exc:  # not XML, or values ome-types cannot convert (pydantic errors are ValueErrors)
        log.warning("%s: the OME metadata cannot be parsed (%s); ignoring its calibration", path.name,
                    str(exc).splitlines()[0])
        return (None, None, None), "ome-tiff", meta
    if not ome.images:
        return (None, None, None), "ome-tiff", meta
    image = ome.images[min(index, len(ome.images) - 1)]
    for line in (image.description or "").splitlines():
        if line.startswith("isoapp_rescale="):
            rescale = _parse_rescale(line.split("=", 1)[1])
            if rescale:
                meta["rescale"] = rescale
    optics = _ome_optics(ome, image)
    if optics:
        meta["optics"] = optics
    pixels = image.pixels
    sizes: list[float | None] = []
    for ax in "zyx":
        value = getattr(pixels, f"physical_size_{ax}")
        if value is None:
            sizes.append(None)
            continue
        unit = getattr(getattr(pixels, f"physical_size_{ax}_unit"), "value", None) or "µm"
        if unit in ("pixel", "reference frame"):
            sizes.append(None)
            continue
        scale = _OME_UNIT_UM[unit] if unit in _OME_UNIT_UM else _unit_scale(unit, path)
        sizes.append(None if scale is None else tidy(float(value) * scale))
    return tuple(sizes), "ome-tiff", meta


def _ome_optics(ome: Any, image: Any) -> dict:
    """What OME-XML says of the microscope (first channel): the raw values ``optics_from_metadata`` takes."""
    out: dict = {}
    settings = image.objective_settings
    if settings is not None:
        out["refractive_index"] = settings.refractive_index
        for inst in ome.instruments:
            for obj in inst.objectives:
                if obj.id == settings.id:
                    out["lens_na"] = obj.lens_na
                    out["immersion"] = getattr(obj.immersion, "value", None)
    channels = image.pixels.channels
    if channels:
        ch = channels[0]
        out["acquisition_mode"] = getattr(ch.acquisition_mode, "value", None)
        for key, attr in (("emission_um", "emission_wavelength"), ("excitation_um", "excitation_wavelength")):
            value = getattr(ch, attr)
            unit = getattr(getattr(ch, f"{attr}_unit"), "value", None) or "nm"
            scale = {"nm": 1e-3, "µm": 1.0, "um": 1.0}.get(unit)
            if value is not None and scale is not None:
                out[key] = float(value) * scale
    return {k: v for k, v in out.items() if v is not None}


def _lazy_data(tif: Any, series: Any, index: int, path: Path) -> Any:
    """A memory map for contiguous uncompressed data, else a page-wise :class:`LazyArray`."""
    if series.dataoffset is not None:
        try:
            mm = tifffile.memmap(path, series=index, mode="r")
            if tuple(mm.shape) == tuple(series.shape):
                tif.close()
                return mm
        except Exception as exc:  # e.g. unusual layouts tifffile cannot map
            log.debug("%s: memory map failed (%s); reading plane by plane", path.name, exc)
    shape = tuple(series.shape)
    page_shape = tuple(series.keyframe.shape)
    nlead = len(shape) - len(page_shape)
    lead = shape[:nlead]
    pages = series.pages
    if nlead < 0 or shape[nlead:] != page_shape or len(pages) != int(np.prod(lead, dtype=np.int64)):
        cache: dict = {}

        def read_all(key: tuple) -> np.ndarray:
            if "a" not in cache:
                cache["a"] = series.asarray()
            return cache["a"][key]

        return LazyArray(read_all, shape, series.dtype, close=tif.close)

    def read_planes(key: tuple) -> np.ndarray:
        ranges = [range(n)[k] if isinstance(k, slice) else [k] for k, n in zip(key[:nlead], lead, strict=True)]
        out_lead = [len(r) for r, k in zip(ranges, key[:nlead], strict=True) if isinstance(k, slice)]
        trail = key[nlead:]
        trail_shape = np.broadcast_to(np.zeros((), series.dtype), page_shape)[trail].shape
        out = np.empty((*out_lead, *trail_shape), dtype=series.dtype)
        flat_out = out.reshape(-1, *trail_shape)
        for i, combo in enumerate(itertools.product(*ranges)):
            flat = int(np.ravel_multi_index(combo, lead)) if nlead else 0
            flat_out[i] = pages[flat].asarray()[trail]
        return out

    return LazyArray(read_planes, shape, series.dtype, close=tif.close)


# ---------------------------------------------------------------------------- writing
def _pages(volume: Volume, file_axes: str, convert) -> tuple[tuple[int, ...], Iterator[np.ndarray]]:
    """The file-order shape and a generator of converted YX planes in that order."""
    axes, shape, data = volume.axes, volume.shape, volume.data
    file_shape = tuple(shape[axes.index(a)] for a in file_axes)
    lead = file_axes[:-2]

    def gen() -> Iterator[np.ndarray]:
        for idx in np.ndindex(*file_shape[:-2]):
            key = tuple(idx[lead.index(a)] for a in axes[:-2])
            yield convert(np.asarray(data[key]))

    return file_shape, gen()


def write(tmp: Path, volume: Volume, *, convert, dtype: np.dtype, rescale: dict | None, fmt: str) -> None:
    """Write ``volume`` to ``tmp`` as ``imagej`` (hyperstack), ``ome-tiff`` or plain ``tiff``."""
    dz, dy, dx = volume.voxel_size
    nbytes = int(np.prod(volume.shape, dtype=np.int64)) * dtype.itemsize
    big = nbytes > 2**32 - 2**28
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if fmt == "imagej":
            file_axes = {"ZYX": "ZYX", "CZYX": "ZCYX", "TCZYX": "TZCYX"}[volume.axes]
            shape, pages = _pages(volume, file_axes, convert)
            meta: dict = {"spacing": dz, "unit": "um", "axes": file_axes}
            if volume.n_channels > 1:
                meta["mode"] = "composite"
            if rescale:
                meta["isoapp_rescale"] = rescale_json(rescale)
                meta["Info"] = rescale["text"]
            tifffile.imwrite(tmp, pages, shape=shape, dtype=dtype, imagej=True, ome=False,
                             resolution=(1.0 / dx, 1.0 / dy), metadata=meta)
        else:
            shape, pages = _pages(volume, volume.axes, convert)
            if fmt == "ome-tiff":
                meta = {"axes": volume.axes, "Name": volume.name}
                for ax, size in zip("ZYX", (dz, dy, dx), strict=True):
                    meta[f"PhysicalSize{ax}"] = size
                    meta[f"PhysicalSize{ax}Unit"] = "µm"
                if rescale:
                    meta["Description"] = f"{rescale['text']}\nisoapp_rescale={rescale_json(rescale)}"
            else:
                meta = {"axes": volume.axes, "voxel_size_um": [dz, dy, dx]}
                if rescale:
                    meta["isoapp_rescale"] = rescale_json(rescale)
            tifffile.imwrite(tmp, pages, shape=shape, dtype=dtype, ome=fmt == "ome-tiff", imagej=False,
                             bigtiff=big, photometric="minisblack", metadata=meta,
                             resolution=(1e4 / dx, 1e4 / dy), resolutionunit="CENTIMETER")
    for w in caught:
        log.debug("tifffile: %s", w.message)
