"""Bio-Formats as one reader of the format registry, against the real Bio-Formats 7.3.1 jar.

The files are made in the test in formats Bio-Formats reads natively: an OME-TIFF written by
tifffile (read through the ``bioformats`` entry explicitly) and ICS/IDS pairs written by hand
(an extension only Bio-Formats reads, so the registry picks it by itself). One JVM per process:
the module starts it headless as test_fiji_bridge_headless.py does and the reader reuses it (the
reader starting Java by itself is covered by the CLI subprocess test). The CLI test runs ``isoapp info`` in a
subprocess (its own JVM).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

import fiji_bridge
from fiji_bridge import locate
from isoapp.core.errors import InputError
from isoapp.data.io import LazyArray, describe_file, read_volume

pytestmark = pytest.mark.java

if locate.find_java() is None:
    pytest.skip("no Java runtime (java not on PATH, JAVA_HOME unset): apt-get install default-jre",
                allow_module_level=True)
if fiji_bridge.find_bioformats_jar() is None and fiji_bridge.find_fiji() is None:
    pytest.skip("bioformats_package.jar not installed: run python installer/bioformats_jar.py",
                allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def session():
    """The process's one JVM, started as test_fiji_bridge_headless.py starts it (headless ImageJ +
    Bio-Formats, 1 GB heap), whichever module runs first; the reader then reuses it."""
    if locate.find_ij_jar() is None:
        yield None  # the reader starts Java with the Bio-Formats jar alone
        return
    s = fiji_bridge.connect("imagej", headless=True, max_heap="1g")
    yield s
    s.close()


def write_ics(base: Path, arr: np.ndarray, voxel_zyx: tuple[float, float, float], big_endian: bool = False) -> Path:
    """Write an ICS v1 header ``base.ics`` and its raw pixels ``base.ids`` (``arr`` is ZYX or CZYX)."""
    channels = arr.ndim == 4
    nz, ny, nx = arr.shape[-3:]
    bits = arr.dtype.itemsize * 8
    kind = "real" if arr.dtype.kind == "f" else "integer"
    sign = "unsigned" if arr.dtype.kind == "u" else "signed"
    order = list(range(1, arr.dtype.itemsize + 1))
    rows = [
        "ics_version\t1.0", f"filename\t{base.name}",
        f"layout\tparameters\t{5 if channels else 4}",
        "layout\torder\tbits\tx\ty\tz" + ("\tch" if channels else ""),
        f"layout\tsizes\t{bits}\t{nx}\t{ny}\t{nz}" + (f"\t{arr.shape[0]}" if channels else ""),
        "layout\tcoordinates\tvideo", f"layout\tsignificant_bits\t{bits}",
        f"representation\tformat\t{kind}", f"representation\tsign\t{sign}",
        "representation\tcompression\tuncompressed",
        "representation\tbyte_order\t" + "\t".join(str(i) for i in (order[::-1] if big_endian else order)),
        f"parameter\tscale\t1.0\t{voxel_zyx[2]}\t{voxel_zyx[1]}\t{voxel_zyx[0]}" + ("\t1.0" if channels else ""),
        "parameter\tunits\tbits\tmicrons\tmicrons\tmicrons" + ("\tundefined" if channels else ""),
        "end",
    ]
    header = base.with_suffix(".ics")
    header.write_text("\t\n" + "\n".join(rows) + "\n")
    arr.astype(arr.dtype.newbyteorder(">" if big_endian else "<")).tofile(base.with_suffix(".ids"))
    return header


@pytest.fixture
def ics_pair(tmp_path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(7)
    arr = rng.integers(0, 65535, (2, 5, 12, 14), dtype=np.uint16)  # CZYX
    return write_ics(tmp_path / "cells", arr, (0.8, 0.1, 0.1)), arr


def test_ome_tiff_through_the_bioformats_entry(tmp_path):
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 4095, (2, 6, 20, 24), dtype=np.uint16)  # CZYX
    path = tmp_path / "two_channels.ome.tif"
    tifffile.imwrite(path, arr, ome=True, metadata={
        "axes": "CZYX", "PhysicalSizeX": 0.21, "PhysicalSizeY": 0.22, "PhysicalSizeZ": 1.5,
        "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "PhysicalSizeZUnit": "µm",
        "Channel": {"Name": ["DAPI", "GFP"]}})
    vol = read_volume(path, format="bioformats")
    native = read_volume(path)
    assert vol.metadata["format"] == "bioformats" and native.metadata["format"] == "ome-tiff"
    assert vol.axes == "CZYX" and vol.shape == (2, 6, 20, 24) and vol.dtype == np.uint16
    assert vol.voxel_size == pytest.approx((1.5, 0.22, 0.21)) and vol.metadata["calibrated"]
    assert vol.metadata["channel_names"] == ["DAPI", "GFP"]
    assert vol.metadata["bioformats_format"] == "OME-TIFF"
    np.testing.assert_array_equal(vol.data, arr)
    np.testing.assert_array_equal(vol.data, native.data)
    assert vol.name == "two_channels"


def test_unlabelled_tiff_pages_are_z_as_in_the_native_reader(tmp_path):
    # Bio-Formats guesses time for the pages of a plain TIFF (order not certain); isoapp reads them as z
    arr = np.random.default_rng(9).integers(0, 255, (7, 10, 12), dtype=np.uint8)
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, arr, photometric="minisblack", metadata=None)
    vol = read_volume(path, format="bioformats")
    assert vol.axes == "ZYX" and read_volume(path).axes == "ZYX"
    np.testing.assert_array_equal(vol.data, arr)
    assert not vol.metadata["calibrated"]


@pytest.mark.parametrize("dtype,big_endian", [("uint16", False), ("float32", True), ("uint8", False)])
def test_ics_ids_pair_is_picked_by_extension(tmp_path, dtype, big_endian):
    rng = np.random.default_rng(5)
    arr = (rng.random((4, 9, 11)) * 200).astype(dtype)  # ZYX
    header = write_ics(tmp_path / f"stack_{dtype}", arr, (2.0, 0.3, 0.25), big_endian=big_endian)
    for path in (header, header.with_suffix(".ids")):  # either file of the pair opens it
        vol = read_volume(path)
        assert vol.metadata["format"] == "bioformats"
        assert vol.axes == "ZYX" and vol.shape == arr.shape and vol.dtype == np.dtype(dtype)
        assert vol.dtype.isnative
        assert vol.voxel_size == pytest.approx((2.0, 0.3, 0.25))
        np.testing.assert_array_equal(vol.data, arr)


def test_lazy_read_asks_only_for_the_planes_indexed(ics_pair, monkeypatch):
    from fiji_bridge.bioformats import BioFormatsFile

    header, arr = ics_pair
    keys = []
    real = BioFormatsFile.read_block

    def spy(self, key):
        keys.append(key)
        return real(self, key)

    monkeypatch.setattr(BioFormatsFile, "read_block", spy)
    vol = read_volume(header, lazy=True)
    assert isinstance(vol.data, LazyArray) and not keys  # nothing read yet
    assert vol.axes == "CZYX" and vol.shape == arr.shape
    np.testing.assert_array_equal(vol.data[1, 3], arr[1, 3])
    np.testing.assert_array_equal(vol.data[0, 1:4, 2:9:3, 5], arr[0, 1:4, 2:9:3, 5])
    t, c, z, y, x = keys[0]
    assert (t, c, z) == (0, 1, 3)  # one plane
    assert keys[1][2] == slice(1, 4, 1) and keys[1][4] == 5  # three planes, one column
    vol.data.close()


def test_channels_voxel_size_and_files_in_describe(ics_pair):
    header, arr = ics_pair
    info = describe_file(header)
    assert info["format"] == "bioformats" and info["format_name"] == "Bio-Formats: Image Cytometry Standard"
    assert info["shape"] == list(arr.shape) and info["axes"] == "CZYX"
    assert info["voxel_size"] == pytest.approx([0.8, 0.1, 0.1]) and info["anisotropy"] == pytest.approx(8)
    assert info["size_on_disk"] == header.stat().st_size + header.with_suffix(".ids").stat().st_size
    assert info["size_in_memory"] == arr.nbytes


def test_series_choice_and_bad_files(tmp_path):
    a = np.arange(3 * 8 * 9, dtype=np.uint16).reshape(3, 8, 9)
    path = tmp_path / "series.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(a, metadata={"axes": "ZYX", "Name": "first", "PhysicalSizeZ": 1.0})
        tw.write(a[:, ::-1] * 2, metadata={"axes": "ZYX", "Name": "second", "PhysicalSizeZ": 1.0})
    from fiji_bridge.bioformats import list_series

    assert [(i, n, s) for i, n, s, _ in list_series(path)] == [(0, "first", (1, 1, 3, 8, 9)),
                                                               (1, "second", (1, 1, 3, 8, 9))]
    np.testing.assert_array_equal(read_volume(path, format="bioformats", dataset="1").data, a[:, ::-1] * 2)
    np.testing.assert_array_equal(read_volume(path, format="bioformats", dataset="second").data, a[:, ::-1] * 2)
    with pytest.raises(InputError, match=r"no series '5'; it holds 2 series: 0 \(first\), 1 \(second\)"):
        read_volume(path, format="bioformats", dataset="5")
    junk = tmp_path / "junk.czi"
    junk.write_bytes(os.urandom(3000))
    with pytest.raises(InputError, match="junk.czi: Bio-Formats cannot read it"):
        read_volume(junk)


def test_session_read_bioformats_uses_the_registry_reader(ics_pair):
    header, arr = ics_pair
    vol = fiji_bridge.connect("auto", headless=True).read_bioformats(header)
    assert vol.metadata["source"] == "bioformats" and vol.metadata["format"] == "bioformats"
    np.testing.assert_array_equal(vol.data, arr)


def test_gui_opens_ics_and_chooses_a_series(ics_pair, tmp_path, monkeypatch):
    pytest.importorskip("PySide6")
    from isoapp.data.io import registry
    from isoapp.gui import dialogs, opening

    header, arr = ics_pair
    started = []
    vol, ds = opening.load_volume(None, header, None, lambda: started.append(1))
    assert started and ds is None and vol.voxel_size == pytest.approx((0.8, 0.1, 0.1))
    np.testing.assert_array_equal(vol.data, arr)
    # a two-series file: an OME-TIFF, with the registry told to read .tif through Bio-Formats
    # (vendor files with several series, such as LIF, cannot be written here)
    path = tmp_path / "two.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(arr[0], metadata={"axes": "ZYX", "Name": "a"})
        tw.write(arr[1], metadata={"axes": "ZYX", "Name": "b"})
    real = registry.reader_for
    monkeypatch.setattr(registry, "reader_for", lambda p, format=None: real(p, format or "bioformats"))
    asked = []
    old = dialogs.set_hook("choose", lambda parent, title, label, items: asked.append(items) or items[1])
    try:
        vol, ds = opening.load_volume(None, path, None, None)
        assert len(asked[0]) == 2 and asked[0][1].startswith("1: b") and ds == "1"
        np.testing.assert_array_equal(vol.data, arr[1])
        dialogs.set_hook("choose", lambda *a: None)  # cancelled: nothing opened
        assert opening.load_volume(None, path, None, None) == (None, None)
    finally:
        dialogs.set_hook("choose", old)


def test_cli_info_on_an_ics_pair(ics_pair):
    header, arr = ics_pair
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "DISPLAY": ""}
    res = subprocess.run([sys.executable, "-m", "isoapp", "info", str(header)], capture_output=True, text=True,
                         timeout=180, encoding="utf-8", env=env)
    assert res.returncode == 0, res.stderr
    assert "Bio-Formats: Image Cytometry Standard" in res.stdout
    assert "2 x 5 x 12 x 14  (CZYX)" in res.stdout and "0.8 x 0.1 x 0.1 µm (z, y, x)" in res.stdout
    assert "anisotropy:     8\n" in res.stdout and "Traceback" not in res.stderr
    res = subprocess.run([sys.executable, "-m", "isoapp", "info", "--json", str(header.with_suffix(".ids"))],
                         capture_output=True, text=True, timeout=180, encoding="utf-8", env=env)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["shape"] == [2, 5, 12, 14] and info["voxel_size"] == pytest.approx([0.8, 0.1, 0.1])


def test_restore_reads_a_bioformats_file(ics_pair, tmp_path):
    from isoapp.cli import main

    header, arr = ics_pair
    out = tmp_path / "restored.tif"
    assert main(["restore", str(header), "-o", str(out), "--method", "linear", "-q"]) == 0
    res = read_volume(out)
    assert res.axes == "CZYX" and res.shape[0] == 2 and res.shape[1] == (5 - 1) * 8 + 1
    assert res.voxel_size == pytest.approx((0.1, 0.1, 0.1))
    np.testing.assert_allclose(res.data[:, ::8], arr, rtol=1e-5)  # linear keeps the input planes
