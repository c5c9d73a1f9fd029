"""Data consistency: the restored stack put through the forward model must give back the recorded planes.

A synthetic acquisition is made with a known model (axial Gaussian blur, sampling every F planes,
Poisson-Gaussian noise of the model's variance): the truth then scores chi2/N about 1, and the
truth with an invented bright blob (a nucleus-sized Gaussian at 0.8 of the range) far above it.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from isoapp.physics.degradation import Degradation
from isoapp.physics.forward import output_length
from isoapp.quality.consistency import CHI2_WARN, consistency, consistency_lines, forward

F = 3
N_IN = 15


@pytest.fixture(scope="module")
def acquisition():
    rng = np.random.default_rng(7)
    n = output_length(N_IN, F)
    truth = ndimage.gaussian_filter(rng.random((n, 40, 40)).astype(np.float32), 2.0)
    truth = (truth - truth.min()) / (truth.max() - truth.min())
    deg = Degradation(factor=F, axial_sigma_px=2.5, noise_gain=0.004, noise_offset=1e-4)
    clean = forward(truth, F, deg.axial_sigma_px, N_IN)
    rec = clean + rng.normal(size=clean.shape).astype(np.float32) * np.sqrt(deg.noise_var(clean))
    return truth, rec.astype(np.float32), deg


def test_the_forward_model_samples_output_plane_f_i_at_input_plane_i(acquisition):
    truth, _, _ = acquisition
    assert np.allclose(forward(truth, F, 0.0, N_IN), truth[::F])


# Measured (seed 7): the truth chi2/N 1.00 (worst plane 1.07); with a blob of sigma 5 px: amplitude 0.5
# 1.67 (worst plane 3.9), amplitude 1.0 3.15 (9.9); sigma 3 px, 0.8: 1.30 (2.8). The bar 1.5 is the
# issue's target for auto's output on real stacks.
def test_the_truth_is_within_the_noise_and_an_invented_blob_is_not(acquisition, tmp_path):
    truth, rec, deg = acquisition
    clean, cmap = consistency(rec, truth, deg, residual_map=True)
    assert 0.8 < clean["chi2_per_n"] < 1.2, clean
    assert clean["frac_beyond_3sigma"] < 0.01 and not clean["far_above_1"]
    # the sharp truth dips a little below the blurred recording's background (measured 0.16 %)
    assert abs(clean["sum_z_change_pct"]) < 2.0 and clean["below_background_frac"] < 0.005
    assert cmap.shape == rec.shape and cmap.dtype == np.float32
    assert len(clean["chi2_per_plane"]) == N_IN
    zz, yy, xx = np.mgrid[:truth.shape[0], :40, :40]
    blob = 0.8 * np.exp(-((zz - 21) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2) / (2 * 5.0 ** 2))
    bad, _ = consistency(rec, truth + blob.astype(np.float32), deg)
    assert bad["chi2_per_n"] > 1.5 and bad["far_above_1"], bad
    assert max(bad["chi2_per_plane"]) > 3.0 > max(clean["chi2_per_plane"])
    assert bad["chi2_worst_plane"] == 7  # the plane through the blob (output plane 21 = input plane 7)
    assert bad["sum_z_change_pct"] > 1.0
    lines = consistency_lines(bad)
    assert lines[0].startswith("data consistency") and "WARNING" in lines[1] and "far above 1" in lines[1]
    assert not any("WARNING" in line for line in consistency_lines(clean))


def test_dark_rims_below_the_background_are_counted(acquisition):
    truth, rec, deg = acquisition
    rim = truth.copy()
    rim[:, 5:8, 5:30] = -0.5  # a dark rim far below the background
    rep, _ = consistency(rec, rim, deg)
    assert rep["below_background_frac"] > 0.01 and rep["below_background_min_sigma"] < -3


def test_a_model_without_noise_gets_one_line_saying_why(acquisition):
    truth, rec, _ = acquisition
    rep, cmap = consistency(rec, truth, Degradation(factor=F, axial_sigma_px=2.5), residual_map=True)
    assert "no noise model" in rep["skipped"] and cmap is None
    assert consistency_lines(rep) == [f"data consistency: {rep['skipped']}"]
    assert CHI2_WARN > 1.5
