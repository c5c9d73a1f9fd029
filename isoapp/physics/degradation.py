"""One degradation model per stack: axial blur, axial sampling and Poisson–Gaussian noise.

A real axial (xz/yz) plane of an anisotropic stack is a sharp plane that was

1. blurred along z by the part of the axial PSF beyond the lateral one,
2. sampled every ``F`` lateral pixels (the z step, at some phase), and
3. noised *after* the blur: Poisson shot noise plus Gaussian read noise, whose variance is
   ``gain * intensity + read**2`` (intensities normalised as restoration sees them).

:class:`Degradation` holds those three parts; every method trains on pairs made by it
(:mod:`isoapp.training.pairs`) and the held-out check (:mod:`isoapp.quality.heldout`) uses it too. When the user
gives no PSF, :func:`estimate_degradation` estimates the blur and the noise blind from the stack:

* noise: a variance–mean fit on the smooth parts of the lateral planes, after Foi et al. (2008),
  "Practical Poissonian-Gaussian noise modeling and fitting for single-image raw-data", IEEE
  Trans. Image Process. 17(10):1737–1754 (Haar detail coefficients, smoothness selection, level
  sets of the local mean; here a robust per-level MAD and a non-negative least-squares line in
  place of their maximum-likelihood fit);
* blur: the Gaussian axial sigma that makes the lateral autocorrelation of the planes, blurred
  along one axis, match the correlation between neighbouring planes (:func:`estimate_axial_sigma`).
  Noise is white per voxel, so the neighbour correlation carries none; the lag-0 variance has
  the estimated noise taken out. (An earlier spectral match, with the noise simulated after the
  blur, scattered by -100 % to +180 % at 50 photons on independent phantoms: the log spectra of
  64-pixel crops leave few frequencies above the noise and below the acquisition's Nyquist.)

Both estimates assume a sample without a preferred orientation between lateral and axial.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from ..core.errors import InputError
from .noise import add_model_noise, model_variance
from .psf import fwhm_to_sigma, gaussian_psf, sigma_to_fwhm

log = logging.getLogger(__name__)

BlurSource = Literal["estimated", "gaussian", "optical", "file", "nyquist", "none"]
MIN_PLANES = 5
MIN_LATERAL = 16
SATURATED_MAX_FRACTION = 0.5


class Degradation(BaseModel):
    """The stack's forward model, in the units restoration sees (lateral pixels, normalised intensity).

    ``axial_sigma_px`` is the Gaussian sigma (lateral pixels) of the axial blur beyond the
    lateral one, used when no PSF array is given; a user PSF replaces it (``blur_source``).
    """

    model_config = ConfigDict(extra="forbid")

    factor: float = Field(..., gt=1.0)
    axial_sigma_px: float = Field(0.0, ge=0.0)
    blur_source: BlurSource = "estimated"
    noise_gain: float = Field(0.0, ge=0.0, description="shot-noise variance per unit of normalised intensity")
    noise_offset: float = Field(0.0, description="noise variance at normalised intensity 0 (read noise squared, "
                                "less a pedestal; may be negative)")
    noise_source: Literal["estimated", "none"] = "estimated"
    lateral_um: float = Field(1.0, gt=0.0, description="lateral pixel size (µm), to report the blur in µm")

    # ------------------------------------------------------------------ noise
    def noise_var(self, x: np.ndarray) -> np.ndarray:
        """Noise variance at intensity ``x`` (``max(gain * x + offset, 0)``)."""
        return model_variance(x, self.noise_gain, self.noise_offset)

    @property
    def has_noise(self) -> bool:
        return self.noise_gain > 0 or self.noise_offset > 0

    def add_noise(self, x: np.ndarray, rng: np.random.Generator, already: float = 0.0) -> np.ndarray:
        """``x`` plus Gaussian noise of the model's variance times ``1 - already``.

        ``already`` is the fraction of the noise variance that ``x`` still carries (a blurred
        noisy plane keeps ``sum(k**2)`` of it), so the result carries about the full variance.
        """
        if not self.has_noise or already >= 1.0:
            return x
        return add_model_noise(x, self.noise_gain, self.noise_offset, rng, already)

    # ------------------------------------------------------------------ blur
    def psf(self) -> np.ndarray:
        """A 3D PSF (isotropic lateral grid) that holds only the extra axial blur: a z-only Gaussian."""
        return gaussian_psf((max(self.axial_sigma_px, 1e-3), 0.0, 0.0))

    def summary(self) -> dict:
        """Figures for the CLI, the JSON summary, the GUI and the saved model."""
        return {"axial_sigma_px": round(self.axial_sigma_px, 3),
                "axial_fwhm_um": round(sigma_to_fwhm(self.axial_sigma_px) * self.lateral_um, 4),
                "source": self.blur_source, "factor": self.factor,
                "noise_gain": float(f"{self.noise_gain:.4g}"), "noise_offset": float(f"{self.noise_offset:.4g}"),
                "noise_std_at_half": round(float(np.sqrt(self.noise_var(np.float32(0.5)))), 4),
                "noise_source": self.noise_source}

    def describe(self) -> str:
        s = self.summary()
        blur = (f"axial blur sigma {s['axial_sigma_px']:.2f} px (FWHM {s['axial_fwhm_um']:.3g} µm beyond the "
                f"lateral PSF, {s['source']})")
        noise = (f"noise std {s['noise_std_at_half']:.3g} at half range (shot gain {s['noise_gain']:.3g}, "
                 f"offset {s['noise_offset']:.3g}, normalised units, {s['noise_source']})")
        return f"{blur}; {noise}"


# ----------------------------------------------------------------------------- noise kept by a blur
def kernel_energy(sigma: float) -> float:
    """``sum(k**2)`` of a sampled 1D Gaussian: the share of white-noise variance a blur keeps."""
    if sigma <= 0:
        return 1.0
    r = int(math.ceil(4 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    return float((k * k).sum())


# ----------------------------------------------------------------------------- checks
def check_estimable(vol: np.ndarray, factor: float, name: str = "the stack") -> None:
    """Refuse, before any training, a stack whose blur and noise cannot be estimated, saying what to pass."""
    nz, ny, nx = vol.shape
    hint = "pass the PSF instead (--psf FILE or --psf-fwhm Z Y X)"
    if nz < MIN_PLANES:
        raise InputError(f"{name} has {nz} z planes; estimating its axial blur needs at least {MIN_PLANES}: {hint}")
    if min(ny, nx) < MIN_LATERAL:
        raise InputError(f"{name} is {ny}x{nx} pixels laterally; estimating its blur needs at least "
                         f"{MIN_LATERAL}x{MIN_LATERAL}: {hint}")
    lo, hi = float(np.min(vol)), float(np.max(vol))
    if not hi > lo:
        raise InputError(f"{name} is constant ({lo:g}); there is nothing to estimate or restore")
    if float(np.mean(vol >= hi)) > SATURATED_MAX_FRACTION:
        raise InputError(f"more than half of {name} is at its maximum value {hi:g} (saturated); its blur cannot "
                         f"be estimated: {hint}, or re-acquire below saturation")


# ----------------------------------------------------------------------------- noise estimate
_DETAIL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6.0  # Immerkaer (1996): var = sigma^2


def _detail(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local 3x3 mean and a detail coefficient of the noise's variance that cancels smooth structure."""
    mean = ndimage.uniform_filter(planes, size=(1, 3, 3), mode="reflect")
    detail = ndimage.convolve(planes, _DETAIL[None], mode="reflect")
    return mean[:, 1::3, 1::3], detail[:, 1::3, 1::3]  # one (nearly independent) coefficient per 3x3 block


def estimate_noise(vol: np.ndarray, max_planes: int = 24, levels: int = 12) -> tuple[float, float]:
    """Poisson–Gaussian noise ``(gain, offset)`` of ``vol``: ``var = max(gain * x + offset, 0)``.

    Per lateral plane, the Haar detail ``(a - b - c + d) / 2`` of each 2x2 block has the noise
    variance of one pixel and cancels smooth structure; the block mean is the intensity. Blocks on
    edges are dropped (the half with the largest gradient of the block means, per level), the rest
    are split into ``levels`` intensity levels, each level's variance is a robust MAD estimate, and
    a line with a non-negative slope is fitted to (mean, variance) weighted by the counts.
    """
    nz = vol.shape[0]
    idx = np.unique(np.linspace(0, nz - 1, min(nz, max_planes)).round().astype(int))
    planes = np.asarray(vol[idx], np.float32)
    mean, detail = _detail(planes)
    grad = np.hypot(ndimage.sobel(mean, axis=1), ndimage.sobel(mean, axis=2))
    keep = np.zeros(mean.shape, bool)
    keep[:, 1:-1, 1:-1] = True
    m, d, g = mean[keep], detail[keep], grad[keep]
    edges = np.quantile(m, np.linspace(0, 1, levels + 1))
    xs, vs, ws = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (m >= lo) & (m <= hi)
        if sel.sum() < 64:
            continue
        gs = g[sel]
        smooth = gs <= np.quantile(gs, 0.5)
        dd = d[sel][smooth]
        sd = float(np.median(np.abs(dd - np.median(dd)))) / 0.6745
        xs.append(float(np.median(m[sel][smooth])))
        vs.append(sd * sd)
        ws.append(float(smooth.sum()))
    if len(xs) < 2:
        return 0.0, 0.0
    x, v, w = np.array(xs), np.array(vs), np.sqrt(np.array(ws))
    # weighted least squares for v = gain * x + offset; the offset may be negative (a pedestal:
    # normalisation puts the dark level near 0, where the shot noise is smallest), the gain not
    A = np.stack([x, np.ones_like(x)], 1) * w[:, None]
    gain, offset = np.linalg.lstsq(A, v * w, rcond=None)[0]
    if gain < 0:
        gain, offset = 0.0, float(np.average(v, weights=w))
    return float(gain), float(offset)


# ----------------------------------------------------------------------------- blur estimate
def _lateral_autocov(planes: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocovariance at lags ``0..max_lag`` along x and y of mean-free planes ``(B, ny, nx)``, averaged.

    Unbiased (each lag divided by its number of pixel pairs); computed by zero-padded FFTs.
    """
    out = np.zeros(max_lag + 1)
    for axis in (1, 2):
        n = planes.shape[axis]
        f = np.fft.rfft(planes, n=2 * n, axis=axis)
        ac = np.fft.irfft(np.abs(f) ** 2, n=2 * n, axis=axis)
        ac = ac.mean(axis=(0, 3 - axis))[: max_lag + 1]
        out += ac / (n - np.arange(max_lag + 1))
    return out / 2.0


def estimate_axial_sigma(vol: np.ndarray, factor: float, noise: Degradation | None = None,
                         max_planes: int = 32, chunk: int = 16) -> float:
    """The extra axial Gaussian blur (lateral pixels) beyond the lateral one, from the stack's correlations.

    For a statistically isotropic sample the covariance of the stack at a displacement ``d``
    along z equals the covariance at ``d`` along x of the same volume blurred along x by the extra
    axial blur (both are the object's autocorrelation convolved with the PSF's; a Gaussian along
    the displacement adds ``2 sigma**2`` to its width). Comparing *correlations* (covariance
    over variance) cancels the part of the PSF across the displacement, which otherwise differs
    (a lateral plane integrates the axial PSF out of plane).

    So: the real correlation between neighbouring acquired planes (displacement ``factor``
    lateral pixels, all voxels) is matched with the lateral autocovariance of the planes
    convolved with the autocorrelation of trial Gaussians (sigma*sqrt(2)), over its value at 0.
    Noise is white per voxel, so the neighbour covariance carries none of it; the variance at
    lag 0 has the noise model's mean variance (``noise``, a :class:`Degradation` whose noise part
    is set; None for none) taken out. Per-plane means are removed (depth-dependent brightness is
    not structure). The correlation is monotone in sigma, which is found on a 1/16 px grid up to
    ``3 * factor``.

    Measured on ``benchmarks/indep_phantoms.py`` stacks (49x160x160, F 4, 50 photons, three
    seeds each; ``/tmp`` experiment recorded in issue 13's notes): within 9 % for Gaussian PSFs on
    filaments, nuclei and membranes. For optical PSFs it returns the Gaussian with the same
    neighbour correlation, which their long axial tails make wider than the FWHM-matched one.
    """
    nz, ny, nx = vol.shape
    if nz < 2:
        raise InputError(f"the stack has {nz} z plane(s); estimating its axial blur needs at least {MIN_PLANES}: "
                         "pass the PSF (--psf FILE or --psf-fwhm Z Y X)")
    # neighbour-plane covariance over the whole stack, in chunks (bounded memory)
    acc, var, count, prev = 0.0, 0.0, 0, None
    for z0 in range(0, nz, chunk):
        c = np.asarray(vol[z0:z0 + chunk], np.float64)
        c = c - c.mean(axis=(1, 2), keepdims=True)
        if prev is not None:
            c = np.concatenate([prev, c])
        acc += float((c[:-1] * c[1:]).sum())
        sq = (c * c).sum(axis=(1, 2))
        var += float(0.5 * (sq[:-1] + sq[1:]).sum())  # the variance of the same pairs of planes
        count += (c.shape[0] - 1) * ny * nx
        prev = c[-1:]
    r1, var = acc / max(count, 1), var / max(count, 1)
    idx = np.unique(np.linspace(0, nz - 1, min(nz, max_planes)).round().astype(int))
    raw = np.asarray(vol[idx], np.float32)
    planes = raw - raw.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
    max_lag = min(ny, nx) // 2
    cov = _lateral_autocov(planes, max_lag)
    noise_var = float(noise.noise_var(raw).mean()) if noise is not None else 0.0
    cov[0] = max(cov[0] - noise_var, 1e-12)
    target = r1 / max(var - noise_var, 1e-12)  # correlation of neighbouring planes, noise taken out
    sym = np.concatenate([cov[:0:-1], cov])
    lags = np.arange(-max_lag, max_lag + 1, dtype=float)

    def rho(sigma: float) -> float:
        c = sym
        if sigma > 0:
            sa = sigma * math.sqrt(2.0)
            r = int(math.ceil(4 * sa))
            k = np.exp(-0.5 * (np.arange(-r, r + 1) / sa) ** 2)
            c = ndimage.convolve1d(sym, k / k.sum(), mode="constant")
        return float(np.interp(factor, lags, c) / c[max_lag])

    grid = np.arange(0.0, 3.0 * factor + 1e-9, 0.0625)
    vals = np.array([rho(float(s)) for s in grid])
    best = int(np.argmin(np.abs(vals - target)))
    if best == len(grid) - 1 and target > vals[-1]:
        log.warning("the axial blur estimate stopped at its limit, sigma %.2f px (3 z steps): neighbouring planes "
                    "are more alike than a Gaussian blur up to that explains (widefield haze, or structures "
                    "running along z); pass the PSF if you know it (--psf FILE or --psf-fwhm Z Y X)", grid[best])
    return float(grid[best])


def estimate_degradation(vol: np.ndarray, factor: float, *, lateral_um: float = 1.0,
                         name: str = "the stack", noise: bool = True) -> Degradation:
    """Estimate the blur and the noise of a normalised stack (ZYX), blind."""
    check_estimable(vol, factor, name)
    gain, offset = estimate_noise(vol) if noise else (0.0, 0.0)
    model = Degradation(factor=factor, noise_gain=gain, noise_offset=offset, lateral_um=lateral_um,
                        noise_source="estimated" if noise else "none")
    sigma = estimate_axial_sigma(vol, factor, model)
    model.axial_sigma_px = sigma
    log.info("%s: %s", name, model.describe())
    return model


def from_psf_fwhm(fwhm_um: tuple[float, float, float], voxel_size: tuple[float, float, float],
                  factor: float, source: BlurSource, **noise) -> Degradation:
    """The model for a user-given Gaussian PSF: the axial blur beyond the lateral one."""
    dxy = 0.5 * (voxel_size[1] + voxel_size[2])
    sz, sxy = fwhm_to_sigma(fwhm_um[0]) / dxy, fwhm_to_sigma(0.5 * (fwhm_um[1] + fwhm_um[2])) / dxy
    return Degradation(factor=factor, axial_sigma_px=math.sqrt(max(sz * sz - sxy * sxy, 0.0)),
                       blur_source=source, lateral_um=dxy, **noise)
