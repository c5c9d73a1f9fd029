"""The quality suite's independent phantom generator (benchmarks/indep_phantoms.py) keeps its
sampling grid, PSF widths and camera noise statistics: if it silently broke, every figure of
benchmarks/quality.py would be wrong."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "indep_phantoms.py"
_spec = importlib.util.spec_from_file_location("indep_phantoms", _PATH)
ip = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("indep_phantoms", ip)  # dataclasses look their module up there
_spec.loader.exec_module(ip)


@pytest.mark.parametrize("factor", [2.0, 3.3, 4.0, 6.0])
def test_sample_z_takes_planes_at_i_times_f(factor):
    nz = 61
    ramp = np.broadcast_to(np.arange(nz, dtype=np.float32)[:, None, None], (nz, 3, 4)).copy()
    s = ip.sample_z(ramp, factor)
    n = int(math.floor((nz - 1) / factor + 1e-9)) + 1
    assert s.shape == (n, 3, 4)
    np.testing.assert_allclose(s[:, 0, 0], np.arange(n) * factor, atol=1e-4)  # linear along z: exact


def test_sample_z_refuses_planes_beyond_the_grid():
    with pytest.raises(ValueError):
        ip.sample_z(np.zeros((10, 2, 2), np.float32), 3.3, n=4)  # 3 * 3.3 = 9.9 > 9


def test_case_grids_and_reference():
    c = ip.make_case("nuclei", "gauss", photons=None, factor=3.3, shape=(9, 32, 32), seed=1)
    assert c.acquired.shape == (9, 32, 32)
    assert c.reference.shape == c.obj.shape == (int(math.floor(8 * 3.3)) + 1, 32, 32)
    assert c.voxel_size == pytest.approx((3.3 * ip.DX_UM, ip.DX_UM, ip.DX_UM))
    # noise-free, integer factor: acquired plane i is the blurred object at fine plane i * F, which
    # is blurrier along z than the lateral-PSF reference there but close to it
    c4 = ip.make_case("membranes", "gauss", photons=None, factor=4.0, shape=(6, 32, 32), seed=2)
    ref_planes = c4.reference[::4]
    corr = np.corrcoef(c4.acquired.ravel(), ref_planes.ravel())[0, 1]
    assert corr > 0.8
    assert np.abs(c4.acquired - ref_planes).mean() > 1e-4  # but not the same: the axial blur is there


def test_psf_widths():
    g = ip.psf_widths(ip.gaussian_psf(1.0, 3.0, (12, 5, 5)))
    assert g["sigma_z_px"] == pytest.approx(3.0, rel=0.03)
    assert g["sigma_xy_px"] == pytest.approx(1.0, rel=0.06)
    wf = ip.psf_widths(ip.optical_psf("widefield", (16, 8, 8), oversample=1))
    # textbook widefield FWHMs: lateral ~0.51 lambda / NA, axial ~0.88 lambda / (n - sqrt(n^2 - NA^2))
    o = ip.WIDEFIELD
    lat = 0.51 * o["em_wavelength_um"] / o["na"] / ip.DX_UM
    ax = 0.88 * o["em_wavelength_um"] / (o["n_immersion"] - math.sqrt(o["n_immersion"] ** 2 - o["na"] ** 2)) / ip.DX_UM
    assert wf["fwhm_xy_px"] == pytest.approx(lat, rel=0.15)
    assert wf["fwhm_z_px"] == pytest.approx(ax, rel=0.15)


def test_camera_noise_statistics():
    rng = np.random.default_rng(0)
    clean = np.full((20, 64, 64), 0.5, np.float32)
    clean[0, 0, 0] = 1.0  # the peak: photons there
    gain, read, offset, photons = 2.0, 1.5, 100.0, 100.0
    adu = ip.camera(clean, photons, rng, gain, read, offset, background_frac=0.05)
    e_mean = 0.5 * photons + 0.05 * photons
    body = adu.ravel()[1:]
    assert body.mean() == pytest.approx(offset + gain * e_mean, rel=0.01)
    assert body.var() == pytest.approx(gain**2 * (e_mean + read**2), rel=0.05)
    # read noise alone: no signal, no background
    dark = np.zeros((20, 64, 64), np.float32)
    dark[0, 0, 0] = 1.0
    adu = ip.camera(dark, photons, rng, gain, read, offset, background_frac=0.0).ravel()[1:]
    assert adu.mean() == pytest.approx(offset, abs=0.05)
    assert adu.std() == pytest.approx(gain * read, rel=0.03)
