"""Spectral statistics of anisotropic stacks (the axial/lateral spectrum ratio behind Self-Net's spectral loss)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from isoapp.physics.spectral import axial_log_spectrum
from isoapp.quality.phantoms import make_phantom

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
