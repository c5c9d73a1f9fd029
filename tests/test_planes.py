"""Stacks read plane by plane for viewing (isoapp.quality.planes): equal to the array, never read whole."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from isoapp.data.io import read_volume, write_volume
from isoapp.data.levels import auto_levels, stats_sample
from isoapp.physics.forward import upsample
from isoapp.quality import planes
from isoapp.quality.planes import InterpolatedPlanes, PlaneReader, channel_view, interpolated_view, viewable


@pytest.fixture
def stack():
    rng = np.random.default_rng(3)
    return rng.integers(0, 4000, (11, 24, 28)).astype(np.uint16)


@pytest.mark.parametrize("ext", [".tif", ".zarr", ".h5"])
def test_planes_equal_the_array_for_each_lazy_format(tmp_path, stack, ext):
    from isoapp.core.volume import Volume

    path = write_volume(Volume(stack, "ZYX", (1.0, 0.25, 0.25)), tmp_path / f"s{ext}", dtype="uint16")
    vol = read_volume(path, lazy=True)
    assert vol.is_lazy
    r = channel_view(vol)
    assert isinstance(r, PlaneReader) and r.shape == stack.shape
    assert planes.spread_order(range(8)) == [0, 4, 2, 6, 1, 5, 3, 7]
    for z in (0, 5, 10):
        assert np.array_equal(r[z], stack[z])
    assert np.array_equal(r[:, 7, :], stack[:, 7, :]) and np.array_equal(r[:, :, 27], stack[:, :, 27])
    assert r[4, 3, 2] == stack[4, 3, 2]
    with pytest.raises(TypeError, match="plane by plane"):
        np.asarray(r)
    mip = r.max(axis=0)
    assert np.array_equal(mip, stack.max(axis=0)), "11 planes: the projection takes them all"


def test_projection_of_a_deep_stack_takes_a_stated_subset(tmp_path):
    deep = np.zeros((100, 8, 8), np.float32)
    deep[1, 0, 0] = 9.0  # on a plane the strided projection skips
    deep[:, 4, 4] = np.arange(100)
    np.save(tmp_path / "d.npy", deep)
    r = PlaneReader(np.load(tmp_path / "d.npy", mmap_mode="r"))
    mip = r.max(axis=0)
    assert r.mip_planes == 25 and sorted(r.mip_z) == list(range(2, 100, 4))
    assert mip[0, 0] == 0.0 and mip[4, 4] == 98.0, "every 4th plane from plane 2: the stated subset, no more"


def test_projection_of_a_slow_store_stops_early_with_planes_spread_over_the_stack(monkeypatch):
    deep = np.arange(64, dtype=np.float32)[:, None, None] * np.ones((1, 4, 4), np.float32)
    r = PlaneReader(deep)
    clock = iter(range(1000))
    monkeypatch.setattr(planes, "_clock", lambda: float(next(clock)))  # every plane read takes 1 s
    r.max(axis=0)
    assert r.mip_planes == 3 and r.mip_z == [1, 33, 17], "within MIP_SECONDS (2 s): first, middle, quarter"


def test_interpolated_planes_equal_upsample_at_integer_and_fractional_factors(stack):
    ref = stack.astype(np.float32)
    for factor in (4.0, 2.5):
        ip = InterpolatedPlanes(viewable(np.lib.stride_tricks.as_strided(ref)), factor)
        up = upsample(ref, factor, axis=0, order=1)
        assert ip.shape == up.shape
        assert max(float(np.abs(ip[k] - up[k]).max()) for k in range(up.shape[0])) < 1e-3
        assert np.allclose(ip[:, 9, :], up[:, 9, :], atol=1e-3) and np.allclose(ip[:, :, 3], up[:, :, 3], atol=1e-3)


def test_channel_view_of_a_lazy_multichannel_stack_reads_one_channel(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1000, (2, 6, 16, 16)).astype(np.uint16)  # CZYX
    tifffile.imwrite(tmp_path / "c.tif", data[:, :, None].transpose(1, 0, 2, 3, 4)[:, :, 0], imagej=True,
                     metadata={"axes": "ZCYX"})
    vol = read_volume(tmp_path / "c.tif", lazy=True)
    assert vol.axes == "CZYX" and vol.is_lazy
    r1 = channel_view(vol, 1, 0)
    assert np.array_equal(r1[3], data[1, 3]) and np.array_equal(r1[:, 5, :], data[1, :, 5, :])
    before = interpolated_view(vol, 2.0)
    b1 = channel_view(before, 1, 0)
    assert before.shape == (2, 11, 16, 16) and np.allclose(b1[2], data[1, 1], atol=1e-3)
    with pytest.raises(IndexError):
        channel_view(vol, 2, 0)


def test_display_levels_of_a_reader_come_from_a_sample_of_planes(tmp_path, stack):
    np.save(tmp_path / "s.npy", stack)
    r = viewable(np.load(tmp_path / "s.npy", mmap_mode="r"))
    assert isinstance(r, PlaneReader)
    sample = stats_sample(r, 500)
    assert 300 <= sample.size <= 3000 and set(np.unique(sample)) <= set(np.unique(stack))
    lo, hi = auto_levels(r)
    assert stack.min() <= lo < hi <= stack.max()
