"""End-to-end tests of ``isoapp metrics`` on real TIFF files."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from isoapp.cli.cmd_metrics import align_to_reference
from isoapp.core.errors import InputError
from isoapp.core.volume import Volume
from isoapp.data.io import write_volume


def _stack(shape=(24, 40, 40), seed=0):
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.random(shape), 1.5) * 1000).astype(np.float32)


def _write(tmp_path, name, data, voxel=(0.5, 0.5, 0.5)):
    return write_volume(Volume(data=data, voxel_size=voxel), tmp_path / name)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "isoapp", "metrics", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_identical_and_blurred_json(tmp_path):
    ref = _stack()
    a = _write(tmp_path, "a.tif", ref)
    b = _write(tmp_path, "b.tif", ndimage.gaussian_filter(ref, (2.0, 0.5, 0.5)))
    same = _cli(a, a, "--json")
    assert same.returncode == 0, same.stderr
    res = json.loads(same.stdout)
    assert "Infinity" in same.stdout and res["psnr"] == math.inf
    assert res["ssim"] == pytest.approx(1.0, abs=1e-9)
    assert res["ms_ssim"] == pytest.approx(1.0, abs=1e-9)
    assert res["nrmse"] == 0.0 and res["z_interpolated"] is False and res["normalize"] == "minmse"
    blur = _cli(a, b, "--json", "--per-plane")
    assert blur.returncode == 0, blur.stderr
    rb = json.loads(blur.stdout)
    assert math.isfinite(rb["psnr"]) and 10 < rb["psnr"] < 60
    assert rb["ssim"] < 0.99 and rb["ms_ssim"] < 0.999 and rb["nrmse"] > 0
    assert rb["ssim_xz"] < rb["ssim_xy"] + 0.2 and "psnr_yz" in rb
    table = _cli(a, b, "--normalize", "none")
    assert table.returncode == 0, table.stderr
    lines = dict(line.split(None, 1) for line in table.stdout.strip().splitlines())
    assert lines["normalize"].startswith("none")
    assert float(lines["ssim"]) < float(json.loads(_cli(a, a, "--json", "--normalize", "none").stdout)["ssim"])


def test_coarse_z_grid_is_interpolated(tmp_path):
    ref = _stack((34, 32, 32))
    z = np.arange(34, dtype=np.float32)[:, None, None]
    ref = ref[16][None] * (1.0 + z / 34.0)  # linear in z: linear interpolation is exact
    coarse = ref[::4]  # planes 0, 4, .., 32: floor(33 / 4) + 1 = 9
    a = _write(tmp_path, "ref.tif", ref, (0.25, 0.25, 0.25))
    c = _write(tmp_path, "coarse.tif", coarse, (1.0, 0.25, 0.25))
    r = _cli(a, c, "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["z_interpolated"] is True and res["shape"] == [33, 32, 32]
    assert "cropped" in res["note"] and "9 to 33" in res["note"]
    assert res["ssim"] > 0.999 and res["psnr"] > 60
    table = _cli(a, c)
    assert "interpolated" in table.stdout
    # without voxel sizes the factor can be given
    c1 = _write(tmp_path, "coarse1.tif", coarse, (0.25, 0.25, 0.25))
    assert _cli(a, c1, "--json").returncode == 2
    assert json.loads(_cli(a, c1, "--json", "--z-factor", "4").stdout)["ssim"] > 0.999


def test_shape_mismatch_is_a_user_error(tmp_path):
    a = _write(tmp_path, "a.tif", _stack((24, 40, 40)))
    b = _write(tmp_path, "b.tif", _stack((24, 40, 36)))
    r = _cli(a, b)
    assert r.returncode == 2
    assert "(24, 40, 40)" in r.stderr and "(24, 40, 36)" in r.stderr
    assert "Traceback" not in r.stderr
    missing = _cli(a, tmp_path / "nope.tif")
    assert missing.returncode == 2 and "nope.tif" in missing.stderr


def test_align_to_reference_rules():
    ref = np.zeros((17, 4, 4))
    same, img, note = align_to_reference(ref, ref, 1.0, 1.0)
    assert note is None and img is ref
    r, up, note = align_to_reference(ref, np.ones((5, 4, 4)), 0.5, 2.0)  # F = 4: floor(16/4)+1 = 5
    assert up.shape == r.shape == (17, 4, 4) and "17" in note
    r, up, note = align_to_reference(ref, np.ones((7, 4, 4)), 0.4, 1.0)  # F = 2.5: floor(16/2.5)+1 = 7
    assert up.shape == r.shape == (16, 4, 4) and "cropped" in note
    with pytest.raises(InputError, match="would need 5 planes"):
        align_to_reference(ref, np.ones((6, 4, 4)), 0.5, 2.0)
    with pytest.raises(InputError, match=r"\(17, 4, 4\).*\(5, 4, 3\)"):
        align_to_reference(ref, np.ones((5, 4, 3)), 0.5, 2.0)
