"""``isoapp phantom`` and ``isoapp degrade`` end to end through real files."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from isoapp.cli import main
from isoapp.core.volume import Volume
from isoapp.data.io import read_volume, write_volume
from isoapp.physics.psf import gaussian_psf


def test_phantom_tubes_writes_gt_and_degraded(tmp_path):
    gt, inp, iso = tmp_path / "gt.tif", tmp_path / "in.tif", tmp_path / "gt_iso.tif"
    rc = main(["phantom", "tubes", "--shape", "33", "96", "96", "--factor", "4", "-o", str(gt),
               "--degraded", str(inp), "--iso", str(iso), "--seed", "7"])
    assert rc == 0
    g, d, i = read_volume(gt), read_volume(inp), read_volume(iso)
    assert g.shape == (33, 96, 96) and i.shape == (33, 96, 96)
    assert d.shape == (9, 96, 96)
    assert d.voxel_size[0] == pytest.approx(4 * g.voxel_size[0], rel=1e-4)
    assert d.voxel_size[1:] == pytest.approx(g.voxel_size[1:], rel=1e-4)
    with tifffile.TiffFile(gt) as t:
        assert len(t.pages) == 33
    with tifffile.TiffFile(inp) as t:
        assert len(t.pages) == 9
    gdata = np.asarray(g.data)
    assert gdata.dtype == np.float32 and gdata.max() > 0.5
    # the same seed reproduces the files; another seed does not
    gt2 = tmp_path / "gt2.tif"
    assert main(["phantom", "tubes", "--shape", "33", "96", "96", "-o", str(gt2),
                 "--degraded", str(tmp_path / "in2.tif"), "--seed", "7"]) == 0
    np.testing.assert_array_equal(np.asarray(read_volume(gt2).data), gdata)
    gt3 = tmp_path / "gt3.tif"
    assert main(["phantom", "tubes", "--shape", "33", "96", "96", "-o", str(gt3),
                 "--degraded", str(tmp_path / "in3.tif"), "--seed", "8"]) == 0
    assert not np.array_equal(np.asarray(read_volume(gt3).data), gdata)


def test_phantom_bad_parameters_exit_2(tmp_path, capsys):
    rc = main(["phantom", "beads", "--shape", "17", "48", "48", "--factor", "0",
               "-o", str(tmp_path / "a.tif"), "--degraded", str(tmp_path / "b.tif")])
    assert rc == 2
    assert "factor" in capsys.readouterr().err
    rc = main(["phantom", "beads", "--shape", "17", "48", "48",
               "-o", str(tmp_path / "a.tif"), "--degraded", str(tmp_path / "a.tif")])
    assert rc == 2
    assert not (tmp_path / "a.tif").exists()


def test_degrade_cli_sigma_and_psf(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "iso.tif"
    data = rng.random((33, 24, 20)).astype(np.float32)
    write_volume(Volume(data, "ZYX", (0.1, 0.1, 0.1)), src)
    before = src.read_bytes()
    out = tmp_path / "aniso.tif"
    assert main(["degrade", str(src), "-o", str(out), "--sigma-z", "2", "--factor", "4"]) == 0
    v = read_volume(out)
    assert v.shape == (9, 24, 20)
    assert v.voxel_size == pytest.approx((0.4, 0.1, 0.1), rel=1e-4)
    ref = ndimage.gaussian_filter1d(data, 2.0, axis=0, mode="reflect")[::4]
    np.testing.assert_allclose(np.asarray(v.data), ref, atol=1e-4)
    # a PSF file gives the same result as the equivalent sigma
    psf_file = tmp_path / "psf.tif"
    tifffile.imwrite(psf_file, gaussian_psf((2.0, 0.0, 0.0), shape=(17, 5, 5)), imagej=True,
                     metadata={"axes": "ZYX"})
    out2 = tmp_path / "aniso_psf.tif"
    assert main(["degrade", str(src), "-o", str(out2), "--psf", str(psf_file), "--factor", "4"]) == 0
    np.testing.assert_allclose(np.asarray(read_volume(out2).data), ref, atol=1e-3)
    # noise, non-integer factor
    out3 = tmp_path / "noisy.tif"
    assert main(["degrade", str(src), "-o", str(out3), "--sigma-z", "1", "--factor", "2.5",
                 "--noise-photons", "100"]) == 0
    assert read_volume(out3).shape == (13, 24, 20)
    assert src.read_bytes() == before  # the input is never modified


def test_degrade_cli_refuses_bad_requests(tmp_path, capsys):
    src = tmp_path / "iso.tif"
    write_volume(Volume(np.ones((9, 8, 8), np.float32), "ZYX", (0.1, 0.1, 0.1)), src)
    before = src.read_bytes()
    assert main(["degrade", str(src), "-o", str(src), "--sigma-z", "1", "--factor", "2"]) == 2
    assert src.read_bytes() == before
    assert main(["degrade", str(src), "-o", str(tmp_path / "o.tif"), "--factor", "0.5"]) == 2
    assert "factor" in capsys.readouterr().err
    flat = tmp_path / "flat_psf.tif"
    tifffile.imwrite(flat, np.ones((5, 5), np.float32))
    assert main(["degrade", str(src), "-o", str(tmp_path / "o.tif"), "--psf", str(flat), "--factor", "2"]) == 2


def test_console_entry_point(tmp_path):
    gt, inp = tmp_path / "gt.tif", tmp_path / "in.tif"
    proc = subprocess.run(
        [sys.executable, "-m", "isoapp", "phantom", "membranes", "--shape", "17", "32", "32",
         "--factor", "2", "-o", str(gt), "--degraded", str(inp), "-q"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert read_volume(inp).shape == (9, 32, 32)


def test_cli_kinds_match_phantom_module():
    from isoapp.cli.cmd_phantom import KINDS as CLI_KINDS
    from isoapp.quality.phantoms import KINDS

    assert tuple(CLI_KINDS) == tuple(KINDS)
