"""Block-wise outputs: an OME-Zarr store or a TIFF written block by block as blocks finish.

A :class:`SinkSpec` is a small picklable description of the output (path, shape, dtype, chunks,
calibration). The process that plans the run calls :meth:`SinkSpec.create`; any process (the
local loop, or a Dask worker) opens the store by path and writes whole, chunk-aligned blocks with
:meth:`SinkSpec.write`, so no locks are needed; :meth:`SinkSpec.finalize` adds the multiscale
pyramid (OME-Zarr) and moves the finished output into place.

* OME-Zarr: NGFF 0.4 (Zarr format 2, ``/`` chunk keys), metadata written by ``ome-zarr``;
  the pyramid halves z, y and x (the output is isotropic) with a block mean, one output chunk at a time.
* TIFF: a memory-mapped contiguous file created by ``tifffile`` (ImageJ hyperstack for ``.tif``,
  BigTIFF with OME metadata for ``.ome.tif``); every write maps, writes, flushes and unmaps, so
  the written pages do not stay in memory. The file's space is reserved when it is created
  (:func:`isoapp.data.io.prealloc.preallocate`), so a full disk is an error message, not SIGBUS.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import OutputError
from .convert import Conversion, plan_stream_conversion  # noqa: F401 - the sinks' conversion, re-exported
from .prealloc import preallocate
from .zarr_io import AXIS_META as _AXIS_META

log = logging.getLogger(__name__)

_IMAGEJ_ORDER = {"ZYX": "ZYX", "CZYX": "ZCYX", "TCZYX": "TZCYX"}


@dataclass(frozen=True)
class SinkSpec:
    """A block-wise output on disk; picklable, every process opens it by path."""

    fmt: str
    path: str
    shape: tuple[int, ...]
    axes: str
    dtype: str
    chunks: tuple[int, ...]
    voxel_size: tuple[float, float, float]
    name: str = "image"
    attrs: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ creation
    def create(self) -> None:
        """Create the empty store (called once, by the planning process)."""
        p = Path(self.path)
        if self.fmt == "ome-zarr":
            import zarr

            group = zarr.open_group(str(p), mode="w", zarr_format=2)
            group.create_array("0", shape=self.shape, dtype=self.dtype, chunks=self.chunks, fill_value=0,
                               chunk_key_encoding={"name": "v2", "separator": "/"})
            self._write_metadata(group, [self.shape])
        else:
            import tifffile

            mm = tifffile.memmap(str(p), **self._tiff_create_args())
            del mm
            try:  # a memory map of a sparse file dies of SIGBUS when the disk fills: reserve the space now
                preallocate(p)
            except OutputError:
                p.unlink(missing_ok=True)
                raise
        log.debug("created %s (%s, %s)", p, self.fmt, self.shape)

    def _tiff_create_args(self) -> dict[str, Any]:
        dz, dy, dx = self.voxel_size
        file_axes = _IMAGEJ_ORDER[self.axes] if self.fmt == "imagej" else self.axes
        shape = tuple(self.shape[self.axes.index(a)] for a in file_axes)
        args: dict[str, Any] = {"shape": shape, "dtype": self.dtype, "photometric": "minisblack"}
        if self.fmt == "imagej":
            meta: dict[str, Any] = {"spacing": dz, "unit": "um", "axes": file_axes}
            if self.attrs.get("rescale"):
                meta["Info"] = self.attrs["rescale"]["text"]
            args.update(imagej=True, resolution=(1.0 / dx, 1.0 / dy), metadata=meta)
        else:
            meta = {"axes": file_axes}
            if self.fmt == "ome-tiff":
                for ax, size in zip("ZYX", (dz, dy, dx), strict=True):
                    meta[f"PhysicalSize{ax}"] = size
                    meta[f"PhysicalSize{ax}Unit"] = "µm"
            else:
                meta["voxel_size_um"] = [dz, dy, dx]
            args.update(bigtiff=True, ome=self.fmt == "ome-tiff", metadata=meta,
                        resolution=(1e4 / dx, 1e4 / dy), resolutionunit="CENTIMETER")
        return args

    # ------------------------------------------------------------------ writing
    def write(self, key: tuple[slice, ...], block: np.ndarray) -> None:
        """Write ``block`` (canonical axes) at ``key``; blocks must be chunk-aligned for OME-Zarr."""
        if self.fmt == "ome-zarr":
            import zarr

            arr = zarr.open_array(str(Path(self.path) / "0"), mode="r+")
            arr[key] = block
            return
        import tifffile

        file_axes = _IMAGEJ_ORDER[self.axes] if self.fmt == "imagej" else self.axes
        perm = [self.axes.index(a) for a in file_axes]
        preallocate(self.path, resume_hint=True)  # once per process: a file made by an older isoapp may be sparse
        mm = tifffile.memmap(str(self.path), mode="r+")
        try:
            mm[tuple(key[i] for i in perm)] = np.transpose(block, perm)
            mm.flush()
        finally:
            del mm

    # ------------------------------------------------------------------ finishing
    def _scale(self, level: int) -> list[float]:
        f = 2.0 ** level
        return [1.0] * (len(self.shape) - 3) + [float(v) * f for v in self.voxel_size]

    def _write_metadata(self, group: Any, shapes: list[tuple[int, ...]]) -> None:
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_multiscales_metadata

        datasets = [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": self._scale(i)}]}
                    for i in range(len(shapes))]
        write_multiscales_metadata(group, datasets, fmt=FormatV04(), axes=[_AXIS_META[a] for a in self.axes],
                                   name=self.name)
        if self.attrs:
            group.attrs["isoapp"] = json.loads(json.dumps(self.attrs, default=float))

    def build_pyramid(self, min_size: int = 256, workers: int = 2) -> int:
        """Add halved scale levels (z, y and x) until the largest lateral side is below ``min_size``.

        Each level is the 2 x 2 x 2 block mean of the one above (rounded and clipped for integer
        types; an odd last plane, row or column is dropped), made one output chunk at a time by
        ``workers`` threads: memory stays at a few chunks. This replaced a Dask graph whose ~10^5
        task objects, alive for the whole stage of a 17 GB result, made each full garbage collection
        in the desktop app's GUI thread take 150-335 ms.
        """
        import itertools
        from concurrent.futures import ThreadPoolExecutor

        import zarr

        group = zarr.open_group(str(self.path), mode="r+")
        shapes = [tuple(self.shape)]
        kind = np.dtype(self.dtype)
        while max(shapes[-1][-2:]) >= 2 * min_size and min(shapes[-1][-3:]) >= 2:
            src = group[str(len(shapes) - 1)]
            shape = shapes[-1][:-3] + tuple(n // 2 for n in shapes[-1][-3:])
            chunks = tuple(min(c, n) for c, n in zip(self.chunks, shape, strict=True))
            dst = group.create_array(str(len(shapes)), shape=shape, dtype=self.dtype, chunks=chunks, fill_value=0,
                                     chunk_key_encoding={"name": "v2", "separator": "/"}, overwrite=True)

            def one(index: tuple[int, ...], src=src, dst=dst, shape=shape, chunks=chunks) -> None:
                out = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, shape, strict=True))
                lead = len(shape) - 3
                block = np.asarray(src[out[:lead] + tuple(slice(2 * k.start, 2 * k.stop) for k in out[lead:])])
                b = block.shape
                mean = block.reshape(b[:lead] + (b[-3] // 2, 2, b[-2] // 2, 2, b[-1] // 2, 2)).mean(
                    axis=(-5, -3, -1), dtype=np.float32)  # converted on the fly: no float32 copy of the block
                if kind.kind in "iu":
                    info = np.iinfo(kind)
                    mean = np.clip(np.rint(mean), info.min, info.max)
                dst[out] = mean.astype(kind)

            grid = itertools.product(*(range(-(-n // c)) for n, c in zip(shape, chunks, strict=True)))
            with ThreadPoolExecutor(max(1, workers), thread_name_prefix="isoapp-pyramid") as pool:
                while batch := list(itertools.islice(grid, 32)):  # a few futures alive at a time, not thousands
                    for _ in pool.map(one, batch):
                        pass
            shapes.append(shape)
        self._write_metadata(group, shapes)
        return len(shapes)

    def finalize(self, dest: Path, *, pyramid: bool = True, pyramid_min_size: int = 256) -> Path:
        """Add the pyramid (OME-Zarr) and move the finished output onto ``dest`` (replacing it)."""
        if self.fmt == "ome-zarr" and pyramid:
            n = self.build_pyramid(pyramid_min_size)
            log.info("OME-Zarr pyramid: %d scale level(s)", n)
        src = Path(self.path)
        dest = Path(dest)
        try:
            if dest.exists():
                old = dest.with_name(f".isoapp-old-{os.getpid()}-{dest.name}")
                os.replace(dest, old)
                _move(src, dest)
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            else:
                _move(src, dest)
        except OSError as exc:
            raise OutputError(f"could not move the finished output {src} onto {dest}: {exc.strerror or exc}; "
                              f"the finished output is still at {src}") from exc
        return dest


def _move(src: Path, dest: Path) -> None:
    try:
        os.replace(src, dest)
    except OSError:  # another file system: copy, then remove
        shutil.move(str(src), str(dest))
