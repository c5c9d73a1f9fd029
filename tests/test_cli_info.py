"""``isoapp info``: run as a real subprocess (exit codes, one-line errors) and in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile

from isoapp.cli import main
from isoapp.cli.cmd_info import human_bytes


def _isoapp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "isoapp", *args], capture_output=True, text=True,
                          timeout=120, encoding="utf-8", env={**os.environ, "PYTHONIOENCODING": "utf-8"})


@pytest.fixture
def imagej_tif(tmp_path, rng):
    path = tmp_path / "cells.tif"
    data = rng.integers(0, 4000, size=(12, 3, 20, 24), dtype=np.uint16)  # ZCYX
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"spacing": 0.8, "unit": "micron", "axes": "ZCYX"})
    return path


def test_info_prints_shape_voxel_size_and_anisotropy(imagej_tif):
    res = _isoapp("info", str(imagej_tif))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "anisotropy:" in out and "anisotropy:     4\n" in out
    assert "3 x 12 x 20 x 24  (CZYX)" in out
    assert "0.8 x 0.2 x 0.2 µm (z, y, x)" in out
    assert "uint16" in out and "ImageJ TIFF" in out
    assert f"size in memory: {human_bytes(12 * 3 * 20 * 24 * 2)}" in out
    assert "Traceback" not in res.stderr


def test_info_json(imagej_tif):
    res = _isoapp("info", str(imagej_tif), "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["shape"] == [3, 12, 20, 24] and info["axes"] == "CZYX"
    assert info["voxel_size"] == [0.8, 0.2, 0.2] and info["anisotropy"] == pytest.approx(4.0)
    assert info["calibrated"] is True and info["size_on_disk"] == imagej_tif.stat().st_size


@pytest.mark.parametrize("content", [os.urandom(2000), b"", b"II*\x00garbage"])
def test_info_on_corrupt_file_is_one_line_exit_2(tmp_path, content):
    bad = tmp_path / "corrupt.tif"
    bad.write_bytes(content)
    res = _isoapp("info", str(bad))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("isoapp: error: corrupt.tif")
    assert "Traceback" not in res.stderr and res.stdout == ""


def test_info_on_truncated_tiff_is_one_line_exit_2(tmp_path, imagej_tif):
    cut = tmp_path / "cut.tif"
    blob = imagej_tif.read_bytes()
    cut.write_bytes(blob[: len(blob) // 2])
    res = _isoapp("info", str(cut))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "truncated" in res.stderr


def test_info_on_2d_image_exits_2(tmp_path, rng):
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, rng.random((32, 32)).astype(np.float32))
    res = _isoapp("info", str(flat))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    assert "3D stack" in res.stderr and "Traceback" not in res.stderr


def test_info_missing_file_and_hdf5_datasets(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.tif")]) == 2
    assert "no such file" in capsys.readouterr().err

    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.zeros((4, 8, 8), np.float32)
        f["b"] = np.zeros((6, 8, 8), np.uint8)
        f["b"].attrs["element_size_um"] = [2.0, 0.5, 0.5]
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "/a" in err and "/b" in err and "--dataset" in err
    assert main(["info", str(path), "--dataset", "b"]) == 0
    out = capsys.readouterr().out
    assert "dataset:" in out and "6 x 8 x 8  (ZYX)" in out and "anisotropy:     4" in out


def test_info_uncalibrated_says_so(tmp_path, rng, capsys):
    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, rng.random((4, 8, 8)).astype(np.float32), photometric="minisblack")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "not calibrated" in out and "anisotropy:     1" in out


def test_human_bytes():
    assert human_bytes(512) == "512 bytes"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(4 * 10**9) == "3.7 GiB"
