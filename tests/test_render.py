"""Tests of the orthoview PNG renderer (decoded here with zlib + struct only)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from isoapp.quality import render


def read_png(path) -> np.ndarray:
    """Decode an 8-bit greyscale, non-interlaced PNG whose rows all use filter 0."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos: pos + 4])
        kind, body = data[pos + 4: pos + 8], data[pos + 8: pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n: pos + 12 + n])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, kind
        chunks.append((kind, body))
        pos += 12 + n
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    w, h, depth, ctype, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, ctype, comp, filt, interlace) == (8, 0, 0, 0, 0)
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    rows = np.frombuffer(raw, np.uint8).reshape(h, w + 1)
    assert np.all(rows[:, 0] == 0)
    return rows[:, 1:]


def _layered(nz, dz, ny=16, nx=20):
    """Planes at z < 8 µm (plane k at k * dz) and x < 10 µm dark, the rest bright."""
    v = np.zeros((nz, ny, nx), np.float32)
    zc = np.arange(nz) * dz
    v[zc >= 8] = 1.0
    v[:, :, nx // 2:] += 1.0
    return v


def test_orthoview_png_layout_and_pixels(tmp_path):
    coarse = _layered(8, 2.0)   # 8 planes of 2 µm
    fine = _layered(16, 1.0)    # the same 16 µm on a 1 µm grid
    out = render.orthoview_png(tmp_path / "ortho.png", [("input", coarse), ("truth", fine)],
                               voxel_sizes=[(2.0, 1.0, 1.0), (1.0, 1.0, 1.0)])
    assert out == tmp_path / "ortho.png"
    img = read_png(out)
    ref, panels = render.orthoview([("input", coarse), ("truth", fine)], [(2.0, 1.0, 1.0), (1.0, 1.0, 1.0)])
    np.testing.assert_array_equal(img, ref)
    assert [p for p in tmp_path.iterdir()] == [out]  # no temp file left behind

    # both columns: XY 16 x 20, XZ 16 x 20 (16 µm of z at 1 µm pixels), YZ 16 x 16
    for name in ("input", "truth"):
        assert panels[(name, "XY")][2:] == (16, 20)
        assert panels[(name, "XZ")][2:] == (16, 20)
        assert panels[(name, "YZ")][2:] == (16, 16)
    r0, c0, h, w = panels[("truth", "XZ")]
    xz = img[r0: r0 + h, c0: c0 + w].astype(int)
    # fine volume: z rows 0-7 dark, 8-15 bright; x halves differ by one contrast step
    assert np.all(xz[:8, :10] == 0)
    assert np.all(xz[8:, 10:] == 255)
    assert np.all(xz[:8, 10:] == xz[0, 10]) and 100 < xz[0, 10] < 155
    r0, c0, h, w = panels[("input", "XZ")]
    xz = img[r0: r0 + h, c0: c0 + w].astype(int)
    # coarse volume resampled to 1 µm: planes 0..7 on rows 0, 2, .., 14, row 7 half-way
    assert np.all(xz[:7, :10] == 0)
    assert np.all(xz[8:, 10:] == 255)
    assert np.all(xz[7, :10] == 64) and np.all(xz[7, 10:] == 191)  # 0.5 and 1.5 of the range 0..2
    # the XY panel is the central plane (bright in z): left half one step, right half 255
    r0, c0, h, w = panels[("input", "XY")]
    assert np.all(img[r0: r0 + h, c0 + 10: c0 + w] == 255)
    # titles are drawn in white above the panels, gaps are grey
    assert np.any(img[: panels[("input", "XY")][0], c0: c0 + w] == render.TEXT)
    assert img[0, 0] == render.BACKGROUND


def test_orthoview_position_and_smaller_volume(tmp_path):
    v = np.zeros((10, 12, 12), np.float32)
    v[2] = 1.0  # only plane z=2 bright
    small = np.ones((10, 6, 12), np.float32)
    small[0, 0, 0] = 0
    img, panels = render.orthoview([("a", v), ("small", small)], position=(2.2, 6, 6))
    r0, c0, h, w = panels[("a", "XY")]
    assert np.all(img[r0: r0 + h, c0: c0 + w] == 255)
    img0, panels0 = render.orthoview([("a", v)], position=(0.5, 6, 6))
    r0, c0, h, w = panels0[("a", "XY")]
    assert np.all(img0[r0: r0 + h, c0: c0 + w] == 0)
    # the smaller volume is padded with black outside its extent (y >= 6)
    r0, c0, h, w = panels[("small", "XY")]
    assert h == 12 and np.all(img[r0 + 6: r0 + 12, c0: c0 + w] == 0)


def test_large_volume_is_shown_at_bounded_size():
    img, panels = render.orthoview([("big", np.zeros((300, 40, 1200), np.float32))], max_panel=400)
    assert panels[("big", "XY")][3] == 400
    assert img.shape[1] < 500


def test_font_and_encoder():
    assert all(len(code) == 14 for code in render._FONT.values())
    m = render.text_mask("HI", 2)
    assert m.shape == (14, 22)
    # 'H': both outer columns lit on every row, middle row lit across
    np.testing.assert_array_equal(render.text_mask("H")[:, 0], np.ones(7, bool))
    np.testing.assert_array_equal(render.text_mask("H")[3, :5], np.ones(5, bool))
    with pytest.raises(ValueError):
        render.encode_png(np.zeros((2, 2, 3), np.uint8))
