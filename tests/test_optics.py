"""The scalar Debye PSFs of isoapp.physics.optics: diffraction landmarks, the widefield haze, and their use."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tifffile

from isoapp.cli import main
from isoapp.core.errors import ConfigError
from isoapp.physics.optics import debye_psf, optical_fwhm, optical_psf
from isoapp.physics.psf import psf_core_fwhm
from isoapp.run.resolve import psf_axial_sigma

LAM, NA, N = 0.52, 1.0, 1.33


def _half_max_width(line: np.ndarray, step: float) -> float:
    """FWHM of a centred peak from the linearly interpolated half-maximum crossings."""
    c = int(np.argmax(line))
    half = 0.5 * line[c]
    right = c + np.argmax(line[c:] < half)
    left = c - np.argmax(line[c::-1] < half)
    fr = right - 1 + (line[right - 1] - half) / (line[right - 1] - line[right])
    fl = left + 1 - (line[left + 1] - half) / (line[left + 1] - line[left])
    return (fr - fl) * step


@pytest.fixture(scope="module")
def widefield():
    return debye_psf("widefield", na=NA, wavelength_um=LAM, refractive_index=N, voxel_size=(0.05, 0.05, 0.05),
                     shape=(121, 61, 61))


def test_widefield_landmarks(widefield):
    h = widefield
    cz, cy, cx = (s // 2 for s in h.shape)
    assert h.sum() == pytest.approx(1.0, rel=1e-5) and np.unravel_index(h.argmax(), h.shape) == (cz, cy, cx)
    assert np.allclose(h, h[::-1], atol=1e-6 * h.max())  # no aberrations: symmetric about focus
    # lateral FWHM of the Airy core, about 0.51 lambda / NA (0.265 µm here)
    assert _half_max_width(h[cz, cy], 0.05) == pytest.approx(0.51 * LAM / NA, rel=0.06)
    # the axial intensity of a circular pupil has its first zero near lambda / (n (1 - cos alpha))
    axial = h[:, cy, cx] / h[cz, cy, cx]
    z0 = LAM / (N * (1 - math.cos(math.asin(NA / N))))
    first_min = (np.argmax(np.diff(axial[cz:]) > 0)) * 0.05
    assert first_min == pytest.approx(z0, rel=0.1) and axial[cz + int(round(z0 / 0.05))] < 0.05


def test_widefield_keeps_its_energy_out_of_focus_and_confocal_sections(widefield):
    h = widefield
    cz = h.shape[0] // 2
    energy = h.sum(axis=(1, 2))
    # 1.5 µm out of focus the defocus cone (radius 1.5 tan(alpha) = 1.7 µm) still fits the kernel:
    # a widefield plane keeps the in-focus plane's energy (the haze a Gaussian model drops)
    assert energy[cz + 30] / energy[cz] == pytest.approx(1.0, abs=0.1)
    g = optical_psf("widefield", na=NA, wavelength_um=LAM, refractive_index=N, voxel_size=(0.05,) * 3,
                    shape=(121, 61, 61), model="gaussian")
    assert g.sum(axis=(1, 2))[cz + 30] / g.sum(axis=(1, 2))[cz] < 0.01
    c = debye_psf("confocal", na=NA, wavelength_um=LAM, refractive_index=N, voxel_size=(0.05,) * 3,
                  shape=(121, 61, 61), excitation_wavelength_um=0.488)
    ce = c.sum(axis=(1, 2))
    assert ce[cz + 30] / ce[cz] < 0.25  # optical sectioning
    assert psf_core_fwhm(c)[2] < psf_core_fwhm(h)[2]  # and a narrower core


def test_core_fwhm_matches_the_gaussian_model_where_moments_fail(widefield):
    """The core's FWHMs come out near the Gaussian approximation's; the haze only inflates second moments."""
    fz, fxy = optical_fwhm("widefield", na=NA, wavelength_um=LAM, refractive_index=N)
    cz, cy, cx = psf_core_fwhm(widefield)
    assert cx * 0.05 == pytest.approx(fxy, rel=0.1) and cz * 0.05 == pytest.approx(fz, rel=0.15)
    sigma = psf_axial_sigma(widefield)  # lateral pixels of 0.05 µm
    gz, gxy = (f / 2.3548 / 0.05 for f in (fz, fxy))
    assert sigma == pytest.approx(math.sqrt(gz**2 - gxy**2), rel=0.15)


def test_kinds_and_errors():
    vs = (0.1, 0.1, 0.1)
    wf = debye_psf("widefield", na=0.8, wavelength_um=LAM, voxel_size=vs)
    ls = debye_psf("light-sheet", na=0.8, wavelength_um=LAM, voxel_size=vs, sheet_na=0.05)
    tp = debye_psf("two-photon", na=0.8, wavelength_um=LAM, voxel_size=vs)
    for k in (wf, ls, tp):
        assert k.dtype == np.float32 and all(s % 2 == 1 for s in k.shape) and k.sum() == pytest.approx(1, rel=1e-5)
    assert psf_core_fwhm(ls)[0] < psf_core_fwhm(wf)[0]  # the sheet confines z
    assert psf_core_fwhm(tp)[2] > psf_core_fwhm(wf)[2]  # excitation at twice the wavelength
    for kw, msg in [({"na": 1.4}, "below the refractive index"), ({"wavelength_um": 520.0}, "in µm"),
                    ({"kind": "spinning"}, "unknown PSF kind"), ({"shape": (10, 11, 11)}, "odd")]:
        args = {"kind": "widefield", "na": 1.0, "wavelength_um": LAM, "voxel_size": vs, **kw}
        with pytest.raises(ConfigError, match=msg):
            debye_psf(args.pop("kind"), **args)
    with pytest.raises(ConfigError, match="sheet_na"):
        debye_psf("light-sheet", na=0.8, wavelength_um=LAM, voxel_size=vs)


def test_cli_psf_optics_reaches_the_run(tmp_path, capsys):
    """``--psf-optics`` restores with the Debye PSF; Richardson–Lucy then skips the lateral held-out check."""
    rng = np.random.default_rng(0)
    data = rng.poisson(50 * rng.random((9, 48, 48))).astype(np.float32)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, data, imagej=True, resolution=(10, 10), metadata={"spacing": 0.4, "unit": "micron",
                                                                            "axes": "ZYX"})
    out = tmp_path / "out.tif"
    assert main(["restore", str(src), "-o", str(out), "--method", "rl", "--psf-optics",
                 "widefield, na=1.0, wavelength=0.52, n=1.33", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["degradation"]["source"] == "optical"
    assert summary["degradation"]["axial_sigma_px"] == pytest.approx(3.95, rel=0.1)  # the core, not the haze
    assert summary.get("heldout") is None and out.exists()
