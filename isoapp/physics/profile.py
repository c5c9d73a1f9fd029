"""Gaussian fits of 1D profiles: the FWHM every resolution figure and PSF measurement uses.

The fit is ``a * exp(-(x - mu)**2 / (2 s**2)) + c``; the FWHM is ``2 sqrt(2 ln 2) |s|``.
It lives with the physics because PSFs are measured with it; :mod:`isoapp.quality.fwhm`
builds bead and tube widths on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

SIGMA_TO_FWHM = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _gauss(x, a, mu, s, c):
    return a * np.exp(-0.5 * ((x - mu) / s) ** 2) + c


def fit_gaussian(profile: Sequence[float]) -> tuple[float, float, float, float]:
    """Fit ``a exp(-(x-mu)^2 / 2s^2) + c`` to ``profile`` (x = sample index).

    Returns ``(a, mu, s, c)`` with ``s > 0``, or four NaNs when the fit fails or the
    profile has no peak.
    """
    y = np.asarray(profile, dtype=np.float64).ravel()
    nan = (float("nan"),) * 4
    if y.size < 4 or not np.all(np.isfinite(y)) or y.max() <= y.min():
        return nan
    x = np.arange(y.size, dtype=np.float64)
    c0, a0 = float(y.min()), float(y.max() - y.min())
    mu0 = float(np.argmax(y))
    s0 = max(0.5, float(np.count_nonzero(y > c0 + 0.5 * a0)) / SIGMA_TO_FWHM)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            p, _ = curve_fit(_gauss, x, y, p0=(a0, mu0, s0, c0), maxfev=5000)
    except (RuntimeError, ValueError):
        return nan
    a, mu, s, c = (float(v) for v in p)
    if not (np.isfinite(p).all() and a > 0 and s != 0):
        return nan
    return a, mu, abs(s), c


def fwhm_profile(profile: Sequence[float], spacing: float = 1.0) -> float:
    """FWHM of a 1D peak in ``spacing`` units from a Gaussian-plus-offset fit (NaN if it fails)."""
    return float(SIGMA_TO_FWHM * fit_gaussian(profile)[2] * spacing)
