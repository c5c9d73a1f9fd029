"""The format registry (isoapp/data/io/registry.py): one entry per format, asked by every entry point.

No Java here: Bio-Formats' missing-Java and missing-jar messages are checked in subprocesses
whose environment hides them; reading with the real jar is in test_bioformats_reader.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from isoapp.core.errors import ConfigError, InputError, OutputError
from isoapp.core.volume import Volume
from isoapp.data.io import (
    SUPPORTED_EXTENSIONS,
    RawImage,
    detect_format,
    output_format,
    read_volume,
    registry,
    write_volume,
)

VOXEL = (2.0, 0.5, 0.25)


@pytest.mark.parametrize("name,entry,family", [
    ("a.tif", "imagej", "tiff"), ("a.TIFF", "imagej", "tiff"), ("a.ome.tif", "ome-tiff", "tiff"),
    ("a.OME.TIFF", "ome-tiff", "tiff"), ("a.h5", "hdf5", "hdf5"), ("a.hdf", "hdf5", "hdf5"),
    ("a.zarr", "ome-zarr", "zarr"), ("a.ome.zarr/", "ome-zarr", "zarr"), ("a.czi", "bioformats", "bioformats"),
    ("a.lif", "bioformats", "bioformats"), ("a.ids", "bioformats", "bioformats"),
])
def test_extension_picks_one_entry(name, entry, family):
    assert registry.reader_for(name).name == entry
    assert detect_format(name) == family
    assert registry.strip_extension(name) == "a"


def test_supported_extensions_are_every_readable_extension():
    assert set(SUPPORTED_EXTENSIONS) == {e for f in registry.readable() for e in f.extensions}
    assert {".tif", ".ome.zarr", ".h5", ".czi", ".nd2", ".lif", ".ics", ".ids", ".lsm", ".ims"} <= set(SUPPORTED_EXTENSIONS)
    assert len(set(SUPPORTED_EXTENSIONS)) == len(SUPPORTED_EXTENSIONS)
    with pytest.raises(InputError, match=r"x\.jpg: unsupported file type; isoapp reads ImageJ TIFF .*\.czi"):
        detect_format("x.jpg")


@pytest.mark.parametrize("name,fmt", [("o.tif", "imagej"), ("o.ome.tif", "ome-tiff"), ("o.h5", "hdf5"),
                                      ("o.zarr", "ome-zarr"), ("o.ome.zarr", "ome-zarr")])
def test_output_format_from_extension(name, fmt):
    assert output_format(name) == fmt
    assert registry.is_folder_format(name) == (fmt == "ome-zarr")


def test_output_format_names_aliases_and_errors():
    assert [output_format("x", a) for a in ("zarr", "h5", "tif", "ome", "OME_TIFF", "imagej")] == \
        ["ome-zarr", "hdf5", "tiff", "ome-tiff", "ome-tiff", "imagej"]
    with pytest.raises(ConfigError, match="unknown output format 'bioformats'; choose one of imagej, ome-tiff"):
        output_format("x.tif", "bioformats")  # read-only
    with pytest.raises(OutputError, match=r"o\.czi: cannot tell the output format.*\.tif \(ImageJ TIFF\)"):
        output_format("o.czi")


@pytest.mark.parametrize("fmt", [f.name for f in registry.writable()])
def test_every_writer_round_trips_through_its_reader(tmp_path, fmt):
    entry = registry.get(fmt)
    if entry.family == "zarr":
        pytest.importorskip("zarr")
    data = np.random.default_rng(2).random((2, 5, 8, 9)).astype(np.float32)
    name = "out" + (entry.extensions[0] if entry.extensions else ".tif")
    out = write_volume(Volume(data, "CZYX", VOXEL), tmp_path / name, format=fmt)
    back = read_volume(out)
    assert back.axes == "CZYX" and back.voxel_size == pytest.approx(VOXEL)
    np.testing.assert_array_equal(back.data, data)
    assert back.name == "out"


def test_gui_filters_come_from_the_registry():
    pytest.importorskip("PySide6")
    from isoapp.gui import opening

    images = opening.FILE_FILTER.split(";;")[0]
    for f in registry.readable():
        if not f.folder:  # Zarr folders open from their own folder dialog
            assert all(f"*{e}" in images or e.startswith(".ome.") for e in f.extensions), f.name
            assert opening.is_supported(f"x{f.extensions[-1]}")
    assert "Bio-Formats" in opening.FILE_FILTER and opening.FILE_FILTER.endswith("All files (*)")
    assert opening.SAVE_FILTER == "ImageJ TIFF (*.tif);;OME-TIFF (*.ome.tif);;HDF5 (*.h5);;OME-Zarr (*.zarr)"
    assert opening.BIOFORMATS_EXT == registry.get("bioformats").extensions
    assert not opening.is_writable("x.czi") and opening.is_writable("x.ome.tiff")


# a toy format defined here: proves that one entry is all a new format needs
def _read_npy(path: Path, *, dataset=None, lazy=False) -> RawImage:
    arr = np.load(path, mmap_mode="r" if lazy else None)
    return RawImage(data=arr, axes="ZYX", voxel_size=(3.0, 1.0, 1.0), fmt="npy-test")


def _write_npy(tmp: Path, volume: Volume, *, convert, dtype, rescale, fmt) -> None:
    with open(tmp, "wb") as fh:
        np.save(fh, convert(np.asarray(volume.data)))


def test_a_new_format_is_one_entry(tmp_path, monkeypatch):
    here = __name__  # the reader and writer are imported by name, as for the built-in formats
    entry = registry.FileFormat("npy-test", "NumPy test", (".npyt",), "npy", f"{here}:_read_npy",
                                f"{here}:_write_npy")
    monkeypatch.setattr(registry, "FORMATS", (*registry.FORMATS, entry))
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    assert output_format("v.npyt") == "npy-test"
    out = write_volume(Volume(data, "ZYX", VOXEL), tmp_path / "v.npyt")
    vol = read_volume(out)
    np.testing.assert_array_equal(vol.data, data)
    assert vol.voxel_size == (3.0, 1.0, 1.0) and vol.name == "v" and registry.title("npy-test") == "NumPy test"
    assert "*.npyt" in registry.open_filter() and "NumPy test (*.npyt)" in registry.save_filter()
    assert ".npyt" in registry.describe_readable() and detect_format("v.npyt") == "npy"


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env}, cwd=str(Path(__file__).parents[1]))


@pytest.mark.parametrize("hide", ["java", "jar"])
def test_bioformats_without_java_or_jar_is_one_clear_line(tmp_path, hide):
    from fiji_bridge import find_fiji

    if find_fiji() is not None:
        pytest.skip("a Fiji.app is installed here: it brings Bio-Formats and its own Java")
    czi = tmp_path / "cells.czi"
    czi.write_bytes(b"ZISRAWFILE" + bytes(100))
    env = {"HOME": str(tmp_path), "XDG_DATA_HOME": "", "ISOAPP_BIOFORMATS_JAR": "", "FIJI_DIR": ""}
    if hide == "java":
        bindir = tmp_path / "bin"
        bindir.mkdir()
        os.symlink(sys.executable, bindir / "python")
        env.update(PATH=str(bindir), JAVA_HOME="")
    proc = _run(f"""
        import sys
        from isoapp.cli import main
        sys.exit(main(["info", {str(czi)!r}]))
    """, env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("isoapp: error: cells.czi: reading this format needs")
    if hide == "java":
        assert "no Java runtime found" in lines[0] and "apt-get install default-jre" in lines[0]
    else:
        assert "the Bio-Formats jar" in lines[0] and "python installer/bioformats_jar.py" in lines[0]


def test_cli_info_help_lists_the_registry(capsys):
    from isoapp.cli import main

    with pytest.raises(SystemExit):
        main(["info", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Bio-Formats (Java: .czi/" in out and "--reader" in out and "OME-Zarr (.zarr/.ome.zarr folder)" in out
