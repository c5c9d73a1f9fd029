"""Synthetic phantoms: shapes, grids, determinism, ground-truth side data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from isoapp.core.errors import ConfigError
from isoapp.physics.psf import fwhm_to_sigma
from isoapp.quality.phantoms import KINDS, Phantom, make_phantom

SHAPE = (17, 48, 48)


@pytest.mark.parametrize("kind", KINDS)
def test_phantom_grids_and_ranges(kind):
    ph = make_phantom(kind, SHAPE, factor=4.0, seed=3)
    assert isinstance(ph, Phantom)
    assert ph.gt.shape == ph.gt_iso.shape == SHAPE
    assert ph.degraded.shape == (5, 48, 48)  # floor(16 / 4) + 1
    for v in (ph.gt, ph.gt_iso, ph.degraded):
        assert v.axes == "ZYX" and v.dtype == np.float32
        assert np.isfinite(v.data).all()
    d = ph.gt.voxel_size[0]
    assert ph.gt.voxel_size == ph.gt_iso.voxel_size == (d, d, d)
    assert ph.degraded.voxel_size == pytest.approx((4 * d, d, d))
    assert ph.gt.data.min() >= 0 and 0.5 < ph.gt.data.max() <= 1.0
    assert ph.gt_iso.data.max() == pytest.approx(1.0, abs=1e-5)
    assert ph.gt.data.max() > 0 and ph.degraded.data.max() > 0
    assert ph.params["kind"] == kind and ph.params["factor"] == 4.0


@pytest.mark.parametrize("kind", KINDS)
def test_phantom_deterministic_and_seed_dependent(kind):
    a = make_phantom(kind, SHAPE, seed=1)
    b = make_phantom(kind, SHAPE, seed=1)
    c = make_phantom(kind, SHAPE, seed=2)
    np.testing.assert_array_equal(a.gt.data, b.gt.data)
    np.testing.assert_array_equal(a.degraded.data, b.degraded.data)
    assert not np.array_equal(a.gt.data, c.gt.data)


def test_degraded_is_axially_blurred_subsampled_gt_iso():
    ph = make_phantom("tubes", (33, 40, 40), factor=4.0, sigma_z=4.0, seed=0)
    s_iso = ph.params["sigma_iso"]
    extra = np.sqrt(4.0**2 - s_iso**2)
    ref = ndimage.gaussian_filter1d(ph.gt_iso.data, extra, axis=0, mode="reflect")[::4]
    np.testing.assert_allclose(ph.degraded.data, ref, atol=1e-5)
    # gt_iso is the gt blurred isotropically, rescaled to peak 1
    iso = ndimage.gaussian_filter(ph.gt.data, s_iso)
    np.testing.assert_allclose(ph.gt_iso.data, iso / iso.max(), atol=1e-5)


def test_non_integer_factor_grid():
    ph = make_phantom("nuclei", (33, 32, 32), factor=2.5, seed=0)
    assert ph.degraded.shape == (13, 32, 32)
    assert ph.degraded.voxel_size[0] == pytest.approx(2.5 * ph.gt.voxel_size[0])


def test_beads_centres_and_fwhm():
    ph = make_phantom("beads", (33, 64, 64), factor=2.0, seed=4)
    centres = ph.params["centres"]
    assert centres.ndim == 2 and centres.shape[1] == 3 and len(centres) >= 1
    gt = ph.gt.data
    assert np.count_nonzero(gt) == len(centres)
    for c in centres:
        assert gt[tuple(c)] > 0
    # gt_iso beads have the lateral FWHM of 305 nm (gt voxel 0.1 µm)
    c = centres[0]
    prof = ph.gt_iso.data[c[0], c[1], :].astype(np.float64)
    assert ph.params["sigma_iso"] == pytest.approx(fwhm_to_sigma(0.305) / 0.1)
    sub = prof[max(c[2] - 6, 0): c[2] + 7]
    r = np.arange(sub.size) - (c[2] - max(c[2] - 6, 0))
    var = (sub * r**2).sum() / sub.sum()
    assert np.sqrt(var) == pytest.approx(ph.params["sigma_iso"], rel=0.1)
    assert ph.params["sigma_z"] == pytest.approx(fwhm_to_sigma(1.0) / 0.1)


@pytest.mark.parametrize("kind", ["nuclei", "membranes"])
def test_labels(kind):
    ph = make_phantom(kind, SHAPE, seed=0)
    labels = ph.params["labels"]
    assert labels.shape == SHAPE and labels.dtype == np.int32
    assert labels.max() >= 2
    if kind == "nuclei":  # the signal lives in the labelled objects
        assert np.all(ph.gt.data[labels == 0] == 0)
        assert np.all(ph.gt.data[labels > 0] > 0)


def test_noise_changes_only_degraded():
    clean = make_phantom("nuclei", SHAPE, seed=0)
    noisy = make_phantom("nuclei", SHAPE, seed=0, noise=True)
    np.testing.assert_array_equal(clean.gt.data, noisy.gt.data)
    assert not np.allclose(clean.degraded.data, noisy.degraded.data)
    assert noisy.degraded.data.mean() == pytest.approx(clean.degraded.data.mean(), rel=0.05)


def test_bad_parameters():
    with pytest.raises(ConfigError):
        make_phantom("stars", SHAPE)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        make_phantom("tubes", SHAPE, factor=0)
    with pytest.raises(ConfigError):
        make_phantom("tubes", (2, 48, 48))
    with pytest.raises(ConfigError):
        make_phantom("tubes", SHAPE, sigma_z=-1)
