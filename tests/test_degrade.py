"""Convolution, grid-aligned sub/upsampling, camera noise and the full degradation model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from isoapp.core.errors import ConfigError
from isoapp.physics.forward import (
    degrade,
    fft_convolve,
    output_length,
    subsample,
    subsampled_length,
    upsample,
)
from isoapp.physics.noise import add_model_noise, add_noise, camera_gain_offset, model_variance
from isoapp.physics.psf import gaussian_psf


@pytest.mark.parametrize("kshape", [(5, 3, 7), (4, 3, 6)])
def test_fft_convolve_matches_ndimage_3d(kshape):
    rng = np.random.default_rng(1)
    a = rng.random((12, 15, 14)).astype(np.float32)
    k = rng.random(kshape).astype(np.float32)
    ours = fft_convolve(a, k)
    ref = ndimage.convolve(a.astype(np.float64), k.astype(np.float64), mode="reflect")
    assert ours.dtype == np.float32 and ours.shape == a.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_fft_convolve_2d_and_batched_planes():
    rng = np.random.default_rng(2)
    a = rng.random((3, 20, 18)).astype(np.float32)
    k = gaussian_psf((1.0, 3.0))
    batched = fft_convolve(a, k)
    for i in range(a.shape[0]):
        ref = ndimage.convolve(a[i].astype(np.float64), k.astype(np.float64), mode="reflect")
        np.testing.assert_allclose(batched[i], ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(fft_convolve(a[i], k), ref, rtol=1e-4, atol=1e-5)


def test_fft_convolve_no_edge_darkening():
    a = np.ones((10, 30, 30), dtype=np.float32)
    out = fft_convolve(a, gaussian_psf((2.0, 2.0, 2.0)))
    np.testing.assert_allclose(out, 1.0, atol=1e-4)  # a flat image stays flat up to the borders
    full = fft_convolve(a[0], gaussian_psf((1.0, 1.0)), mode="full")
    assert full.shape == (30 + 8, 30 + 8)


def test_grid_lengths():
    assert output_length(9, 4) == 33
    assert subsampled_length(33, 4) == 9
    assert subsampled_length(33, 2.5) == 13  # positions 0, 2.5, ..., 30
    assert output_length(13, 2.5) == 31
    assert subsampled_length(1, 3) == 1 and output_length(1, 3) == 1
    with pytest.raises(ConfigError):
        output_length(10, 0)
    with pytest.raises(ConfigError):
        subsampled_length(10, -2)


def test_subsample_integer_is_exact_slicing():
    a = np.random.default_rng(0).random((33, 5, 4)).astype(np.float32)
    s = subsample(a, 4)
    assert s.shape == (9, 5, 4)
    np.testing.assert_array_equal(s, a[::4])
    np.testing.assert_array_equal(subsample(a, 2.0, axis=2), a[:, :, ::2])


def test_subsample_non_integer_positions():
    z = np.arange(33, dtype=np.float32) * 0.5 + 1.0  # linear ramp: interpolation is exact
    a = np.broadcast_to(z[:, None, None], (33, 2, 3)).copy()
    s = subsample(a, 2.5)
    assert s.shape == (13, 2, 3)
    np.testing.assert_allclose(s[:, 0, 0], np.arange(13) * 2.5 * 0.5 + 1.0, atol=1e-6)


@pytest.mark.parametrize("order", [1, 3])
def test_upsample_integer_alignment(order):
    a = np.random.default_rng(3).random((9, 6, 5)).astype(np.float32)
    u = upsample(a, 4, order=order)
    assert u.shape == (33, 6, 5)
    np.testing.assert_array_equal(u[::4], a)


def test_upsample_non_integer_positions_and_roundtrip():
    z = np.arange(13, dtype=np.float32) ** 1  # linear
    a = np.broadcast_to(z[:, None], (13, 4)).copy()
    u = upsample(a, 2.5)
    assert u.shape == (output_length(13, 2.5), 4) == (31, 4)
    np.testing.assert_allclose(u[:, 0], np.arange(31) / 2.5, atol=1e-5)
    # on a smooth signal, cubic up- then subsampling returns the input at the kept planes
    x = np.sin(np.linspace(0, 2, 13)).astype(np.float32)[:, None]
    back = subsample(upsample(x, 2.5, order=3), 2.5, order=3)
    assert back.shape == x.shape
    np.testing.assert_allclose(back, x, atol=1e-5)
    # quadratic profile: cubic beats linear between the samples
    q = (np.arange(10, dtype=np.float64) ** 2)[:, None]
    truth = (np.arange(output_length(10, 3)) / 3.0) ** 2
    err1 = np.abs(upsample(q, 3, order=1)[:, 0] - truth).max()
    err3 = np.abs(upsample(q, 3, order=3)[:, 0] - truth).max()
    assert err3 < 1e-3 < err1


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_cubic_spline_slab_by_slab_equals_one_spline(monkeypatch, axis):
    """The cubic path works in slabs (SciPy holds the GIL per call); the slabs must not change a value."""
    from scipy.interpolate import CubicSpline

    from isoapp.physics import forward

    x = np.random.default_rng(3).random((9, 23, 31)).astype(np.float32)
    pos = np.clip(np.arange(forward.output_length(x.shape[axis], 2.5)) / 2.5, 0, x.shape[axis] - 1)
    one = CubicSpline(np.arange(x.shape[axis], dtype=np.float64), x.astype(np.float64), axis=axis)(pos)
    monkeypatch.setattr(forward, "CUBIC_SLAB_ELEMENTS", 50)  # many slabs, a ragged last one
    slabs = forward.sample_along(x, pos, axis=axis, order=3)
    np.testing.assert_allclose(slabs, one.astype(np.float32), rtol=0, atol=1e-6)
    exact = np.nonzero(np.abs(pos - np.round(pos)) < 1e-9)[0]
    np.testing.assert_array_equal(np.take(slabs, exact, axis=axis),
                                  np.take(x, np.round(pos[exact]).astype(int), axis=axis))


def test_noise_statistics():
    rng = np.random.default_rng(5)
    a = np.full((64, 64, 64), 0.5, dtype=np.float32)
    a[0, 0, 0] = 1.0  # the maximum sets the photon scale: 100 photons at 1.0 -> 50 at 0.5
    noisy = add_noise(a, photons=100, rng=rng)
    assert noisy.dtype == np.float32
    body = noisy.ravel()[1:]
    assert body.mean() == pytest.approx(0.5, rel=0.01)
    # Poisson: var(counts) = mean(counts) = 50, in intensity units 50 / 100**2
    assert body.var() == pytest.approx(50 / 100**2, rel=0.05)
    with_read = add_noise(a, photons=100, read_noise=5.0, rng=rng).ravel()[1:]
    assert with_read.var() == pytest.approx((50 + 25) / 100**2, rel=0.05)
    same = add_noise(a, photons=100, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(same, add_noise(a, photons=100, rng=np.random.default_rng(9)))
    with pytest.raises(ConfigError):
        add_noise(a, photons=-1, rng=rng)


def test_degrade_sigma_and_psf_agree():
    rng = np.random.default_rng(6)
    gt = ndimage.gaussian_filter(rng.random((33, 20, 20)), 1.0).astype(np.float32)
    by_sigma = degrade(gt, factor=4, sigma_z=2.0)
    by_psf = degrade(gt, factor=4, psf=gaussian_psf((2.0, 0.0, 0.0)))
    assert by_sigma.shape == (9, 20, 20)
    np.testing.assert_allclose(by_sigma, by_psf, atol=1e-4)
    ref = ndimage.gaussian_filter1d(gt, 2.0, axis=0, mode="reflect")[::4]
    np.testing.assert_allclose(by_sigma, ref, atol=1e-5)
    frac = degrade(gt, factor=2.5, sigma_z=1.0)
    assert frac.shape == (13, 20, 20)
    noisy = degrade(gt, factor=4, sigma_z=2.0, noise={"photons": 50}, rng=1)
    assert not np.allclose(noisy, by_sigma)
    assert abs(noisy.mean() - by_sigma.mean()) < 0.02 * by_sigma.mean()
    with pytest.raises(ConfigError):
        degrade(gt, factor=0)
    with pytest.raises(ConfigError):
        degrade(gt, factor=2, noise={"photon": 3})


# ----------------------------------------------------------------------------- sampling matrices
def test_resample_matrix_is_degrade_rows():
    from isoapp.physics.forward import degrade_rows, resample_matrix

    rng = np.random.default_rng(0)
    x = rng.random((1, 40, 7)).astype(np.float32)
    for factor, phase in [(4, 0.0), (4, 3.0), (2.5, 1.3)]:
        m = resample_matrix(40, factor, phase, margin=4)
        assert m.shape == (32, 40)
        assert np.allclose(m @ x[0], degrade_rows(x, factor, np.array([phase]), 4)[0], atol=1e-6)
    with pytest.raises(ConfigError):
        resample_matrix(8, 4, 0.0, margin=4)


@pytest.mark.parametrize("start", [0, 3, 5, 10])
@pytest.mark.parametrize("flipped", [False, True])
def test_sampling_phase_finds_the_acquired_planes(start, flipped):
    """A window of a z-interpolated stack is its own sample-and-interpolate image only if the
    phase marks the acquired planes; any other phase changes it."""
    from isoapp.physics.forward import resample_matrix, sampling_phase

    coarse = np.random.default_rng(1).random((12, 5)).astype(np.float32)
    w = upsample(coarse, 4, axis=0)[start:start + 30]
    w = w[::-1] if flipped else w
    phase = sampling_phase(start, 4, 30, flipped)
    assert np.allclose(resample_matrix(30, 4, phase, 4) @ w, w[4:-4], atol=1e-6)
    wrong = (phase + 1) % 4
    assert not np.allclose(resample_matrix(30, 4, wrong, 4) @ w, w[4:-4], atol=1e-3)


def test_resample_along_applies_one_matrix_per_item():
    import torch

    from isoapp.physics.forward import resample_along, resample_matrix

    rng = np.random.default_rng(2)
    mats = np.stack([resample_matrix(24, 4, ph, 4) for ph in (0.0, 1.0, 2.0)])
    x = rng.random((3, 1, 24, 6, 5)).astype(np.float32)
    out = resample_along(torch.from_numpy(x), torch.from_numpy(mats), axis=2).numpy()
    ref = np.stack([np.einsum("pz,zyx->pyx", mats[i], x[i, 0]) for i in range(3)])[:, None]
    assert out.shape == (3, 1, 16, 6, 5) and np.allclose(out, ref, atol=1e-6)
    x2 = torch.from_numpy(x[:, :, :, :, 0])  # (B, 1, 24, 6): rows = axis -2
    assert np.allclose(resample_along(x2, torch.from_numpy(mats), axis=-2).numpy(), ref[..., 0], atol=1e-6)


def test_camera_noise_and_the_model_noise_are_one_model():
    """The exact camera sampler and the Gaussian model sampler agree on the variance at every intensity
    (the gain and offset from camera_gain_offset); a model with the read noise left out does not."""
    rng = np.random.default_rng(0)
    levels = np.repeat(np.array([0.05, 0.2, 0.5, 1.0], np.float32), 40_000).reshape(4, -1)
    levels[3, 0] = 1.0  # the peak that scales photons
    photons, read = 200.0, 3.0
    cam = add_noise(levels, photons=photons, read_noise=read, rng=rng) - levels
    gain, offset = camera_gain_offset(1.0, photons, read)
    model = add_model_noise(levels, gain, offset, rng) - levels
    want = model_variance(levels[:, 0], gain, offset)
    np.testing.assert_allclose(cam.var(axis=1), want, rtol=0.05)
    np.testing.assert_allclose(model.var(axis=1), want, rtol=0.05)
    no_read = model_variance(levels[:, 0], gain, 0.0)
    assert cam.var(axis=1)[0] > 1.5 * no_read[0]  # the read noise dominates at low intensity
