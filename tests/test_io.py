"""isoapp.data.io: real files written and read in tmp_path (TIFF, OME-TIFF, HDF5, OME-Zarr)."""

from __future__ import annotations

import json
import logging
import os
import tracemalloc

import h5py
import numpy as np
import pytest
import tifffile

from isoapp.core.errors import ConfigError, InputError, OutputError
from isoapp.core.volume import Volume
from isoapp.data.io import (
    SUPPORTED_EXTENSIONS,
    LazyArray,
    atomic_path,
    check_output_path,
    describe_file,
    read_volume,
    write_volume,
)

SHAPES = {"ZYX": (5, 6, 7), "CZYX": (2, 5, 6, 7), "TCZYX": (2, 3, 4, 6, 7)}
VOXEL = (0.8, 0.1625, 0.1625)
TIFF_FORMATS = [("out.tif", None, "imagej-tiff"), ("out.ome.tif", None, "ome-tiff"), ("plain.tif", "tiff", "tiff")]


def _data(rng, axes, dtype):
    shape = SHAPES[axes]
    if dtype == "uint16":
        return rng.integers(0, 65536, size=shape, dtype=np.uint16)
    return (rng.random(shape) * 500 - 100).astype(np.float32)


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name,fmt,expected_fmt", TIFF_FORMATS)
@pytest.mark.parametrize("axes", ["ZYX", "CZYX", "TCZYX"])
@pytest.mark.parametrize("dtype", ["float32", "uint16"])
def test_tiff_round_trip_keeps_data_and_voxel_size(tmp_path, rng, name, fmt, expected_fmt, axes, dtype):
    data = _data(rng, axes, dtype)
    vol = Volume(data, axes, VOXEL)
    out = write_volume(vol, tmp_path / name, dtype=dtype, format=fmt)
    assert out == (tmp_path / name).resolve()
    back = read_volume(out)
    assert back.axes == axes
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.data, data)
    assert back.voxel_size == VOXEL
    assert back.metadata["calibrated"] is True
    assert back.metadata["format"] == expected_fmt
    if dtype == "uint16":
        assert vol.metadata["rescale"]["mode"] == "none"  # integer data in range: written unchanged


def test_imagej_tiff_written_by_tifffile_directly(tmp_path, rng):
    path = tmp_path / "stack.tif"
    data = rng.integers(0, 4000, size=(12, 16, 16), dtype=np.uint16)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"spacing": 0.8, "unit": "micron"})
    vol = read_volume(path)
    assert vol.axes == "ZYX"
    assert vol.voxel_size == (0.8, 0.2, 0.2)
    assert vol.anisotropy == pytest.approx(4.0)
    np.testing.assert_array_equal(vol.data, data)


@pytest.mark.parametrize("unit,scale", [("micron", 1.0), ("um", 1.0), ("\\u00B5m", 1.0), ("nm", 1000.0),
                                        ("mm", 0.001), ("µm", 1.0), ("μm", 1.0)])
def test_units_are_normalised_to_um(tmp_path, rng, unit, scale):
    path = tmp_path / "units.tif"
    dz, dxy = 0.5 * scale, 0.125 * scale
    data = rng.random((4, 8, 8)).astype(np.float32)
    meta = {"spacing": dz, "unit": unit, "axes": "ZYX"}
    if unit.isascii():  # ImageJ descriptions are ASCII (ImageJ itself writes \u00B5m)
        tifffile.imwrite(path, data, imagej=True, resolution=(1 / dxy, 1 / dxy), metadata=meta)
    else:  # tifffile's JSON description can carry a real µ
        tifffile.imwrite(path, data, photometric="minisblack", resolution=(1 / dxy, 1 / dxy), metadata=meta)
    vol = read_volume(path)
    assert vol.voxel_size == (0.5, 0.125, 0.125)
    assert vol.metadata["calibrated"]


def test_ome_tiff_from_tifffile_in_nanometres(tmp_path, rng):
    path = tmp_path / "nm.ome.tif"
    data = rng.random((3, 4, 8, 8)).astype(np.float32)  # ZCYX on disk
    tifffile.imwrite(path, data, ome=True, metadata={
        "axes": "ZCYX", "PhysicalSizeX": 100.0, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 100.0,
        "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 400.0, "PhysicalSizeZUnit": "nm"})
    vol = read_volume(path)
    assert vol.axes == "CZYX"
    assert vol.voxel_size == (0.4, 0.1, 0.1)
    np.testing.assert_array_equal(vol.data, data.transpose(1, 0, 2, 3))


def test_uncalibrated_tiff_gets_unit_voxels_and_a_warning(tmp_path, rng, caplog):
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, rng.random((4, 8, 8)).astype(np.float32), photometric="minisblack")
    with caplog.at_level(logging.WARNING, logger="isoapp"):
        vol = read_volume(path)
    assert vol.axes == "ZYX"
    assert vol.voxel_size == (1.0, 1.0, 1.0)
    assert vol.metadata["calibrated"] is False
    assert any("no voxel size" in r.getMessage() for r in caplog.records)


def test_plain_4d_tiff_needs_explicit_axes(tmp_path, rng):
    path = tmp_path / "ambiguous.tif"
    data = rng.random((3, 4, 8, 8)).astype(np.float32)
    tifffile.imwrite(path, data, photometric="minisblack")
    with pytest.raises(InputError, match="axes="):
        read_volume(path)
    vol = read_volume(path, axes="CZYX")
    assert vol.axes == "CZYX" and vol.shape == (3, 4, 8, 8)
    vol = read_volume(path, axes="ZCYX")
    np.testing.assert_array_equal(vol.data, data.transpose(1, 0, 2, 3))


def test_uint16_rescaling_is_stated_and_stored(tmp_path, rng, caplog):
    data = (rng.random((4, 8, 8)) * 2 - 0.5).astype(np.float32)  # negative values: needs rescaling
    vol = Volume(data, "ZYX", VOXEL, name="neg")
    with caplog.at_level(logging.WARNING, logger="isoapp"):
        out = write_volume(vol, tmp_path / "r.tif", dtype="uint16")
    info = vol.metadata["rescale"]
    assert info["mode"] == "linear" and info["dtype"] == "uint16"
    assert any("rescaled linearly" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    back = read_volume(out)
    assert back.data.min() == 0 and back.data.max() == 65535
    expected = np.clip(np.rint(data.astype(np.float64) * info["scale"] + info["offset"]), 0, 65535)
    np.testing.assert_array_equal(back.data, expected.astype(np.uint16))
    assert back.metadata["rescale"]["input_min"] == pytest.approx(float(data.min()))
    with tifffile.TiffFile(out) as tif:
        assert "rescaled linearly" in tif.imagej_metadata["Info"]


@pytest.mark.parametrize("name", ["r.ome.tif", "r.h5"])
def test_rescale_info_is_stored_in_other_formats(tmp_path, rng, name):
    data = (rng.random((4, 8, 8)) * 3000 + 70000).astype(np.float32)  # above the uint16 range
    vol = Volume(data, "ZYX", VOXEL)
    back = read_volume(write_volume(vol, tmp_path / name, dtype="uint16"))
    assert back.metadata["rescale"]["mode"] == "linear"
    assert back.metadata["rescale"]["input_max"] == pytest.approx(float(data.max()))


def test_uint8_output_and_float_in_range_kept(tmp_path, rng):
    data = np.rint(rng.random((4, 8, 8)) * 200 + 10).astype(np.float32)
    vol = Volume(data, "ZYX", VOXEL)
    back = read_volume(write_volume(vol, tmp_path / "u8.tif", dtype="uint8"))
    assert back.dtype == np.uint8
    assert vol.metadata["rescale"]["mode"] == "none"
    np.testing.assert_array_equal(back.data, data.astype(np.uint8))
    with pytest.raises(ConfigError):
        write_volume(vol, tmp_path / "x.tif", dtype="int32")


def test_hdf5_round_trip_and_dataset_selection(tmp_path, rng):
    data = _data(rng, "CZYX", "float32")
    out = write_volume(Volume(data, "CZYX", VOXEL), tmp_path / "v.h5")
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["data"].attrs["element_size_um"], VOXEL)
    back = read_volume(out)
    assert back.axes == "CZYX" and back.voxel_size == VOXEL
    np.testing.assert_array_equal(back.data, data)

    multi = tmp_path / "multi.h5"
    with h5py.File(multi, "w") as f:
        f["raw"] = np.zeros((4, 8, 8), np.uint16)
        f.create_group("pred")["membranes"] = np.ones((5, 8, 8), np.float32)
        f["pred/membranes"].attrs["element_size_um"] = [1.0, 0.25, 0.25]
        f["table"] = np.zeros(10)
    with pytest.raises(InputError, match="--dataset") as err:
        read_volume(multi)
    assert "/raw" in str(err.value) and "/pred/membranes" in str(err.value) and "table" not in str(err.value)
    vol = read_volume(multi, dataset="pred/membranes")
    assert vol.shape == (5, 8, 8) and vol.voxel_size == (1.0, 0.25, 0.25)
    assert read_volume(multi, dataset="/raw").metadata["calibrated"] is False
    with pytest.raises(InputError, match="no dataset 'nope'"):
        read_volume(multi, dataset="nope")
    with pytest.raises(InputError, match="2D plane"):
        read_volume(multi, dataset="table")


def test_ome_zarr_round_trip(tmp_path, rng):
    zarr = pytest.importorskip("zarr")
    data = _data(rng, "TCZYX", "float32")
    out = write_volume(Volume(data, "TCZYX", VOXEL), tmp_path / "v.ome.zarr")
    assert out.is_dir()
    attrs = dict(zarr.open(str(out), mode="r").attrs)
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, *VOXEL]
    back = read_volume(out)
    assert back.axes == "TCZYX" and back.voxel_size == VOXEL and back.metadata["format"] == "ome-zarr"
    np.testing.assert_array_equal(back.data, data)
    lazy = read_volume(out, lazy=True)
    assert lazy.is_lazy
    np.testing.assert_array_equal(lazy.data[1, 2, 3], data[1, 2, 3])


def test_zarr_dataset_selection_and_ngff_units(tmp_path):
    zarr = pytest.importorskip("zarr")
    root = zarr.open_group(str(tmp_path / "multi.zarr"), mode="w")
    create = getattr(root, "create_array", None) or root.create_dataset
    create("a", shape=(4, 8, 8), dtype="f4")
    sub = root.create_group("s")
    b = (getattr(sub, "create_array", None) or sub.create_dataset)("b", shape=(5, 8, 8), dtype="u2")
    b[...] = 7
    b.attrs["element_size_um"] = [2.0, 0.5, 0.5]
    with pytest.raises(InputError, match="--dataset") as err:
        read_volume(tmp_path / "multi.zarr")
    assert "a, s/b" in str(err.value)
    vol = read_volume(tmp_path / "multi.zarr", dataset="s/b")
    assert vol.voxel_size == (2.0, 0.5, 0.5) and int(vol.data.max()) == 7

    ngff = zarr.open_group(str(tmp_path / "nm.zarr"), mode="w")
    (getattr(ngff, "create_array", None) or ngff.create_dataset)("0", shape=(3, 4, 8, 8), dtype="f4")
    space = [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    ngff.attrs["multiscales"] = [{
        "version": "0.4", "axes": [{"name": "c", "type": "channel"}, *space],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 400, 100, 100]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [1, 2, 1, 1]}],
    }]
    vol = read_volume(tmp_path / "nm.zarr", lazy=True)
    assert vol.axes == "CZYX" and vol.voxel_size == (0.8, 0.1, 0.1) and isinstance(vol.data, LazyArray)


# ---------------------------------------------------------------------------- laziness
def test_lazy_tiff_is_a_memmap_and_compressed_tiff_reads_planewise(tmp_path, rng):
    data = rng.integers(0, 1000, size=(6, 3, 16, 16), dtype=np.uint16)  # ZCYX
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, data, imagej=True, metadata={"axes": "ZCYX"})
    vol = read_volume(plain, lazy=True)
    assert isinstance(vol.data, np.memmap)
    np.testing.assert_array_equal(vol.load().data, data.transpose(1, 0, 2, 3))

    packed = tmp_path / "packed.tif"
    tifffile.imwrite(packed, data, imagej=True, compression="zlib", metadata={"axes": "ZCYX"})
    vol = read_volume(packed, lazy=True)
    assert isinstance(vol.data, LazyArray) and vol.axes == "CZYX"
    np.testing.assert_array_equal(vol.data[2, 4], data[4, 2])
    np.testing.assert_array_equal(vol.data[1, ::-2, 3:9], data[::-2, 1, 3:9])
    np.testing.assert_array_equal(np.asarray(vol.data), data.transpose(1, 0, 2, 3))
    vol.data.close()


def test_lazy_hdf5_keeps_file_open_and_reads_on_demand(tmp_path, rng):
    data = rng.random((5, 8, 9)).astype(np.float32)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["vol"] = data
    vol = read_volume(path, lazy=True)
    assert isinstance(vol.data, LazyArray) and vol.is_lazy
    np.testing.assert_array_equal(vol.data[3], data[3])
    np.testing.assert_array_equal(vol.channel(0).data[1:4, 2], data[1:4, 2])


def test_lazy_array_views_match_numpy(rng):
    ref = rng.random((2, 3, 4, 5))
    calls = []

    def reader(key):
        calls.append(key)
        return ref[key]

    lazy = LazyArray(reader, ref.shape, ref.dtype)
    view = lazy.transpose(2, 0, 3, 1).take_index(1, 1).expand_dims(0)  # (1, 4, 5, 3)
    expected = ref.transpose(2, 0, 3, 1)[:, 1][None]
    assert view.shape == expected.shape and not calls
    # index lists are applied orthogonally (like h5py/zarr); these keys mean the same in numpy
    for key in [(...,), (0, 2), (slice(None), slice(None, None, -1), [4, 0, 2]), (0, [3, 0, 2]),
                (Ellipsis, 1), (0, -1, slice(1, 4), 2), (0, np.array([True, False, True, True]))]:
        np.testing.assert_array_equal(view[key], expected[key])
    np.testing.assert_array_equal(np.asarray(view), expected)
    with pytest.raises(IndexError):
        view[0, 4]


def test_describe_file_does_not_read_the_pixels(tmp_path):
    path = tmp_path / "big.tif"
    shape = (256, 512, 256)  # 64 MiB of uint16, created sparse without holding it in memory
    mm = tifffile.memmap(path, shape=shape, dtype=np.uint16, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                         metadata={"spacing": 1.0, "unit": "um", "axes": "ZYX"})
    mm[100, 10, 10] = 7
    mm.flush()
    del mm
    tracemalloc.start()
    try:
        info = describe_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"describe_file allocated {peak} bytes for a 64 MiB file"
    assert info["shape"] == list(shape) and info["dtype"] == "uint16"
    assert info["size_in_memory"] == 2 * 256 * 512 * 256
    assert info["size_on_disk"] >= info["size_in_memory"]
    assert info["voxel_size"] == [1.0, 0.2, 0.2] and info["anisotropy"] == pytest.approx(5.0)
    assert info["calibrated"] is True and info["format"] == "imagej-tiff"


# ---------------------------------------------------------------------------- output safety
class _Exploding:
    """Array-like whose 4th plane cannot be read: a write that fails midway."""

    def __init__(self, data):
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        z = key[0] if isinstance(key, tuple) else key
        hit = range(self.shape[0])[z] if isinstance(z, slice) else [z]
        if 3 in hit:
            raise RuntimeError("disk on fire")
        return self._data[key]


@pytest.mark.parametrize("name", ["out.tif", "out.ome.tif", "out.h5", "out.zarr"])
def test_failed_write_leaves_original_and_no_temp_files(tmp_path, rng, name):
    if name.endswith(".zarr"):
        pytest.importorskip("zarr")
    good = Volume(rng.integers(0, 100, (8, 8, 8), dtype=np.uint16), "ZYX", VOXEL)
    target = write_volume(good, tmp_path / name)
    before = _listing(tmp_path)
    original = read_volume(target).data.copy()
    bad = Volume(_Exploding(rng.integers(0, 100, (8, 8, 8), dtype=np.uint16)), "ZYX", VOXEL)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_volume(bad, target)  # uint16 -> float32 needs no pre-scan: the writer hits plane 3
    assert _listing(tmp_path) == before
    np.testing.assert_array_equal(read_volume(target).data, original)


def test_atomic_path_replaces_folders_and_files(tmp_path):
    target = tmp_path / "d.zarr"
    (target / "0").mkdir(parents=True)
    (target / ".zattrs").write_text("{}")
    (target / "0" / "0.0.0").write_text("old chunk")
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert _listing(target) == ["new"] and _listing(tmp_path) == ["d.zarr"]
    (target / "notes.txt").write_text("not written by isoapp")  # a folder with foreign files is never replaced
    with pytest.raises(OutputError, match="did not write"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
    assert sorted(_listing(target)) == ["new", "notes.txt"] and _listing(tmp_path) == ["d.zarr"]
    with pytest.raises(OutputError, match="nothing was written"):
        with atomic_path(tmp_path / "f.tif"):
            pass


def test_refuses_to_overwrite_the_input(tmp_path, small_stack):
    path = tmp_path / "in.tif"
    write_volume(Volume(small_stack, "ZYX", VOXEL), path)
    vol = read_volume(path)
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        write_volume(vol, path)
    link = tmp_path / "link.tif"
    link.symlink_to(path)
    with pytest.raises(OutputError, match="refusing to overwrite the input"):
        write_volume(Volume(small_stack, "ZYX", VOXEL), link, inputs=[path])
    hard = tmp_path / "hard.tif"
    os.link(path, hard)
    with pytest.raises(OutputError, match="refusing"):
        check_output_path(hard, [path])
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "out.tif", [path])
    assert check_output_path(tmp_path / "other.tif", [path, None]) == (tmp_path / "other.tif").resolve()
    assert _listing(tmp_path) == ["hard.tif", "in.tif", "link.tif"]


def test_nan_is_refused_before_writing(tmp_path, small_stack):
    small_stack[2, 3, 4] = np.nan
    with pytest.raises(InputError, match="NaN"):
        write_volume(Volume(small_stack, "ZYX", VOXEL), tmp_path / "nan.tif")
    assert _listing(tmp_path) == []


def test_bad_output_paths(tmp_path, small_stack):
    vol = Volume(small_stack, "ZYX", VOXEL)
    with pytest.raises(OutputError, match="extension"):
        write_volume(vol, tmp_path / "out.png")
    (tmp_path / "folder.tif").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        write_volume(vol, tmp_path / "folder.tif")


# ---------------------------------------------------------------------------- bad input
def _truncated_copy(src, dst, frac):
    blob = src.read_bytes()
    dst.write_bytes(blob[: int(len(blob) * frac)])
    return dst


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_tiff_is_an_input_error(tmp_path, rng, compression, lazy):
    src = tmp_path / "full.tif"
    tifffile.imwrite(src, rng.integers(0, 999, (10, 32, 32), dtype=np.uint16), imagej=True,
                     compression=compression, metadata={"axes": "ZYX"})
    for frac in (0.05, 0.5, 0.95):
        bad = _truncated_copy(src, tmp_path / "cut.tif", frac)
        with pytest.raises(InputError, match="cut.tif"):
            read_volume(bad, lazy=lazy)


@pytest.mark.parametrize("name,content", [
    ("random.tif", os.urandom(4096)), ("empty.tif", b""), ("random.h5", os.urandom(4096)),
    ("text.tiff", b"this is not an image\n"),
])
def test_corrupt_files_are_input_errors(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=name.replace(".", r"\.")) as err:
        read_volume(path)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError):
        describe_file(path)


def test_missing_unsupported_2d_and_empty_inputs(tmp_path, rng):
    with pytest.raises(InputError, match="no such file"):
        read_volume(tmp_path / "nope.tif")
    with pytest.raises(InputError, match="unsupported file type"):
        read_volume(tmp_path / "image.png")
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, rng.random((32, 32)).astype(np.float32))
    with pytest.raises(InputError, match="flat.tif.*3D stack"):
        read_volume(flat)
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f["v"] = np.zeros((0, 4, 4), np.float32)
    with pytest.raises(InputError, match="zero-size"):
        read_volume(empty)


def test_zarr_errors_are_input_errors(tmp_path):
    pytest.importorskip("zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InputError, match="empty.zarr"):
        read_volume(tmp_path / "empty.zarr")
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(InputError, match="not a Zarr folder"):
        read_volume(tmp_path / "file.zarr")


def test_supported_extensions_and_json_metadata(tmp_path, small_stack):
    assert ".tif" in SUPPORTED_EXTENSIONS and ".ome.zarr" in SUPPORTED_EXTENSIONS
    out = write_volume(Volume(small_stack, "ZYX", VOXEL), tmp_path / "p.tif", format="tiff")
    with tifffile.TiffFile(out) as tif:
        meta = json.loads(tif.pages[0].description)
    assert meta["axes"] == "ZYX" and meta["voxel_size_um"] == list(VOXEL)
