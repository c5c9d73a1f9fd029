"""The restore/demo command-line contract, including every bad-input case of the issue."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from isoapp.cli import COMMANDS, build_parser, main
from isoapp.data.io import read_volume


def _write_stack(path: Path, nz=9, dz=0.8, dxy=0.2, ndim=3, seed=0) -> Path:
    shape = (nz, 40, 40) if ndim == 3 else (40, 40)
    data = np.random.default_rng(seed).random(shape, dtype=np.float32)
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / dxy, 1 / dxy),
                     metadata={"spacing": dz, "unit": "micron", "axes": "ZYX" if ndim == 3 else "YX"})
    return path


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_every_command_is_registered():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(COMMANDS) <= set(sub.choices)


def test_restore_linear_writes_calibrated_output(tmp_path, capsys):
    src = _write_stack(tmp_path / "in.tif")
    out = tmp_path / "out.tif"
    assert main(["restore", str(src), "-o", str(out), "--method", "linear", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    v = read_volume(out)
    assert v.shape == (33, 40, 40) and summary["shape"] == [33, 40, 40]
    assert v.voxel_size == pytest.approx((0.2, 0.2, 0.2))


def test_restore_uint16_output_and_voxel_size_override(tmp_path):
    src = _write_stack(tmp_path / "in.tif", dz=0.2)  # metadata says isotropic
    out = tmp_path / "out.tif"
    assert main(["restore", str(src), "-o", str(out), "--method", "cubic", "--voxel-size", "0.5", "0.2", "0.2",
                 "--dtype", "uint16"]) == 0
    v = read_volume(out)
    assert v.dtype == np.uint16 and v.shape[0] == 21  # (9-1)*2.5+1
    assert v.voxel_size[0] == pytest.approx(0.2)


BAD_CASES = {
    "factor_one": (dict(dz=0.2), [], "already isotropic"),
    "factor_over_10": (dict(dz=2.4), [], "over 10"),
    "too_few_planes": (dict(nz=2), [], "at least 3"),
    "unknown_method": ({}, ["--method", "magic"], "unknown method"),
    "psf_2d": ({}, ["--method", "rl", "--psf", "PSF2D"], "3D"),
    "nan": ({}, [], "NaN"),
    "same_output": ({}, ["SAME"], "input"),
    "incompatible_model": ({}, ["--model", "BADMODEL"], "model"),
    "optics_kind": ({}, ["--method", "rl", "--psf-optics", "spinning,na=1.0,wavelength=0.52"], "microscope kind"),
    "optics_missing": ({}, ["--method", "rl", "--psf-optics", "widefield,na=1.0"], "needs wavelength="),
    "optics_na": ({}, ["--method", "rl", "--psf-optics", "widefield,na=1.5,wavelength=0.52"], "refractive index"),
    "optics_nm": ({}, ["--method", "rl", "--psf-optics", "confocal,na=1.2,wavelength=520"], "in µm"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_one_line_exit_2_nothing_written(case, tmp_path, capsys):
    kw, extra, msg = BAD_CASES[case]
    src = _write_stack(tmp_path / "in.tif", **kw)
    if case == "nan":
        data = tifffile.imread(src)
        data[1, 1, 1] = np.nan
        tifffile.imwrite(src, data, imagej=True, resolution=(5, 5),
                         metadata={"spacing": 0.8, "unit": "micron", "axes": "ZYX"})
    before = _digest(src)
    out = tmp_path / "out.tif"
    args = ["restore", str(src), "-o", str(out)]
    for e in extra:
        if e == "PSF2D":
            tifffile.imwrite(tmp_path / "psf.tif", np.ones((9, 9), np.float32))
            e = str(tmp_path / "psf.tif")
        elif e == "SAME":
            args[3] = str(src)
            continue
        elif e == "BADMODEL":
            (tmp_path / "model").mkdir()
            (tmp_path / "model" / "config.json").write_text('{"method": "isonet", "factor": "four"}')
            e = str(tmp_path / "model")
        args.append(e)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("isoapp: error:") and msg in err[0], err
    assert not out.exists() and _digest(src) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("psf.tif", "model")) == ["in.tif"]


def test_bad_input_has_no_traceback_in_a_real_process(tmp_path):
    src = _write_stack(tmp_path / "in.tif", dz=0.2)
    r = subprocess.run([sys.executable, "-m", "isoapp", "restore", str(src), "-o", str(tmp_path / "o.tif")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "isoapp", "restore", str(src), "-o",
                        str(tmp_path / "o.tif"), "--debug"], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_phantom_info_metrics_done_when(tmp_path):
    """The foundation issue's acceptance sequence, end to end through the CLI."""
    gt, inp = tmp_path / "gt.tif", tmp_path / "in.tif"

    def run(*a):
        return subprocess.run([sys.executable, "-m", "isoapp", *a], capture_output=True, text=True, timeout=300)

    r = run("phantom", "tubes", "--shape", "33", "96", "96", "--factor", "4", "-o", str(gt), "--degraded", str(inp))
    assert r.returncode == 0, r.stderr
    assert tifffile.imread(gt).shape[0] == 33 and tifffile.imread(inp).shape[0] == 9
    assert read_volume(inp).voxel_size[0] == pytest.approx(4 * read_volume(gt).voxel_size[0])
    r = run("info", str(inp))
    assert r.returncode == 0 and "anisotropy:     4" in r.stdout.replace("anisotropy: 4", "anisotropy:     4")
    same = json.loads(run("metrics", str(gt), str(gt), "--json").stdout)
    assert same["ssim"] == 1.0 and same["psnr"] == float("inf")
    lin = tmp_path / "lin.tif"
    assert run("restore", str(inp), "-o", str(lin), "--method", "linear").returncode == 0
    interp = json.loads(run("metrics", str(gt), str(lin), "--json").stdout)
    assert interp["ssim"] < 1.0 and interp["psnr"] < 60


def test_info_on_corrupt_file_prints_one_line(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x13" * 200)
    r = subprocess.run([sys.executable, "-m", "isoapp", "info", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
