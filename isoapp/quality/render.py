"""Orthogonal-view PNG figures without matplotlib, Pillow or Qt.

:func:`orthoview_png` draws one column per named volume (e.g. input, restored, ground
truth) and three rows: the XY, XZ and YZ planes through a common physical position. Every
panel is resampled to one display pixel size in µm, so volumes on different z grids appear
at the same physical size with square micrometres. Contrast per volume from its (1, 99.8)
percentiles, grey LUT. Column titles and row labels use a built-in 5x7 bitmap font.
The PNG (8-bit greyscale) is encoded with zlib + struct and written atomically.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

log = logging.getLogger(__name__)

GAP = 4
BACKGROUND = 48  # grey of gaps and margins; outside-the-volume pixels are 0
TEXT = 255

# 5x7 glyphs, 7 rows of 5 bits (bit 4 = left column) as 14 hex digits.
_FONT = {
    "A": "0E11111F111111", "B": "1E11111E11111E", "C": "0E11101010110E", "D": "1C12111111121C",
    "E": "1F10101E10101F", "F": "1F10101E101010", "G": "0E11101711110F",
    "H": "1111111F111111", "I": "0E04040404040E", "J": "0702020202120C", "K": "11121418141211",
    "L": "1010101010101F", "M": "111B1515111111", "N": "11111915131111", "O": "0E11111111110E",
    "P": "1E11111E101010", "Q": "0E11111115120D", "R": "1E11111E141211", "S": "0F10100E01011E",
    "T": "1F040404040404", "U": "1111111111110E", "V": "11111111110A04",
    "W": "1111111515150A", "X": "11110A040A1111", "Y": "11110A04040404", "Z": "1F01020408101F",
    "0": "0E11131519110E", "1": "040C040404040E", "2": "0E11010204081F",
    "3": "1F02040201110E", "4": "02060A121F0202", "5": "1F101E0101110E", "6": "0608101E11110E",
    "7": "1F010204080808", "8": "0E11110E11110E", "9": "0E11110F01020C", " ": "00000000000000",
    "-": "0000001F000000", "_": "0000000000001F", ".": "00000000000C0C", "(": "02040808080402",
    ")": "08040202020408", "/": "00010204081000", ":": "000C0C000C0C00", "?": "0E110102040004",
    "=": "00001F001F0000", "+": "0004041F040400", ",": "00000000000C08", "%": "18190204081303",
}


def _glyph(ch: str) -> np.ndarray:
    code = _FONT.get(ch.upper(), _FONT["?"])
    rows = [int(code[2 * i: 2 * i + 2], 16) for i in range(7)]
    return np.array([[(r >> (4 - c)) & 1 for c in range(5)] for r in rows], dtype=bool)


def text_mask(text: str, scale: int = 1) -> np.ndarray:
    """Boolean bitmap of ``text`` in the 5x7 font (1 column between glyphs), scaled by ``scale``."""
    if not text:
        return np.zeros((7 * scale, 0), dtype=bool)
    cols = []
    for ch in text:
        cols += [_glyph(ch), np.zeros((7, 1), dtype=bool)]
    m = np.concatenate(cols[:-1], axis=1)
    return np.kron(m, np.ones((scale, scale), dtype=bool)).astype(bool)


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a 2D uint8 greyscale image (filter 0 on every row)."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim != 2:
        raise ValueError(f"a 2D greyscale image is required, got shape {img.shape}")
    h, w = img.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), img], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6))
            + chunk(b"IEND", b""))


def write_png(path: str | os.PathLike, img: np.ndarray) -> Path:
    """Write ``img`` (2D uint8) as PNG atomically (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    data = encode_png(img)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _contrast(vol: np.ndarray, pmin: float, pmax: float) -> tuple[float, float]:
    step = max(1, int(round((vol.size / 2_000_000) ** (1 / 3))))
    sample = np.asarray(vol[::step, ::step, ::step], dtype=np.float64)
    lo, hi = np.percentile(sample, [pmin, pmax])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def _resample(plane: np.ndarray, d: tuple[float, float], p: float, out_shape: tuple[int, int]) -> np.ndarray:
    """Sample ``plane`` (pixel sizes ``d`` µm) on a grid of ``p`` µm pixels; NaN outside it.

    Sample ``k`` of an axis lies at ``k * d`` µm and display pixel ``i`` at ``i * p`` µm (the
    isoapp convention: subsampled plane ``i`` sits on the original plane ``i * F``).
    """
    coords = [np.arange(out_shape[ax]) * p / d[ax] for ax in range(2)]
    cr, cc = np.meshgrid(coords[0], coords[1], indexing="ij")
    out = ndimage.map_coordinates(plane.astype(np.float64), [cr, cc], order=1, mode="nearest")
    outside = (cr > plane.shape[0] - 0.5) | (cc > plane.shape[1] - 0.5)
    out[outside] = np.nan
    return out


def orthoview(volumes: Sequence[tuple[str, np.ndarray]], voxel_sizes: Sequence[Sequence[float]] | None = None,
              position: Sequence[float] | None = None, *, percentiles: tuple[float, float] = (1.0, 99.8),
              max_panel: int = 512) -> tuple[np.ndarray, dict[tuple[str, str], tuple[int, int, int, int]]]:
    """Compose the orthoview figure; see :func:`orthoview_png`.

    Returns
    -------
    image, panels
        The uint8 figure and, for each ``(volume name, 'XY'|'XZ'|'YZ')``, the panel box
        ``(row0, col0, height, width)`` in the figure.
    """
    if not volumes:
        raise ValueError("orthoview needs at least one volume")
    vols = [(str(n), np.asarray(v)) for n, v in volumes]
    for n, v in vols:
        if v.ndim != 3:
            raise ValueError(f"{n}: a ZYX volume is required, got shape {v.shape}")
    vss = [(1.0, 1.0, 1.0)] * len(vols) if voxel_sizes is None else [tuple(map(float, s)) for s in voxel_sizes]
    if len(vss) != len(vols):
        raise ValueError(f"{len(vols)} volumes but {len(vss)} voxel sizes")
    ext = np.array([[n * d for n, d in zip(v.shape, vs, strict=True)] for (_, v), vs in zip(vols, vss, strict=True)])
    p = min(min(vs[1], vs[2]) for vs in vss)
    p = max(p, float(ext.max()) / max_panel)
    hz, hy, wx = (max(1, int(round(e / p))) for e in ext.max(axis=0))
    col_w = max(wx, hy)
    scale = max(1, min(3, col_w // 80))
    title_h = 7 * scale + 2 * GAP
    label_w = text_mask("XY", scale).shape[1] + 2 * GAP
    row_h = [hy, hz, hz]
    height = title_h + sum(row_h) + GAP * 3
    width = label_w + len(vols) * (col_w + GAP)
    img = np.full((height, width), BACKGROUND, dtype=np.uint8)
    panels: dict[tuple[str, str], tuple[int, int, int, int]] = {}
    if position is None:  # one physical point for all: the middle of the largest extent
        pos = [float(v) for v in 0.5 * np.max([[(n - 1) * d for n, d in zip(v.shape, vs, strict=True)]
                                                 for (_, v), vs in zip(vols, vss, strict=True)], axis=0)]
    else:
        pos = [float(c) for c in position]

    def put_text(text: str, r0: int, c0: int, max_w: int) -> None:
        m = text_mask(text, scale)[:, :max(0, max_w)]
        img[r0: r0 + m.shape[0], c0: c0 + m.shape[1]][m] = TEXT

    for i, name in enumerate(("XY", "XZ", "YZ")):
        put_text(name, title_h + sum(row_h[:i]) + GAP * i, GAP, label_w - GAP)
    for k, ((name, v), vs) in enumerate(zip(vols, vss, strict=True)):
        c0 = label_w + k * (col_w + GAP)
        title = name
        while title and text_mask(title, scale).shape[1] > col_w:
            title = title[:-1]
        put_text(title, GAP, c0, col_w)
        idx = [int(np.clip(np.floor(c / d + 0.5), 0, n - 1)) for c, d, n in zip(pos, vs, v.shape, strict=True)]
        lo, hi = _contrast(v, *percentiles)
        planes = {
            "XY": (v[idx[0]], (vs[1], vs[2]), (hy, wx)),
            "XZ": (v[:, idx[1], :], (vs[0], vs[2]), (hz, wx)),
            "YZ": (v[:, :, idx[2]], (vs[0], vs[1]), (hz, hy)),
        }
        r0 = title_h
        for i, (row, (plane, d, shape)) in enumerate(planes.items()):
            vals = _resample(plane, d, p, shape)
            grey = np.clip((vals - lo) / (hi - lo) * 255.0 + 0.5, 0, 255)
            grey = np.where(np.isnan(grey), 0, grey).astype(np.uint8)
            img[r0: r0 + shape[0], c0: c0 + shape[1]] = grey
            panels[(name, row)] = (r0, c0, shape[0], shape[1])
            r0 += row_h[i] + GAP
    return img, panels


def orthoview_png(path: str | os.PathLike, volumes: Sequence[tuple[str, np.ndarray]],
                  voxel_sizes: Sequence[Sequence[float]] | None = None, position: Sequence[float] | None = None,
                  **kwargs) -> Path:
    """Write an orthoview PNG of named ZYX volumes.

    Parameters
    ----------
    path
        Output ``.png`` (written atomically).
    volumes
        ``[(name, zyx_array), ...]``: one column each, titled with the name.
    voxel_sizes
        ``(z, y, x)`` µm per volume; all ``(1, 1, 1)`` when None.
    position
        ``(z, y, x)`` in µm where the planes cross, with the first voxel of every volume at 0
        (voxel ``k`` at ``k * size``); default: the middle of the largest volume. Each volume
        uses its nearest plane (clipped), so volumes on different grids show the same place.
    **kwargs
        ``percentiles`` (default (1, 99.8)) and ``max_panel`` (largest panel side in pixels,
        512: larger volumes are shown with coarser display pixels).

    The display pixel is the finest lateral voxel size (or coarser to respect
    ``max_panel``); rows are XY (y down, x right), XZ (z down, x right), YZ (z down, y right).
    """
    img, _ = orthoview(volumes, voxel_sizes, position, **kwargs)
    out = write_png(path, img)
    log.info("wrote orthoview %s (%d x %d)", out, img.shape[1], img.shape[0])
    return out
