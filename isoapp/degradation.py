"""One degradation model per stack: axial blur, axial sampling and Poisson–Gaussian noise.

A real axial (xz/yz) plane of an anisotropic stack is a sharp plane that was

1. blurred along z by the part of the axial PSF beyond the lateral one,
2. sampled every ``F`` lateral pixels (the z step, at some phase), and
3. noised *after* the blur: Poisson shot noise plus Gaussian read noise, whose variance is
   ``gain * intensity + read**2`` (intensities normalised as restoration sees them).

:class:`Degradation` holds those three parts; every method trains on pairs made by it
(:mod:`isoapp.pairs`) and the held-out check (:mod:`isoapp.heldout`) uses it too. When the user
gives no PSF, :func:`estimate_degradation` estimates the blur and the noise blind from the stack:

* noise: a variance–mean fit on the smooth parts of the lateral planes, after Foi et al. (2008),
  "Practical Poissonian-Gaussian noise modeling and fitting for single-image raw-data", IEEE
  Trans. Image Process. 17(10):1737–1754 (Haar detail coefficients, smoothness selection, level
  sets of the local mean; here a robust per-level MAD and a non-negative least-squares line in
  place of their maximum-likelihood fit);
* blur: the Gaussian axial sigma whose synthetic axial planes, made from lateral crops with the
  same sampling and the *estimated noise topped up after the blur*, match the real axial planes'
  axial/lateral log power-spectrum ratio (:func:`isoapp.spectral.axial_log_spectrum`). Without
  the noise top-up, noisy stacks look less blurred than they are (the noise floor flattens the
  real axial spectrum), which halved the estimate at 100 photons.

Both estimates assume a sample without a preferred orientation between lateral and axial.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from .degrade import output_length, sample_along, sampling_matrices, sampling_phase
from .errors import InputError
from .psf import fwhm_to_sigma, gaussian_psf, sigma_to_fwhm
from .spectral import axial_log_spectrum

log = logging.getLogger(__name__)

BlurSource = Literal["estimated", "gaussian", "optical", "file", "nyquist", "none"]
MIN_PLANES = 5
MIN_LATERAL = 16
MIN_CROP = 8  # spectra of shorter crops say too little about the blur
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
        return np.clip(self.noise_gain * x + self.noise_offset, 0.0, None)

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
        std = np.sqrt(self.noise_var(x) * (1.0 - already)).astype(np.float32)
        return (x + std * rng.standard_normal(x.shape).astype(np.float32)).astype(np.float32)

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


# ----------------------------------------------------------------------------- sampling matrices
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
def _row_power(a: np.ndarray) -> np.ndarray:
    """Mean power spectrum along rows (axis 1) of mean-free, Hann-windowed crops ``(B, n, n)``."""
    a = a - a.mean(axis=(1, 2), keepdims=True)
    w = np.hanning(a.shape[1])[None, :, None]
    return (np.abs(np.fft.rfft(a * w, axis=1)) ** 2).mean(axis=(0, 2))


def estimate_axial_sigma(vol: np.ndarray, factor: float, noise: Degradation | None, rng: np.random.Generator,
                         n: int = 64, crops: int = 64, up: np.ndarray | None = None) -> float:
    """The extra axial Gaussian blur (lateral pixels) that makes lateral planes look axial.

    ``vol`` is the normalised stack (ZYX), ``up`` its linear z-interpolation by ``factor``
    (computed when not given). Lateral crops are blurred along rows by trial sigmas, sampled as
    acquired (random phase), topped up with the noise model's noise after the blur (``noise``:
    any :class:`Degradation` whose noise part is set; None for none) and interpolated back; the
    sigma whose axial/lateral log power-spectrum ratio best matches that of the real axial
    (xz/yz) crops of ``up`` wins.
    """
    up_len = up.shape[0] if up is not None else output_length(vol.shape[0], factor)

    def up_crop(z0: int, n: int, y: int | slice, x: int | slice) -> np.ndarray:
        """``up[z0:z0+n, y, x]`` without interpolating the whole stack (bounded memory on large stacks)."""
        if up is not None:
            return up[z0:z0 + n, y, x]
        pos = (z0 + np.arange(n)) / float(factor)
        a, b = int(np.floor(pos[0])), min(vol.shape[0], int(np.floor(pos[-1])) + 2)
        return sample_along(np.asarray(vol[a:b, y, x], np.float32), pos - a, axis=0, order=1)

    m = math.ceil(factor)
    n = min(n, up_len - 2 * m, vol.shape[1] - 2 * m, vol.shape[2] - 2 * m)
    if n < MIN_CROP:
        raise InputError(f"the stack {vol.shape} is too small to estimate its axial blur from spectra: it needs "
                         f"{MIN_CROP + 2 * m} z-interpolated planes and {MIN_CROP + 2 * m} pixels laterally; pass the "
                         "PSF (--psf FILE or --psf-fwhm Z Y X)")
    size = n + 2 * m

    def stat(a: np.ndarray) -> np.ndarray:
        return axial_log_spectrum(torch.from_numpy(np.ascontiguousarray(a, np.float32))[:, None]).numpy()

    real = []
    ny, nx = vol.shape[1], vol.shape[2]
    for _ in range(crops):
        z0 = int(rng.integers(up_len - n + 1))
        if rng.random() < 0.5:
            y, x0 = int(rng.integers(ny)), int(rng.integers(nx - n + 1))
            real.append(up_crop(z0, n, y, slice(x0, x0 + n)))
        else:
            x, y0 = int(rng.integers(nx)), int(rng.integers(ny - n + 1))
            real.append(up_crop(z0, n, slice(y0, y0 + n), x))
    real = np.stack(real)
    target = stat(real)
    # judge only the frequencies where the real axial signal stands above its noise floor: beyond,
    # both spectra are noise, and a small misfit of the noise model there would bias the sigma
    p_rows = _row_power(real)
    floor = float(np.median(p_rows[len(p_rows) // 2:]))
    use = np.nonzero(p_rows > 4.0 * floor)[0]
    use = use[use > 0] if len(use) > 3 else np.arange(1, len(p_rows))
    lat = np.stack([vol[int(rng.integers(vol.shape[0])), y:y + size, x:x + size]
                    for y, x in zip(rng.integers(0, vol.shape[1] - size + 1, crops),
                                    rng.integers(0, vol.shape[2] - size + 1, crops), strict=True)])
    # the real crops start at random interpolated planes, so their first acquired plane lies at
    # (-z0) mod F: draw the synthetic phases the same way (integer phases for integer F)
    phases = [sampling_phase(int(z0), factor, size) for z0 in rng.integers(0, 10_000, crops)]
    mats = [sampling_matrices(size, float(factor), round(ph, 3), m) for ph in phases]
    white = [rng.standard_normal((S.shape[0], size)).astype(np.float32) for S, _ in mats]
    noisy = noise is not None and noise.has_noise
    best, best_err = 0.0, float("inf")
    for sigma in np.arange(0.0, 3.0 * factor + 1e-9, 0.125):
        b = ndimage.gaussian_filter1d(lat, sigma, axis=1, mode="reflect") if sigma > 0 else lat
        keep = kernel_energy(float(sigma))
        fake = []
        for i, (S, U) in enumerate(mats):
            s = S @ b[i]
            if noisy and keep < 1.0:
                s = s + np.sqrt(noise.noise_var(s) * (1.0 - keep)) * white[i]
            fake.append(U @ s)
        err = float(np.abs(stat(np.stack(fake)[:, :, m:size - m]) - target)[use].mean())
        if err < best_err:
            best, best_err = float(sigma), err
    return best


def estimate_degradation(vol: np.ndarray, factor: float, *, lateral_um: float = 1.0, seed: int = 0,
                         name: str = "the stack", noise: bool = True) -> Degradation:
    """Estimate the blur and the noise of a normalised stack (ZYX), blind."""
    check_estimable(vol, factor, name)
    gain, offset = estimate_noise(vol) if noise else (0.0, 0.0)
    model = Degradation(factor=factor, noise_gain=gain, noise_offset=offset, lateral_um=lateral_um,
                        noise_source="estimated" if noise else "none")
    sigma = estimate_axial_sigma(vol, factor, model, np.random.default_rng(seed + 7))
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
