"""The data model: a volume with its axes, voxel size, source path and name.

Only three canonical axis orders exist inside isoapp: ``ZYX``, ``CZYX`` and ``TCZYX``.
Readers map whatever a file declares onto one of these with :func:`canonicalize_axes`,
which logs every permutation it applies (axis reordering is explicit, never silent).
Voxel sizes are always ``(z, y, x)`` in micrometres.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

CANONICAL_AXES = ("ZYX", "CZYX", "TCZYX")

_UNIT_SCALE_TO_UM = {
    "um": 1.0, "µm": 1.0, "μm": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "micrometre": 1.0, "\\u00b5m": 1.0, "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3,
    "mm": 1e3, "millimeter": 1e3, "millimetre": 1e3, "m": 1e6, "meter": 1e6, "metre": 1e6,
    "cm": 1e4, "pixel": None, "pixels": None, "px": None, "": None,
}


def unit_to_um_scale(unit: str | None) -> float | None:
    """Return the factor that converts ``unit`` to micrometres.

    ``None`` means the unit is uncalibrated (``pixel`` or empty); unknown units raise.
    """
    if unit is None:
        return None
    key = str(unit).strip().lower().replace("\u00b5", "µ").replace("μ", "µ")
    if key in _UNIT_SCALE_TO_UM:
        return _UNIT_SCALE_TO_UM[key]
    raise InputError(
        f"unknown spatial unit {unit!r}: use micron/um/µm, nm or mm, "
        "or give the voxel size explicitly (--voxel-size Z Y X)"
    )


def _check_voxel_size(voxel_size: Sequence[float]) -> tuple[float, float, float]:
    try:
        vs = tuple(float(v) for v in voxel_size)
    except (TypeError, ValueError) as exc:
        raise InputError(f"voxel size must be three numbers (z, y, x) in µm, got {voxel_size!r}") from exc
    if len(vs) != 3:
        raise InputError(f"voxel size must have three values (z, y, x) in µm, got {len(vs)}: {vs}")
    if not all(np.isfinite(v) and v > 0 for v in vs):
        raise InputError(f"voxel size must be positive and finite, got {vs}; pass --voxel-size Z Y X")
    return vs  # type: ignore[return-value]


@dataclass
class Volume:
    """A 3D (optionally multi-channel, time-lapse) microscopy stack.

    Parameters
    ----------
    data
        Array-like in the order given by ``axes``. May be a lazy array (``np.memmap``,
        ``h5py.Dataset``, ``zarr.Array``); call :meth:`load` to get an in-memory ndarray.
    axes
        One of ``"ZYX"``, ``"CZYX"``, ``"TCZYX"``.
    voxel_size
        ``(z, y, x)`` voxel size in micrometres.
    path
        The file it came from, if any.
    name
        A short display name.
    metadata
        Free-form extra information (e.g. the uint16 rescaling applied on write).
    """

    data: Any
    axes: str = "ZYX"
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    path: Path | None = None
    name: str = ""
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.axes = str(self.axes).upper()
        if self.axes not in CANONICAL_AXES:
            raise InputError(
                f"axes {self.axes!r} is not one of {', '.join(CANONICAL_AXES)}; "
                "reorder with isoapp.core.volume.canonicalize_axes first"
            )
        shape = tuple(self.data.shape)
        if len(shape) != len(self.axes):
            raise InputError(
                f"data has {len(shape)} dimensions {shape} but axes {self.axes!r} needs {len(self.axes)}; "
                "a 3D stack (Z, Y, X) is required"
            )
        if any(s == 0 for s in shape):
            raise InputError(f"the stack has a zero-size axis (shape {shape}); the file holds no image data")
        self.voxel_size = _check_voxel_size(self.voxel_size)
        if self.path is not None:
            self.path = Path(self.path)
        if not self.name:
            self.name = self.path.stem if self.path is not None else "volume"

    # ------------------------------------------------------------------ shape info
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        """``(nz, ny, nx)``."""
        return self.shape[-3:]  # type: ignore[return-value]

    @property
    def n_channels(self) -> int:
        return self.shape[self.axes.index("C")] if "C" in self.axes else 1

    @property
    def n_timepoints(self) -> int:
        return self.shape[0] if self.axes.startswith("T") else 1

    @property
    def anisotropy(self) -> float:
        """Axial over lateral voxel size, ``dz / dxy`` (dxy is the mean of dy and dx)."""
        dz, dy, dx = self.voxel_size
        return dz / (0.5 * (dy + dx))

    @property
    def nbytes(self) -> int:
        """Size in memory once loaded."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def is_lazy(self) -> bool:
        return not (isinstance(self.data, np.ndarray) and not isinstance(self.data, np.memmap))

    # ------------------------------------------------------------------ conversions
    def load(self) -> Volume:
        """Return a copy whose data is an in-memory ``np.ndarray``."""
        if not self.is_lazy:
            return self
        return replace(self, data=np.asarray(self.data[...]), metadata=dict(self.metadata))

    def with_data(self, data: Any, **changes: Any) -> Volume:
        """A new Volume with ``data`` replaced (and any other field in ``changes``)."""
        return replace(self, data=data, metadata=dict(self.metadata), **changes)

    def to_axes(self, axes: str) -> Volume:
        """Expand to a richer canonical layout (``ZYX`` -> ``CZYX`` -> ``TCZYX``).

        Only adding leading singleton axes is allowed; dropping axes goes through
        :meth:`channel`.
        """
        axes = axes.upper()
        if axes == self.axes:
            return self
        if axes not in CANONICAL_AXES or not axes.endswith(self.axes):
            raise InputError(f"cannot convert axes {self.axes} to {axes}: only leading axes can be added")
        extra = len(axes) - len(self.axes)
        data = np.asarray(self.data)[(None,) * extra]
        log.info("axes %s -> %s (added %d singleton axes)", self.axes, axes, extra)
        return self.with_data(data, axes=axes)

    def channel(self, c: int = 0, t: int = 0) -> Volume:
        """The ZYX volume of channel ``c`` at time ``t``."""
        if self.axes == "ZYX":
            if c != 0 or t != 0:
                raise InputError(f"channel {c}, time {t} asked of a single-channel ZYX volume")
            return self
        if not 0 <= c < self.n_channels:
            raise InputError(f"channel {c} does not exist; the stack has {self.n_channels} channel(s)")
        if not 0 <= t < self.n_timepoints:
            raise InputError(f"time point {t} does not exist; the stack has {self.n_timepoints}")
        data = self.data[c] if self.axes == "CZYX" else self.data[t, c]
        name = self.name if self.n_channels == 1 else f"{self.name}_c{c}"
        return replace(self, data=data, axes="ZYX", name=name, metadata=dict(self.metadata))

    def iter_channels(self):
        """Yield ``(t, c, zyx_volume)`` for every time point and channel."""
        for t in range(self.n_timepoints):
            for c in range(self.n_channels):
                yield t, c, self.channel(c, t)

    def check_finite(self) -> None:
        """Raise :class:`InputError` if the data holds NaN or Inf (reads it in chunks)."""
        if np.issubdtype(self.dtype, np.integer):
            return
        for i in range(self.shape[0]):
            block = np.asarray(self.data[i])
            if not np.isfinite(block).all():
                n_bad = int((~np.isfinite(block)).sum())
                raise InputError(
                    f"{self.name}: the data contains NaN or Inf ({n_bad} values in block {i}); "
                    "replace them (e.g. Process > Math > NaN Background in Fiji) and try again"
                )

    def describe(self) -> str:
        dz, dy, dx = self.voxel_size
        return (
            f"{self.name}: {self.axes} {self.shape} {self.dtype}, voxel {dz:g} x {dy:g} x {dx:g} µm (z, y, x), "
            f"anisotropy {self.anisotropy:.3g}"
        )


def canonicalize_axes(data: Any, axes: str) -> tuple[Any, str]:
    """Reorder ``data`` from the file's ``axes`` to a canonical layout.

    Supports any permutation of the letters T, C, Z, Y, X (plus S for samples, treated as C,
    and Q/I for unknown leading axes, treated as Z when no Z is present). Missing C/T are
    not added; the result is ``ZYX``, ``CZYX`` or ``TCZYX`` (``TZYX`` becomes ``TCZYX``).
    Every permutation is logged.

    Returns
    -------
    data, axes
        The reordered (possibly lazy-transposed) array and its canonical axes.
    """
    axes = axes.upper().replace("S", "C")
    if len(axes) != data.ndim:
        raise InputError(f"axes {axes!r} do not match data with {data.ndim} dimensions {tuple(data.shape)}")
    if "Z" not in axes:
        for alias in ("Q", "I"):
            if alias in axes:
                axes = axes.replace(alias, "Z", 1)
                break
    if not {"Z", "Y", "X"} <= set(axes):
        raise InputError(
            f"the image has axes {axes!r} {tuple(data.shape)}: a 3D stack with Z, Y and X is required "
            "(a single 2D plane cannot be made isotropic)"
        )
    unknown = set(axes) - set("TCZYX")
    # squeeze singleton unknown axes
    for a in sorted(unknown):
        i = axes.index(a)
        if data.shape[i] != 1:
            raise InputError(f"the image has an extra axis {a!r} of size {data.shape[i]} that isoapp does not know")
        data = np.take(np.asarray(data), 0, axis=i)
        axes = axes[:i] + axes[i + 1 :]
    if "T" in axes and "C" not in axes:
        target = "TZYX"
    else:
        target = "".join(a for a in "TCZYX" if a in axes)
    if axes != target:
        perm = [axes.index(a) for a in target]
        log.info("reordering axes %s -> %s (transpose %s)", axes, target, perm)
        data = np.transpose(np.asarray(data), perm) if not hasattr(data, "transpose") else data.transpose(perm)
    if target == "TZYX":
        data = np.asarray(data)[:, None]
        target = "TCZYX"
        log.info("axes TZYX -> TCZYX (added a singleton channel axis)")
    return data, target
