"""Stacks too large to copy go to ImageJ/Fiji as virtual stacks of their own files (issue 30).

The block-wise run writes BigTIFF OME-TIFF or OME-Zarr. ImageJ 1.x reads only classic TIFF, so a
BigTIFF goes through Bio-Formats (plain ImageJ gets the installer's jar through ``-Dplugins.dir``),
and an OME-Zarr through Fiji's n5-ij. The Bio-Formats path runs in the real ImageJ; n5-ij exists
only inside a user's Fiji.app, so for it a stand-in Fiji folder checks the macro that would run.
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import tifffile

from isoapp.data.io.sinks import SinkSpec


class _Recorder:
    """Stands in for ``subprocess.Popen``: records the argv that would start ImageJ."""

    def __init__(self):
        self.argv: list[list[str]] = []

    def __call__(self, argv, **_kw):
        self.argv.append(list(argv))
        return type("Done", (), {"poll": lambda self: 0})()


def _block_output(tmp_path, fmt: str, name: str):
    """A stack written the way a block-wise run writes it (SinkSpec, the engine's own writer)."""
    data = (np.arange(5 * 20 * 30, dtype=np.float32).reshape(5, 20, 30) % 997)
    spec = SinkSpec(fmt, str(tmp_path / name), data.shape, "ZYX", "float32", (5, 20, 30), (2.0, 0.5, 0.5))
    spec.create()
    spec.write((slice(0, 5), slice(0, 20), slice(0, 30)), data)
    if fmt == "ome-zarr":
        spec._write_metadata(__import__("zarr").open_group(spec.path, mode="r+"), [data.shape])
    return tmp_path / name, data


def test_file_kind_tells_classic_tiff_bigtiff_and_zarr(tmp_path):
    from fiji_bridge.external import file_kind, zarr_dataset

    tifffile.imwrite(tmp_path / "c.tif", np.zeros((3, 4, 5), np.uint16), photometric="minisblack")
    big, _ = _block_output(tmp_path, "ome-tiff", "b.ome.tif")
    zarr_dir, _ = _block_output(tmp_path, "ome-zarr", "r.zarr")
    (tmp_path / "s.h5").write_bytes(b"")
    assert [file_kind(tmp_path / "c.tif"), file_kind(big), file_kind(zarr_dir), file_kind(tmp_path / "s.h5")] == [
        "tiff", "bioformats", "n5", "n5"]
    assert zarr_dataset(zarr_dir) == "0"


def test_plain_imagej_refuses_ome_zarr_and_launches_nothing(tmp_path):
    from fiji_bridge.errors import PluginMissingError
    from fiji_bridge.external import Handoff, Launcher

    zarr_dir, _ = _block_output(tmp_path, "ome-zarr", "r.zarr")
    rec = _Recorder()
    with pytest.raises(PluginMissingError, match=r"N5.*nothing was sent.*Fiji.*\.ome\.tif"):
        Handoff(Launcher(["imagej"], "imagej"), folder=tmp_path / "h", popen=rec).show_file(zarr_dir)
    assert rec.argv == []


def test_fiji_opens_ome_zarr_with_n5_ij_as_a_virtual_stack(tmp_path):
    """Stand-in for a user's Fiji.app (it cannot exist here): a folder with n5-ij's jar name; the check
    is the macro that Fiji would run, with n5-ij's documented command and options (url, virtual)."""
    from fiji_bridge.external import N5_COMMAND, Handoff, Launcher

    fiji = tmp_path / "Fiji.app"
    (fiji / "jars").mkdir(parents=True)
    (fiji / "jars" / "n5-ij-4.2.1.jar").write_bytes(b"")
    zarr_dir, _ = _block_output(tmp_path, "ome-zarr", "my result.zarr")
    rec = _Recorder()
    Handoff(Launcher(["fiji"], "fiji", fiji), folder=tmp_path / "h", popen=rec).show_file(zarr_dir, levels=(1, 9))
    code = rec.argv[0][-1]
    assert f'run("{N5_COMMAND}", "url=[" + "{zarr_dir.resolve()}/0" + "] virtual");' in code
    assert 'rename("my result.zarr")' in code and 'isOpen("my result.zarr")' in code
    assert "setMinAndMax(1.0, 9.0)" in code
    h5 = tmp_path / "big.h5"
    h5.write_bytes(b"")
    Handoff(Launcher(["fiji"], "fiji", fiji), folder=tmp_path / "h", popen=rec).show_file(h5, dataset="/t0/s0")
    assert f'"url=[" + "{h5.resolve()}/t0/s0" + "] virtual"' in rec.argv[1][-1], "HDF5: the file, then its dataset"


@pytest.mark.java
@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="xvfb-run not installed (apt-get install xvfb xauth)")
def test_bigtiff_result_opens_in_real_imagej_through_bioformats(tmp_path, monkeypatch):
    """The launcher isoapp finds (plain ImageJ plus the installer's Bio-Formats jar) runs the macro the
    hand-off sends, in batch mode under Xvfb: a virtual stack of the BigTIFF, calibrated, with the range."""
    from fiji_bridge import locate
    from fiji_bridge.external import Handoff, find_launcher

    if locate.find_java() is None or locate.find_ij_jar() is None or locate.find_bioformats_jar() is None:
        pytest.skip("needs Java, /usr/share/java/ij.jar and the Bio-Formats jar (installer/install.sh)")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    monkeypatch.setenv("ISOAPP_BIOFORMATS_JAR", str(locate.find_bioformats_jar()))
    monkeypatch.delenv("FIJI_DIR", raising=False)
    launcher = find_launcher()
    if launcher.kind != "imagej":
        pytest.skip("a Fiji.app is installed here; this checks plain ImageJ")
    assert launcher.has_plugin("Bio-Formats")
    path, data = _block_output(tmp_path, "ome-tiff", "big result.ome.tif")
    assert open(path, "rb").read(4)[2] == 43, "the block-wise writer makes a BigTIFF (ImageJ 1.x cannot read it)"
    rec = _Recorder()
    Handoff(launcher, folder=tmp_path / "h", popen=rec).show_file(path, levels=(10.0, 500.0))
    argv = rec.argv[0]
    macro = tmp_path / "m.ijm"
    macro.write_text(argv[-1] + ' getVoxelSize(w, h, d, u); getMinAndMax(lo, hi); print("OPENED " + nSlices + " "'
                     ' + is("Virtual Stack") + " " + getPixel(3, 2) + " " + d + " " + w + " " + lo + " " + hi'
                     ' + " " + getTitle());')
    proc = subprocess.run(["xvfb-run", "-a", *argv[:-2], "-batch", str(macro)], capture_output=True, text=True,
                          timeout=180)
    out = proc.stdout + proc.stderr
    assert f"OPENED 5 1 {data[0, 2, 3]:g} 2 0.5 10 500 big result.ome.tif" in out, out[-2000:]
