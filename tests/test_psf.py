"""PSF models, measured-PSF cleaning and the IsoNet rotated/split kernels."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import tifffile
from scipy import ndimage, signal

from isoapp.core.errors import ConfigError, InputError
from isoapp.physics.kernels import isonet_kernels, rotated_psf, split_psf
from isoapp.physics.optics import optical_fwhm, optical_psf
from isoapp.physics.psf import (
    fwhm_to_sigma,
    gaussian_psf,
    gaussian_psf_from_fwhm,
    load_psf,
    prepare_psf,
    psf_fwhm,
    resample_psf_isotropic,
    sigma_to_fwhm,
)


def test_fwhm_sigma_roundtrip_and_factor():
    assert sigma_to_fwhm(1.0) == pytest.approx(2 * math.sqrt(2 * math.log(2)))
    assert fwhm_to_sigma(sigma_to_fwhm(3.7)) == pytest.approx(3.7)


def test_gaussian_psf_shape_centre_and_delta():
    k = gaussian_psf((2.0, 1.0, 0.0))
    assert k.shape == (17, 9, 1)
    assert k.dtype == np.float32
    assert k.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(np.argmax(k), k.shape) == (8, 4, 0)
    np.testing.assert_allclose(ndimage.center_of_mass(k), (8, 4, 0), atol=1e-6)
    k2 = gaussian_psf((1.5, 1.5), shape=(11, 13))
    assert k2.shape == (11, 13)
    np.testing.assert_allclose(k2, k2[::-1, ::-1], atol=1e-8)  # symmetric about the centre
    with pytest.raises(ConfigError):
        gaussian_psf((-1.0, 1.0))


@pytest.mark.parametrize("fwhm", [(1.0, 0.3, 0.3), (0.8, 0.25, 0.4)])
def test_gaussian_fwhm_matches_request(fwhm):
    vs = (0.1, 0.05, 0.05)
    k = gaussian_psf_from_fwhm(fwhm, vs)
    measured = psf_fwhm(k)
    for m, f, v in zip(measured, fwhm, vs, strict=True):
        assert m * v == pytest.approx(f, rel=0.02)


def test_optical_psf_widefield_formula_and_orderings():
    lam, na, n = 0.52, 1.2, 1.33
    fz, fxy = optical_fwhm("widefield", na=na, wavelength_um=lam, refractive_index=n)
    assert fxy == pytest.approx(sigma_to_fwhm(0.21 * lam / na))
    assert fz == pytest.approx(sigma_to_fwhm(0.66 * n * lam / na**2))
    cz, cxy = optical_fwhm("confocal", na=na, wavelength_um=lam, refractive_index=n)
    assert cxy < fxy and cz < fz  # confocal is sharper than widefield
    assert cxy == pytest.approx(fxy / math.sqrt(2))  # equal wavelengths: product of two equal Gaussians
    tz, txy = optical_fwhm("two-photon", na=na, wavelength_um=lam, excitation_wavelength_um=0.92,
                           refractive_index=n)
    assert txy == pytest.approx(sigma_to_fwhm(0.21 * 0.92 / na) / math.sqrt(2))
    lz, lxy = optical_fwhm("light-sheet", na=0.8, wavelength_um=lam, sheet_na=0.05, refractive_index=n)
    wz, wxy = optical_fwhm("widefield", na=0.8, wavelength_um=lam, refractive_index=n)
    assert lxy == pytest.approx(wxy) and lz < wz
    vs = (0.1, 0.05, 0.05)
    psf = optical_psf("widefield", na=na, wavelength_um=lam, refractive_index=n, voxel_size=vs, model="gaussian")
    mz, my, mx = psf_fwhm(psf)
    assert mz * vs[0] == pytest.approx(fz, rel=0.02)
    assert mx * vs[2] == pytest.approx(fxy, rel=0.02)
    with pytest.raises(ConfigError):
        optical_fwhm("light-sheet", na=0.8, wavelength_um=lam)
    with pytest.raises(ConfigError):
        optical_fwhm("widefield", na=1.5, wavelength_um=lam, refractive_index=1.33)
    with pytest.raises(ConfigError):
        optical_fwhm("spinning", na=1.0, wavelength_um=lam)  # type: ignore[arg-type]


def _offcentre_bead(shift=(2.3, -3.6, 1.8), shape=(21, 31, 31), bg=10.0, seed=0):
    rng = np.random.default_rng(seed)
    centre = (np.asarray(shape) - 1) / 2 + np.asarray(shift)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    bead = 1000 * np.exp(-0.5 * (((zz - centre[0]) / 2.5) ** 2 + ((yy - centre[1]) / 1.2) ** 2
                                 + ((xx - centre[2]) / 1.2) ** 2))
    return bead + bg + rng.normal(0, 0.01, shape), centre


def test_prepare_psf_centres_and_normalises():
    raw, _ = _offcentre_bead()
    p = prepare_psf(raw)
    assert p.shape == (21, 31, 31)
    assert p.min() >= 0
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(ndimage.center_of_mass(p.astype(np.float64)), (10, 15, 15), atol=0.05)
    assert np.unravel_index(np.argmax(p), p.shape) == (10, 15, 15)
    fz, fy, fx = psf_fwhm(p)
    assert fz == pytest.approx(sigma_to_fwhm(2.5), rel=0.05)
    assert fx == pytest.approx(sigma_to_fwhm(1.2), rel=0.05)


def test_prepare_psf_even_shape_gets_odd():
    raw, _ = _offcentre_bead(shape=(20, 30, 31))
    p = prepare_psf(raw)
    assert all(s % 2 == 1 for s in p.shape)


def test_prepare_psf_rejects_bad_input():
    with pytest.raises(InputError):
        prepare_psf(np.ones((5, 5)))
    with pytest.raises(InputError):
        prepare_psf(np.zeros((5, 5, 5)))
    bad = np.ones((5, 5, 5))
    bad[2, 2, 2] = np.nan
    with pytest.raises(InputError):
        prepare_psf(bad)
    with pytest.raises(InputError):
        prepare_psf(np.full((5, 5, 5), 3.0))  # flat: nothing left after the border median


def test_load_psf_file(tmp_path):
    raw, _ = _offcentre_bead()
    f = tmp_path / "bead.tif"
    tifffile.imwrite(f, raw.astype(np.float32), imagej=True, metadata={"axes": "ZYX"})
    p = load_psf(f)
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(ndimage.center_of_mass(p.astype(np.float64)), (10, 15, 15), atol=0.05)
    flat = tmp_path / "plane.tif"
    tifffile.imwrite(flat, raw[10].astype(np.float32))
    with pytest.raises(InputError):
        load_psf(flat)


def test_resample_psf_isotropic_keeps_physical_width():
    vs = (0.3, 0.1, 0.1)
    psf = gaussian_psf_from_fwhm((0.9, 0.3, 0.3), vs, shape=(15, 21, 21))
    iso = resample_psf_isotropic(psf, vs)
    assert iso.shape[0] % 2 == 1 and iso.shape[1:] == (21, 21)
    fz, fy, fx = psf_fwhm(iso)
    assert fz * 0.1 == pytest.approx(0.9, rel=0.03)
    assert fx * 0.1 == pytest.approx(0.3, rel=0.02)
    np.testing.assert_allclose(ndimage.center_of_mass(iso.astype(np.float64)),
                               (np.asarray(iso.shape) - 1) / 2, atol=1e-3)


def test_rotated_psf_orientation():
    psf = gaussian_psf((4.0, 1.0, 1.5))  # (z, y, x)
    hx = rotated_psf(psf, axis="x")
    fy, fx = psf_fwhm(hx)
    assert fx == pytest.approx(sigma_to_fwhm(4.0), rel=0.02)  # axial extent along x
    assert fy == pytest.approx(sigma_to_fwhm(1.5), rel=0.02)  # the former x extent now along y
    assert hx.sum() == pytest.approx(1.0, abs=1e-5)
    hy = rotated_psf(psf, axis="y")
    fy, fx = psf_fwhm(hy)
    assert fy == pytest.approx(sigma_to_fwhm(4.0), rel=0.02)
    assert fx == pytest.approx(sigma_to_fwhm(1.0), rel=0.02)
    # factor: an anisotropically sampled PSF is brought to the isotropic grid first
    coarse = gaussian_psf((1.0, 1.0, 1.5), shape=(9, 9, 9))  # z step 4x the lateral pixel
    hc = rotated_psf(coarse, factor=4.0)
    assert psf_fwhm(hc)[1] == pytest.approx(sigma_to_fwhm(4.0), rel=0.05)
    with pytest.raises(ConfigError):
        rotated_psf(psf, axis="z")


def test_split_psf_gaussian_identity_and_reconvolution():
    s_rot, s_iso = (1.2, 4.0), (1.2, 1.2)
    h_rot = gaussian_psf(s_rot, shape=(25, 41))
    h_iso = gaussian_psf(s_iso, shape=(25, 41))
    h_split = split_psf(h_rot, h_iso)
    assert h_split.min() >= 0
    assert h_split.sum() == pytest.approx(1.0, abs=1e-5)
    fy, fx = psf_fwhm(h_split)
    assert fx == pytest.approx(sigma_to_fwhm(math.sqrt(4.0**2 - 1.2**2)), rel=0.03)
    assert fy < 0.5  # no extra blur along y: a delta
    back = signal.fftconvolve(h_iso, h_split, mode="same")
    assert np.abs(back - h_rot).max() < 0.02 * h_rot.max()


def test_isonet_kernels_modes():
    psf = gaussian_psf((3.0, 1.0, 1.0))
    full = isonet_kernels(psf, "full")
    np.testing.assert_allclose(full, rotated_psf(psf), atol=1e-7)
    split = isonet_kernels(psf, "split")
    h_iso = psf[psf.shape[0] // 2] / psf[psf.shape[0] // 2].sum()
    back = signal.fftconvolve(np.pad(h_iso, 8), split, mode="same")
    full_p = np.pad(full, [((back.shape[0] - full.shape[0]) // 2,) * 2, ((back.shape[1] - full.shape[1]) // 2,) * 2])
    assert np.abs(back - full_p).max() < 0.02 * full.max()
    with pytest.raises(ConfigError):
        isonet_kernels(psf, "half")  # type: ignore[arg-type]


def test_an_off_centre_bead_is_centred_with_a_warning(caplog):
    a = np.zeros((15, 15, 15), np.float32)
    a[5, 9, 6] = 1.0  # 2, -2 and 1 voxels off the centre (7, 7, 7)
    a = ndimage.gaussian_filter(a, 1.0)
    with caplog.at_level(logging.WARNING, logger="isoapp.physics.psf"):
        out = prepare_psf(a, background=0)
    assert "off the centre" in caplog.text
    assert np.allclose(ndimage.center_of_mass(out), 7.0, atol=0.1)


def test_a_psf_file_of_another_voxel_size_is_resampled_with_a_note(tmp_path, caplog):
    from isoapp.core.volume import Volume
    from isoapp.data.io import write_volume
    from isoapp.run.resolve import resolve_psf
    from isoapp.training.config import PSFSpec

    z = np.exp(-0.5 * (np.arange(-10, 11) / 2.0) ** 2)
    yx = np.exp(-0.5 * (np.arange(-5, 6) / 1.0) ** 2)
    arr = (z[:, None, None] * yx[None, :, None] * yx[None, None, :]).astype(np.float32)
    path = tmp_path / "psf.tif"
    write_volume(Volume(arr, axes="ZYX", voxel_size=(0.1, 0.05, 0.05), name="psf"), path)
    with caplog.at_level(logging.INFO, logger="isoapp.run.resolve"):
        out = resolve_psf(PSFSpec(kind="file", path=str(path)), (0.4, 0.1, 0.1), 4.0)
    assert "resampled it to the stack's grid" in caplog.text
    # sigma 2 planes of 0.1 µm = 0.2 µm = 2 pixels of the stack's 0.1 µm lateral grid
    prof = out.sum(axis=(1, 2))
    c = len(prof) // 2
    assert np.sqrt((prof * (np.arange(len(prof)) - c) ** 2).sum()) == pytest.approx(2.0, rel=0.1)
