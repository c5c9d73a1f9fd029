"""fiji_bridge against the real Debian ImageJ 1.53t and Bio-Formats 7.3.1, headless, in-process.

One headless JVM serves the whole module (a JVM starts once per process). Tests that need a
display or other JVM settings live in test_fiji_bridge_gui.py and run in subprocesses.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import fiji_bridge
from fiji_bridge import locate

pytestmark = pytest.mark.java

if locate.find_java() is None:
    pytest.skip("no Java runtime (java not on PATH, JAVA_HOME unset): apt-get install default-jre",
                allow_module_level=True)
if locate.find_ij_jar() is None:
    pytest.skip("no ImageJ jar (/usr/share/java/ij.jar missing): apt-get install libij-java",
                allow_module_level=True)

from fiji_bridge.convert import imageplus_to_numpy, numpy_to_imageplus  # noqa: E402
from isoapp.core.volume import Volume  # noqa: E402


@pytest.fixture(scope="module")
def session():
    s = fiji_bridge.connect("imagej", headless=True, max_heap="1g")
    yield s
    s.close()


def _ij(name: str):
    from fiji_bridge.jvm import jclass

    return jclass(name)


@pytest.mark.parametrize("axes,shape", [("ZYX", (5, 7, 9)), ("CZYX", (3, 4, 6, 5)), ("TCZYX", (2, 3, 4, 5, 6))])
@pytest.mark.parametrize("dtype", ["float32", "uint16", "uint8"])
def test_array_and_calibration_round_trip(session, axes, shape, dtype):
    rng = np.random.default_rng(1)
    if dtype == "float32":
        arr = (rng.standard_normal(shape) * 1e4).astype(np.float32)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(0, int(info.max) + 1, shape).astype(dtype)
        arr.flat[0], arr.flat[1] = info.max, 0
    imp = numpy_to_imageplus(arr, axes, (2.5, 0.31, 0.29), "rt")
    nt, nc = (shape[0], shape[1]) if axes == "TCZYX" else (1, shape[0]) if axes == "CZYX" else (1, 1)
    assert (imp.getNChannels(), imp.getNSlices(), imp.getNFrames()) == (nc, shape[-3], nt)
    assert imp.getBitDepth() == {"uint8": 8, "uint16": 16, "float32": 32}[dtype]
    if nc > 1 or nt > 1:
        assert imp.isHyperStack()
    back, back_axes, vs = imageplus_to_numpy(imp)
    assert back_axes == axes and back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)
    np.testing.assert_allclose(vs, (2.5, 0.31, 0.29))


def test_uint16_above_32767_is_unsigned_in_imagej(session):
    arr = np.full((2, 3, 4), 40000, np.uint16)
    arr[1, 2, 3] = 65535
    imp = numpy_to_imageplus(arr, "ZYX", (1, 1, 1), "u16")
    ip = imp.getStack().getProcessor(2)
    assert ip.get(3, 2) == 65535 and ip.getPixelValue(0, 0) == 40000.0  # ImageJ sees unsigned values
    ip.set(0, 0, 50000)  # written on the Java side
    back, _, _ = imageplus_to_numpy(imp)
    assert back[1, 0, 0] == 50000 and back[1, 2, 3] == 65535 and back.dtype == np.uint16


def test_calibration_units_are_normalised_to_um(session):
    imp = numpy_to_imageplus(np.zeros((2, 3, 4), np.float32), "ZYX", (2.0, 0.5, 0.25), "nm", unit="nm")
    cal = imp.getCalibration()
    assert str(cal.getUnit()) == "nm" and cal.pixelWidth == pytest.approx(250) and cal.pixelDepth == pytest.approx(2000)
    _, _, vs = imageplus_to_numpy(imp)
    np.testing.assert_allclose(vs, (2.0, 0.5, 0.25))
    cal.setUnit("mm")
    cal.pixelWidth = cal.pixelHeight = 0.001
    cal.pixelDepth = 0.004
    _, _, vs = imageplus_to_numpy(imp)
    np.testing.assert_allclose(vs, (4.0, 1.0, 1.0))
    micron = numpy_to_imageplus(np.zeros((2, 3, 4), np.uint8), "ZYX", (3, 0.2, 0.2), "um")
    assert str(micron.getCalibration().getUnit()) in ("µm", "micron")
    assert str(micron.getCalibration().getUnits()) in ("µm", "microns")


def test_uncalibrated_image_pulls_unit_voxels(session):
    imp = _ij("ij.IJ").createImage("plain", "8-bit ramp", 8, 6, 3)
    vol = session.pull(imp)
    assert vol.voxel_size == (1.0, 1.0, 1.0) and vol.shape == (3, 6, 8) and vol.dtype == np.uint8


def test_push_pull_volume(session):
    data = np.random.default_rng(2).random((2, 4, 5, 6), dtype=np.float32)
    vol = Volume(data, axes="CZYX", voxel_size=(1.5, 0.2, 0.2), name="two-channel")
    imp = session.push(vol)
    assert str(imp.getTitle()) == "two-channel" and imp.isComposite()
    back = session.pull()  # no window is active headless: the last pushed image
    assert back.axes == "CZYX" and back.voxel_size == pytest.approx((1.5, 0.2, 0.2))
    np.testing.assert_array_equal(back.data, data)
    assert session.pull("two-channel").shape == data.shape


def test_isoapp_tiff_opens_in_imagej_with_calibration(session, tmp_path):
    import isoapp.data.io as io
    data = (np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8) / 7).astype(np.float32)
    path = io.write_volume(Volume(data, voxel_size=(2.0, 0.25, 0.2), name="w"), tmp_path / "isoapp.tif")
    imp = _ij("ij.IJ").openImage(str(path))
    assert imp is not None and imp.getNSlices() == 4
    cal = imp.getCalibration()
    scale = locate_scale(str(cal.getUnit()))
    assert cal.pixelWidth * scale == pytest.approx(0.2) and cal.pixelHeight * scale == pytest.approx(0.25)
    assert cal.pixelDepth * scale == pytest.approx(2.0)
    back, axes, _ = imageplus_to_numpy(imp)
    np.testing.assert_allclose(back, data)


def locate_scale(unit: str) -> float:
    from isoapp.core.volume import unit_to_um_scale

    return unit_to_um_scale(unit)


def test_imagej_saved_tiff_reads_in_isoapp(session, tmp_path):
    import isoapp.data.io as io
    arr = np.random.default_rng(3).integers(0, 65535, (2, 5, 7, 9)).astype(np.uint16)
    imp = numpy_to_imageplus(arr, "CZYX", (1.8, 0.11, 0.11), "ijsaved")
    path = tmp_path / "ij_saved.tif"
    assert _ij("ij.IJ").saveAsTiff(imp, str(path))
    vol = io.read_volume(path)
    assert vol.axes == "CZYX" and vol.voxel_size == pytest.approx((1.8, 0.11, 0.11))
    np.testing.assert_array_equal(np.asarray(vol.data), arr)


def test_bioformats_reads_ome_physical_sizes(session, tmp_path):
    if fiji_bridge.find_bioformats_jar() is None:
        pytest.skip("bioformats_package.jar not installed: run python installer/bioformats_jar.py")
    import tifffile
    arr = np.random.default_rng(4).integers(0, 60000, (6, 20, 24)).astype(np.uint16)
    path = tmp_path / "sample.ome.tif"
    tifffile.imwrite(path, arr, ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 0.21, "PhysicalSizeY": 0.22, "PhysicalSizeZ": 1.5,
        "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm", "PhysicalSizeZUnit": "µm"})
    vol = session.read_bioformats(path)
    assert vol.voxel_size == pytest.approx((1.5, 0.22, 0.21))
    assert vol.metadata["ome_physical_size_zyx_um"] == pytest.approx((1.5, 0.22, 0.21))
    np.testing.assert_array_equal(vol.data, arr)
    nm = tmp_path / "nm.ome.tif"
    tifffile.imwrite(nm, arr[:3], ome=True, metadata={
        "axes": "ZYX", "PhysicalSizeX": 100.0, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 100.0,
        "PhysicalSizeYUnit": "nm", "PhysicalSizeZ": 500.0, "PhysicalSizeZUnit": "nm"})
    assert session.read_bioformats(nm).voxel_size == pytest.approx((0.5, 0.1, 0.1))


def test_macro_returns_values_and_errors(session):
    session.push(np.zeros((3, 4, 5), np.float32), voxel_size=(2, 0.5, 0.5), title="macro-img")
    assert session.run_macro('return getArgument();', "hello fiji") == "hello fiji"
    assert session.run_macro('getVoxelSize(w, h, d, u); return "" + w + "," + d;') == "0.5,2"
    assert session.run_macro('newImage("made", "32-bit ramp", 16, 8, 4); return "" + getWidth();') == "16"
    made = session.pull()
    assert made.name == "made" and made.shape == (4, 8, 16)
    with pytest.raises(fiji_bridge.BridgeError, match="macro failed"):
        session.run_macro("x = ;")


def test_headless_show_and_snt_give_clear_errors(session):
    imp = session.push(np.zeros((2, 3, 4), np.uint8), title="nowin")
    with pytest.raises(fiji_bridge.DisplayError, match="headless"):
        session.show(imp)
    with pytest.raises(fiji_bridge.PluginMissingError, match="SNT is not installed") as err:
        session.open_in_snt(imp)
    assert isinstance(err.value, fiji_bridge.BridgeError)
    from isoapp.core.errors import IsoappError

    assert isinstance(err.value, IsoappError)


def test_compare_with_deconvolution_without_dl2(session):
    a = np.random.default_rng(5).random((3, 8, 8), dtype=np.float32)
    result = session.compare_with_deconvolution(a, a * 2, a * 3, show=False)
    assert set(result.images) == {"input", "richardson-lucy", "restored"}
    assert not result.deconvolutionlab2 and "DeconvolutionLab2 is not installed" in result.message
    np.testing.assert_allclose(session.pull(result.images["restored"]).data, a * 3, rtol=1e-6)


def test_macos_fiji_show_writes_tiff_and_opens_fiji(session, tmp_path, monkeypatch):
    # macOS cannot run here: this checks the macOS show fallback with a fake Fiji.app folder
    # and a recorded `open -a` call instead of launching the real Fiji application.
    import isoapp.data.io as io
    fake_fiji = tmp_path / "Fiji.app"
    calls = []
    mac = fiji_bridge.Session("fiji", headless=False, fiji_dir=fake_fiji, show_via_file=True,
                              opener=calls.append)
    imp = mac.push(np.ones((2, 3, 4), np.float32), voxel_size=(3, 0.4, 0.4), title="to fiji", show=True)
    assert imp is not None and len(calls) == 1
    cmd = calls[0]
    assert cmd[:3] == ["open", "-a", str(fake_fiji)] and cmd[3].endswith(".tif")
    assert io.read_volume(cmd[3]).voxel_size == pytest.approx((3, 0.4, 0.4))
    shutil.rmtree(Path(cmd[3]).parent)


def test_scyjava_is_offline_after_connect(session):
    import scyjava.config as sjc

    assert sjc.get_fetch_java() == "never"
    assert list(sjc.endpoints) == []
    classpath = sjc.get_classpath()
    assert "ij.jar" in classpath or os.environ.get("ISOAPP_IJ_JAR", "") in classpath


def test_second_connect_reuses_the_jvm_and_refuses_conflicts(session):
    again = fiji_bridge.connect("auto", headless=True)
    assert again.backend == "imagej"
    with pytest.raises(fiji_bridge.BridgeError, match="headless"):
        fiji_bridge.connect("imagej", headless=False)
