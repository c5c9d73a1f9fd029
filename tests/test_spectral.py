"""Spectral statistics of anisotropic stacks (the axial/lateral spectrum ratio and the axial blur estimate)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from isoapp.degradation import estimate_axial_sigma
from isoapp.degrade import upsample
from isoapp.phantoms import make_phantom
from isoapp.restore import normalize
from isoapp.spectral import axial_log_spectrum

torch.set_num_threads(1)


def test_axial_log_spectrum_measures_the_extra_axial_blur():
    """The statistic behind Self-Net's spectral loss: lower at mid frequencies the more the rows
    are blurred, and blind to the brightness and offset of the object."""
    gt = make_phantom("tubes", (33, 64, 64), factor=4, seed=0).gt_iso.data
    planes = np.ascontiguousarray(gt[4:30:3, :48, :48])

    def stat(a: np.ndarray) -> np.ndarray:
        return axial_log_spectrum(torch.from_numpy(np.ascontiguousarray(a))[:, None]).numpy()

    flat = stat(planes)
    mids = [stat(ndimage.gaussian_filter1d(planes, s, axis=1))[4:9].mean() - flat[4:9].mean()
            for s in (1.0, 2.0, 4.0)]
    assert 0 > mids[0] > mids[1] > mids[2] and mids[2] < -2.0
    bright = stat(3.0 * ndimage.gaussian_filter1d(planes, 2.0, axis=1) + 0.2)
    assert np.allclose(bright, stat(ndimage.gaussian_filter1d(planes, 2.0, axis=1)), atol=1e-3)


@pytest.mark.parametrize("kind,sigma_z", [("tubes", 4.0), ("tubes", 2.5), ("beads", None)])
def test_estimate_axial_sigma_finds_the_extra_axial_blur(kind, sigma_z):
    """The blur beyond the lateral one (the phantom's sqrt(sigma_z^2 - sigma_iso^2)) within 15 %, from the stack alone."""
    ph = make_phantom(kind, (97, 112, 112), factor=4, seed=0, sigma_z=sigma_z)
    vol, _, _ = normalize(ph.degraded.data)
    est = estimate_axial_sigma(vol, 4.0, None, np.random.default_rng(0), up=upsample(vol, 4, axis=0))
    true = math.sqrt(ph.params["sigma_z"] ** 2 - ph.params["sigma_iso"] ** 2)
    assert abs(est / true - 1) < 0.15, (est, true)
