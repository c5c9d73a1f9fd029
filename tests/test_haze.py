"""The widefield evidence that makes ``auto`` deconvolve (:mod:`isoapp.quality.haze`), on independent phantoms."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from isoapp.core.volume import Volume
from isoapp.physics.degradation import estimate_degradation
from isoapp.physics.optics import optical_psf
from isoapp.quality.haze import WIDEFIELD_PSF, defocus_energy, widefield_evidence
from isoapp.run.restore import restore

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "indep_phantoms.py"
_spec = importlib.util.spec_from_file_location("indep_phantoms", _PATH)
ip = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("indep_phantoms", ip)
_spec.loader.exec_module(ip)

ISO = (0.2, 0.2, 0.2)
WF = dict(na=1.0, wavelength_um=0.52, refractive_index=1.33)
CONF = dict(na=1.2, wavelength_um=0.52, refractive_index=1.33, excitation_wavelength_um=0.488)


# Measured: widefield 0.98-1.00 (NA 0.5-1.4, voxels 0.1 and 0.2 µm); confocal 0.05-0.07, two-photon 0.03,
# light-sheet 0.001-0.09, Gaussian 0.
@pytest.mark.parametrize("kind,kw,widefield", [
    ("widefield", WF, True), ("widefield", dict(na=1.4, wavelength_um=0.52, refractive_index=1.515), True),
    ("confocal", CONF, False), ("two-photon", dict(WF, excitation_wavelength_um=0.92), False),
    ("light-sheet", dict(WF, sheet_na=0.1), False)])
def test_only_widefield_psfs_keep_their_plane_energy_out_of_focus(kind, kw, widefield):
    assert (defocus_energy(optical_psf(kind, voxel_size=ISO, **kw)) > WIDEFIELD_PSF) is widefield


def _normalised(c):
    lo, hi = np.percentile(c.acquired, (1, 99.8))
    return (c.acquired - lo) / (hi - lo)


def test_a_widefield_stack_with_its_psf_gets_deconvolution_and_a_confocal_one_does_not():
    iso = (0.1, 0.1, 0.1)
    wf = ip.make_case("nuclei", "widefield", photons=100.0, factor=4.0, shape=(17, 64, 64), seed=0)
    x = _normalised(wf)
    noise = estimate_degradation(x, 4.0)
    ev = widefield_evidence(x, 4.0, optical_psf("widefield", voxel_size=iso, **WF), noise)
    assert ev["applies"] and ev["haze_ratio"] >= 1.0, ev
    # the same PSF at a voxel size five times too coarse is far wider than the planes show: refused
    assert not widefield_evidence(x, 4.0, optical_psf("widefield", voxel_size=(0.02,) * 3, **WF), noise)["applies"]
    cf = ip.make_case("nuclei", "confocal", photons=100.0, factor=4.0, shape=(17, 64, 64), seed=0)
    xc = _normalised(cf)
    ev = widefield_evidence(xc, 4.0, optical_psf("confocal", voxel_size=iso, **CONF), estimate_degradation(xc, 4.0))
    assert not ev["applies"] and "sections optically" in ev["reason"]


@pytest.mark.slow
def test_auto_deconvolves_a_widefield_stack_given_its_optics():
    c = ip.make_case("nuclei", "widefield", photons=100.0, factor=4.0, shape=(17, 48, 48), seed=0)
    vol = Volume(c.acquired, "ZYX", c.voxel_size, name=c.name)
    optics = {"kind": "widefield", "na": 1.0, "wavelength_um": 0.52, "refractive_index": 1.33}
    res = restore(vol, "auto", psf={"kind": "optical", "optics": optics}, device="cpu", check="none")
    sel = res.method.selection()
    assert sel["chosen"] == "deconv" and "widefield PSF" in sel["reason"]
    assert res.info["consistency"]["blur"] == "method's 3D PSF"
