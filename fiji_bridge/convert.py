"""numpy <-> ImageJ ``ImagePlus`` conversion with calibration (needs a running JVM).

ImageJ keeps a stack as planes in channel-fastest order (c, z, t). 8-bit planes are Java
``byte[]`` (signed in Java, read as unsigned by ImageJ), 16-bit planes are Java ``short[]``
(signed in Java, unsigned in ImageJ), 32-bit planes are ``float[]``. The bytes are moved with
JPype's buffer copies (slice assignment from numpy, buffer protocol back), one plane at a time,
reinterpreting uint16 <-> int16 and uint8 <-> int8 bit for bit (no value is changed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from isoapp.core.volume import CANONICAL_AXES, unit_to_um_scale

from .errors import BridgeError
from .jvm import jclass

log = logging.getLogger(__name__)

# numpy dtype -> (JPype primitive name, signed view dtype, ImageJ bit depth)
_JTYPES = {np.dtype(np.uint8): ("JByte", np.int8, 8), np.dtype(np.uint16): ("JShort", np.int16, 16),
           np.dtype(np.float32): ("JFloat", np.float32, 32)}
_BITDEPTH_DTYPE = {8: np.uint8, 16: np.uint16, 32: np.float32}


def _as_imagej_dtype(arr: np.ndarray) -> np.ndarray:
    """Cast to one of ImageJ's pixel types (uint8, uint16, float32), logging any change."""
    dt = arr.dtype
    if dt in _JTYPES:
        return arr
    if dt == np.bool_:
        target = np.uint8
    elif np.issubdtype(dt, np.integer) and arr.size and arr.min() >= 0 and arr.max() <= 65535:
        target = np.uint16
    else:
        target = np.float32
    log.info("ImageJ has no %s images; converting to %s", dt, np.dtype(target))
    return arr.astype(target)


def _um_to_unit(unit: str) -> float:
    scale = unit_to_um_scale(unit)
    if scale is None:
        raise BridgeError(f"unit {unit!r} is not a length; use 'micron', 'um', 'nm' or 'mm'")
    return 1.0 / scale


def numpy_to_imageplus(arr: Any, axes: str = "ZYX", voxel_size: Sequence[float] = (1.0, 1.0, 1.0),
                       title: str = "isoapp", unit: str = "micron") -> Any:
    """Build an ImageJ ``ImagePlus`` (hyperstack when C or T > 1) from a numpy array.

    Parameters
    ----------
    arr
        Array in ``axes`` order; uint8, uint16 and float32 are kept, other types are converted.
    axes
        ``"ZYX"``, ``"CZYX"`` or ``"TCZYX"``.
    voxel_size
        ``(z, y, x)`` in micrometres.
    title
        Image title in ImageJ.
    unit
        Calibration unit written into ImageJ (``"micron"`` shows as µm; ``"nm"`` scales by 1000).

    Returns
    -------
    ij.ImagePlus
        A ``CompositeImage`` when there are several channels.
    """
    import jpype

    axes = axes.upper()
    if axes not in CANONICAL_AXES:
        raise BridgeError(f"axes {axes!r} is not one of {', '.join(CANONICAL_AXES)}")
    arr = np.asarray(arr)
    if arr.ndim != len(axes):
        raise BridgeError(f"array has shape {arr.shape} but axes {axes!r}")
    arr = _as_imagej_dtype(arr)
    full = arr.reshape((1,) * (5 - arr.ndim) + arr.shape)  # T, C, Z, Y, X
    nt, nc, nz, ny, nx = full.shape
    if ny * nx > 2**31 - 1:
        raise BridgeError(f"a {ny}x{nx} plane is too large for ImageJ (2^31 pixels per plane at most)")
    jname, view_dtype, _ = _JTYPES[arr.dtype]
    jtype = getattr(jpype, jname)
    ordered = full.transpose(0, 2, 1, 3, 4)  # T, Z, C, Y, X: ImageJ's c-fastest plane order
    stack = jclass("ij.ImageStack")(int(nx), int(ny), int(nt * nz * nc))
    index = 1
    for t in range(nt):
        for z in range(nz):
            for c in range(nc):
                plane = np.ascontiguousarray(ordered[t, z, c]).view(view_dtype).reshape(-1)
                jarr = jpype.JArray(jtype)(plane.size)
                jarr[:] = plane  # one memcpy through the buffer protocol
                stack.setPixels(jarr, index)
                index += 1
    imp = jclass("ij.ImagePlus")(str(title), stack)
    imp.setDimensions(int(nc), int(nz), int(nt))
    if nc > 1 or nt > 1:
        imp.setOpenAsHyperStack(True)
    set_calibration(imp, voxel_size, unit)
    if nc > 1:
        composite = jclass("ij.CompositeImage")
        imp = composite(imp, composite.COMPOSITE if nc <= 7 else composite.GRAYSCALE)
    _set_display_ranges(imp, full)
    return imp


def _set_display_ranges(imp: Any, full: np.ndarray) -> None:
    nc = full.shape[1]
    for c in range(nc):
        data = full[:, c]
        lo, hi = (float(data.min()), float(data.max())) if data.size else (0.0, 1.0)
        if nc > 1:
            imp.setC(c + 1)
        imp.setDisplayRange(lo, hi if hi > lo else lo + 1.0)
    if nc > 1:
        imp.setC(1)


def set_calibration(imp: Any, voxel_size: Sequence[float], unit: str = "micron") -> None:
    """Write ``(z, y, x)`` µm voxel sizes into ``imp``'s calibration in ``unit``."""
    dz, dy, dx = (float(v) for v in voxel_size)
    scale = _um_to_unit(unit)
    cal = imp.getCalibration()
    cal.pixelWidth, cal.pixelHeight, cal.pixelDepth = dx * scale, dy * scale, dz * scale
    cal.setUnit(str(unit))
    imp.setCalibration(cal)


def get_voxel_size(imp: Any) -> tuple[tuple[float, float, float], bool]:
    """``((z, y, x) in µm, calibrated)`` from ``imp``'s calibration (units normalised to µm).

    An uncalibrated image (unit ``pixel``) gives ``(1, 1, 1)`` and ``calibrated=False``.
    """
    cal = imp.getCalibration()
    dims = (float(cal.pixelDepth), float(cal.pixelHeight), float(cal.pixelWidth))
    x_unit = str(cal.getXUnit() or cal.getUnit() or "")
    z_unit = str(cal.getZUnit() or x_unit)
    sx, sz = unit_to_um_scale(x_unit), unit_to_um_scale(z_unit)
    if sx is None:
        return (1.0, 1.0, 1.0), False
    sz = sx if sz is None else sz
    return (dims[0] * sz, dims[1] * sx, dims[2] * sx), True


def _plane_to_numpy(pixels: Any, ny: int, nx: int, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return np.frombuffer(memoryview(pixels), dtype=np.int8).view(np.uint8).reshape(ny, nx)
    if dtype == np.uint16:
        return np.frombuffer(memoryview(pixels), dtype=np.int16).view(np.uint16).reshape(ny, nx)
    return np.frombuffer(memoryview(pixels), dtype=np.float32).reshape(ny, nx)


def _rgb_to_numpy(pixels: Any, ny: int, nx: int) -> np.ndarray:
    packed = np.frombuffer(memoryview(pixels), dtype=np.int32).view(np.uint32).reshape(ny, nx)
    return np.stack([(packed >> s) & 0xFF for s in (16, 8, 0)]).astype(np.uint8)


def imageplus_to_numpy(imp: Any) -> tuple[np.ndarray, str, tuple[float, float, float]]:
    """Copy an ImageJ ``ImagePlus`` into numpy.

    Returns
    -------
    arr, axes, voxel_size
        ``arr`` is uint8, uint16 or float32 in ``axes`` (``"ZYX"``, ``"CZYX"`` or ``"TCZYX"``);
        RGB images become three uint8 channels. ``voxel_size`` is ``(z, y, x)`` in µm
        (``(1, 1, 1)`` for an uncalibrated image).
    """
    if imp is None:
        raise BridgeError("no image: open or select an image in ImageJ first")
    nc, nz, nt = int(imp.getNChannels()), int(imp.getNSlices()), int(imp.getNFrames())
    nx, ny = int(imp.getWidth()), int(imp.getHeight())
    bit_depth = int(imp.getBitDepth())
    stack = imp.getStack()
    if int(stack.getSize()) != nc * nz * nt:
        raise BridgeError(f"{imp.getTitle()}: stack has {stack.getSize()} planes but c*z*t = {nc * nz * nt}")
    rgb = bit_depth == 24
    if rgb and nc > 1:
        raise BridgeError(f"{imp.getTitle()}: multi-channel RGB images are not supported; "
                          "use Image > Color > Stack to RGB / Channels Tool to split them first")
    if bit_depth not in _BITDEPTH_DTYPE and not rgb:
        raise BridgeError(f"{imp.getTitle()}: unsupported ImageJ bit depth {bit_depth}")
    dtype = np.dtype(np.uint8 if rgb else _BITDEPTH_DTYPE[bit_depth])
    out_c = 3 if rgb else nc
    out = np.empty((nt, out_c, nz, ny, nx), dtype=dtype)
    index = 1
    for t in range(nt):
        for z in range(nz):
            for c in range(nc):
                pixels = stack.getPixels(index)
                if rgb:
                    out[t, :, z] = _rgb_to_numpy(pixels, ny, nx)
                else:
                    out[t, c, z] = _plane_to_numpy(pixels, ny, nx, dtype)
                index += 1
    voxel_size, calibrated = get_voxel_size(imp)
    if not calibrated:
        log.warning("%s is not spatially calibrated in ImageJ; using voxel size 1 x 1 x 1 µm",
                    imp.getTitle())
    if nt > 1:
        return out, "TCZYX", voxel_size
    if out_c > 1:
        return out[0], "CZYX", voxel_size
    return out[0, 0], "ZYX", voxel_size
