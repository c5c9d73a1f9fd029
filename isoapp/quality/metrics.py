"""Image-quality metrics: PSNR, SSIM, MS-SSIM, NRMSE and Fourier isotropy.

PSNR, SSIM and NRMSE are scikit-image's (``skimage.metrics``); this module adds what it lacks:
the normalisations below, MS-SSIM in 2D and 3D, per-plane means and the Fourier isotropy.
FWHM fits live in :mod:`isoapp.quality.fwhm` and segmentation / SEG in :mod:`isoapp.quality.segmentation`;
both are re-exported here.

Normalisation (the ``normalize`` argument of the metric functions)
------------------------------------------------------------------
``'none'``
    Arrays are compared as given; ``data_range`` defaults to ``ref.max() - ref.min()``.
``'percentile'``
    Both arrays are mapped independently with :func:`normalize_percentile` (2, 99.8);
    ``data_range`` defaults to 1.
``'minmse'``
    Both arrays are mapped with :func:`normalize_percentile`, then the image is fitted to the
    reference with :func:`normalize_minmse` (``alpha * img + beta`` by least squares, as CSBDeep). This
    makes PSNR fair across methods whose outputs have different intensity scales; identical
    inputs give PSNR ``inf`` and SSIM 1. ``data_range`` defaults to 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from ..core.errors import InputError
from .fwhm import bead_fwhm, fwhm_profile, line_fwhm, tube_fwhm_mismatch, tube_widths
from .segmentation import otsu_threshold, seg_score, segment

log = logging.getLogger(__name__)

Normalize = Literal["none", "percentile", "minmse"]
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

__all__ = [
    "normalize_percentile", "normalize_minmse", "psnr", "ssim", "ms_ssim", "nrmse", "per_plane",
    "plane_metrics", "compute_metrics", "fourier_cutoff", "fourier_isotropy", "seg_score", "segment",
    "otsu_threshold", "fwhm_profile", "bead_fwhm", "line_fwhm", "tube_widths", "tube_fwhm_mismatch",
]


# ---------------------------------------------------------------------------- normalisation
def normalize_percentile(x: np.ndarray, pmin: float = 2.0, pmax: float = 99.8, clip: bool = False,
                         eps: float = 1e-20) -> np.ndarray:
    """Map the ``pmin`` / ``pmax`` percentiles of ``x`` to 0 / 1 (CSBDeep ``normalize``).

    Returns float64; ``clip=True`` clips the result to [0, 1].
    """
    x = np.asarray(x, dtype=np.float64)
    mi, ma = np.percentile(x, [pmin, pmax])
    out = (x - mi) / (ma - mi + eps)
    return np.clip(out, 0.0, 1.0) if clip else out


def normalize_minmse(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Return ``alpha * x + beta`` with the least-squares error to ``target`` (CSBDeep).

    ``x`` identical to ``target`` is returned unchanged (alpha 1, beta 0 exactly). A constant
    ``x`` becomes the mean of ``target``.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    _check_same_shape(x, t)
    xm, tm = x.mean(), t.mean()
    xc = (x - xm).ravel()
    var = float(np.dot(xc, xc))
    alpha = float(np.dot(xc, (t - tm).ravel())) / var if var > 0 else 0.0
    return alpha * x + (tm - alpha * xm)


def _check_same_shape(ref: np.ndarray, img: np.ndarray) -> None:
    if ref.shape != img.shape:
        raise InputError(f"the reference has shape {ref.shape} but the image has shape {img.shape}; "
                         "metrics need both on the same grid")


def _prepare(ref, img, normalize: str, data_range: float | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Apply the normalisation and resolve ``data_range`` (see the module docstring)."""
    ref = np.asarray(ref)
    img = np.asarray(img)
    _check_same_shape(ref, img)
    if normalize == "none":
        r, i = ref.astype(np.float64), img.astype(np.float64)
        dr = float(r.max() - r.min()) if data_range is None else float(data_range)
    elif normalize == "percentile":
        r, i = normalize_percentile(ref), normalize_percentile(img)
        dr = 1.0 if data_range is None else float(data_range)
    elif normalize == "minmse":
        r = normalize_percentile(ref)
        i = normalize_minmse(normalize_percentile(img), r)
        dr = 1.0 if data_range is None else float(data_range)
    else:
        raise ValueError(f"normalize must be 'none', 'percentile' or 'minmse', got {normalize!r}")
    if not dr > 0:
        dr = 1.0  # a constant reference: any positive range keeps the formulas finite
    return r, i, dr


# ---------------------------------------------------------------------------- pixel metrics
def psnr(ref, img, *, data_range: float | None = None, normalize: Normalize = "none") -> float:
    """Peak signal-to-noise ratio in dB (``skimage.metrics.peak_signal_noise_ratio``); ``inf`` if identical."""
    r, i, dr = _prepare(ref, img, normalize, data_range)
    if np.array_equal(r, i):
        return float("inf")
    return float(peak_signal_noise_ratio(r, i, data_range=dr))


def nrmse(ref, img, normalization: Literal["euclidean", "min-max", "mean"] = "euclidean") -> float:
    """Normalised root-mean-square error (``skimage.metrics.normalized_root_mse``).

    ``'euclidean'`` divides by ``sqrt(mean(ref**2))``, ``'min-max'`` by the range of ``ref``
    and ``'mean'`` by its mean.
    """
    r = np.asarray(ref, dtype=np.float64)
    i = np.asarray(img, dtype=np.float64)
    _check_same_shape(r, i)
    if normalization not in ("euclidean", "min-max", "mean"):
        raise ValueError(f"unknown normalization {normalization!r}")
    return float(normalized_root_mse(r, i, normalization=normalization))


def _check_window(shape: Sequence[int], win_size: int) -> None:
    if win_size % 2 != 1 or win_size < 3:
        raise InputError(f"the SSIM window must be odd and at least 3 (got {win_size}); every axis of "
                         f"the image {tuple(shape)} needs at least 3 samples")
    if min(shape) < win_size:
        raise InputError(f"the image {tuple(shape)} is smaller than the SSIM window ({win_size}); "
                         "use a smaller win_size or a larger image")


def ssim(ref, img, *, data_range: float | None = None, normalize: Normalize = "none", win_size: int = 7,
         gaussian: bool = False) -> float:
    """Mean structural similarity in 2D or 3D (``skimage.metrics.structural_similarity``).

    Uniform ``win_size`` window with sample covariance (scikit-image defaults, K1=0.01,
    K2=0.03); ``gaussian=True`` uses the 11-tap sigma-1.5 Gaussian window of Wang et al.
    with population covariance. The border of half a window is excluded from the mean.
    """
    r, i, dr = _prepare(ref, img, normalize, data_range)
    _check_window(r.shape, 11 if gaussian else win_size)
    return float(structural_similarity(r, i, data_range=dr, win_size=None if gaussian else win_size,
                                       gaussian_weights=gaussian, use_sample_covariance=not gaussian))


def _ssim_maps(r: np.ndarray, i: np.ndarray, dr: float, win_size: int,
               k1: float = 0.01, k2: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """Luminance and contrast-structure maps (uniform window, cropped by its radius).

    MS-SSIM needs the contrast-structure term alone, which scikit-image does not return; the
    product of the two maps is scikit-image's SSIM map (checked in the tests).
    """
    _check_window(r.shape, win_size)
    n = win_size ** r.ndim
    cov_norm = n / (n - 1.0)

    def filt(a):
        return ndimage.uniform_filter(a, size=win_size)

    ux, uy = filt(r), filt(i)
    vx = cov_norm * (filt(r * r) - ux * ux)
    vy = cov_norm * (filt(i * i) - uy * uy)
    vxy = cov_norm * (filt(r * i) - ux * uy)
    c1, c2 = (k1 * dr) ** 2, (k2 * dr) ** 2
    lum = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1)
    cs = (2 * vxy + c2) / (vx + vy + c2)
    pad = (win_size - 1) // 2
    crop = tuple(slice(pad, s - pad) for s in r.shape)
    return lum[crop], cs[crop]


def _ms_scales(shape: Sequence[int], win_size: int, n_weights: int) -> int:
    """Number of scales such that the coarsest image still holds one SSIM window."""
    m = 1
    while m < n_weights and min(shape) // 2 ** m >= win_size:
        m += 1
    return m


def ms_ssim(ref, img, *, data_range: float | None = None, normalize: Normalize = "none",
            weights: Sequence[float] = MS_SSIM_WEIGHTS, win_size: int = 7, per_plane: bool = False) -> float:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) in 2D or 3D.

    Scale j uses the image average-pooled by 2**j along every axis. The result is
    ``prod_j cs_j ** w_j * l_M ** w_M`` (contrast-structure at every scale, luminance at the
    coarsest), with negative terms clipped to 0. **Small images**: scales are dropped from the
    coarse end until the coarsest image still has at least ``win_size`` samples along its
    shortest axis, and the remaining weights are renormalised to sum to 1 (one scale is plain
    SSIM). ``per_plane=True`` on a 3D input averages the 2D MS-SSIM of its z planes.
    """
    r, i, dr = _prepare(ref, img, normalize, data_range)
    if per_plane and r.ndim == 3:
        return float(np.mean([ms_ssim(r[k], i[k], data_range=dr, weights=weights, win_size=win_size)
                              for k in range(r.shape[0])]))
    m = _ms_scales(r.shape, win_size, len(weights))
    w = np.asarray(weights[:m], dtype=np.float64)
    w = w / w.sum()
    if m < len(weights):
        log.debug("ms_ssim: image %s allows %d of %d scales", r.shape, m, len(weights))
    result = 1.0
    for j in range(m):
        lum, cs = _ssim_maps(r, i, dr, win_size)
        val = float(np.mean(lum * cs)) if j == m - 1 else float(np.mean(cs))
        result *= max(val, 0.0) ** w[j]
        if j < m - 1:
            r, i = _pool2(r), _pool2(i)
    return float(result)


def _pool2(a: np.ndarray) -> np.ndarray:
    """2x average pooling along every axis (an odd trailing sample is dropped)."""
    a = a[tuple(slice(0, (s // 2) * 2) for s in a.shape)]
    shape = [v for s in a.shape for v in (s // 2, 2)]
    return a.reshape(shape).mean(axis=tuple(range(1, 2 * a.ndim, 2)))


# ---------------------------------------------------------------------------- per plane / all
def per_plane(metric: Callable[..., float], ref, img, axis: int = 0, **kwargs) -> np.ndarray:
    """``metric(ref_plane, img_plane, **kwargs)`` for every plane perpendicular to ``axis``."""
    r, i = np.asarray(ref), np.asarray(img)
    _check_same_shape(r, i)
    return np.array([metric(np.take(r, k, axis=axis), np.take(i, k, axis=axis), **kwargs)
                     for k in range(r.shape[axis])], dtype=np.float64)


def plane_metrics(ref, img, *, normalize: Normalize = "minmse", data_range: float | None = None) -> dict:
    """Mean PSNR and SSIM over the XY (axis 0), XZ (axis 1) and YZ (axis 2) planes.

    The normalisation is applied to the whole volumes first. The SSIM window shrinks to the
    largest odd size that fits the planes (at most 7); PSNR means are over finite planes
    (``inf`` if every plane is identical). Keys: ``psnr_xy, ssim_xy, psnr_xz, ...``.
    """
    r, i, dr = _prepare(ref, img, normalize, data_range)
    out: dict[str, float] = {}
    for axis, name in ((0, "xy"), (1, "xz"), (2, "yz")):
        plane_shape = [s for k, s in enumerate(r.shape) if k != axis]
        p = per_plane(psnr, r, i, axis, data_range=dr)
        out[f"psnr_{name}"] = float(np.mean(p[np.isfinite(p)])) if np.isfinite(p).any() else float("inf")
        win = min(7, min(plane_shape) - (1 - min(plane_shape) % 2))
        out[f"ssim_{name}"] = (float(np.mean(per_plane(ssim, r, i, axis, data_range=dr, win_size=win)))
                               if win >= 3 else float("nan"))
    return out


def compute_metrics(ref, img, *, normalize: Normalize = "minmse", data_range: float | None = None,
                    per_plane: bool = False) -> dict:
    """PSNR, SSIM, MS-SSIM and NRMSE of ``img`` against ``ref``.

    Default (``'minmse'``): both are percentile-normalised (2, 99.8), so the reference spans
    about [0, 1], then the image is fitted to the reference by least squares, and ``data_range`` is 1 (see the module
    docstring for the other modes). NRMSE (euclidean) is computed on the normalised pair.
    ``per_plane=True`` adds :func:`plane_metrics` keys. Returns plain floats (PSNR may be ``inf``)
    plus ``normalize`` and ``data_range``.
    """
    r, i, dr = _prepare(ref, img, normalize, data_range)
    win = min(7, min(r.shape) - (1 - min(r.shape) % 2))
    out: dict = {
        "psnr": psnr(r, i, data_range=dr),
        "ssim": ssim(r, i, data_range=dr, win_size=win),
        "ms_ssim": ms_ssim(r, i, data_range=dr, win_size=win),
        "nrmse": nrmse(r, i),
        "normalize": normalize,
        "data_range": dr,
    }
    if per_plane and r.ndim == 3:
        out.update(plane_metrics(r, i, normalize="none", data_range=dr))
    return out


# ---------------------------------------------------------------------------- Fourier isotropy
def _axis_log_power(vol: np.ndarray, axis: int) -> np.ndarray:
    """log10 of the power spectrum summed over all axes but ``axis``, folded to |k| bins."""
    x = np.asarray(vol, dtype=np.float64)
    x = x - x.mean()
    for ax, n in enumerate(x.shape):  # Hann taper: no edge-discontinuity cross in the spectrum
        shape = [1] * x.ndim
        shape[ax] = n
        x = x * np.hanning(n + 2)[1:-1].reshape(shape)
    p = np.abs(np.fft.fftn(x)) ** 2
    prof = p.sum(axis=tuple(a for a in range(x.ndim) if a != axis))
    n = prof.size
    idx = np.minimum(np.arange(n), n - np.arange(n))
    folded = np.bincount(idx, weights=prof) / np.bincount(idx)
    return np.log10(folded + 1e-300)


def fourier_cutoff(vol, voxel_size: Sequence[float] = (1.0, 1.0, 1.0), axis: int = 0,
                   threshold: float = 2.0, margin: float = 0.3) -> float:
    """Cut-off frequency (cycles/µm) of ``vol`` along ``axis`` from its power spectrum.

    Estimator: the Hann-windowed power spectrum is summed over the other axes and folded to
    |k|; its log10 ``S(k)`` is smoothed over 3 bins. The reference level ``S0`` is the
    maximum over k > 0 and the noise floor is the minimum of ``S``. The cut-off is the first
    frequency above the peak where ``S`` falls below ``max(S0 - threshold, floor + margin)``
    (linear interpolation between bins): ``threshold`` decades below the low-frequency power,
    or where the signal reaches the noise floor, whichever comes first. Returns the Nyquist
    frequency if ``S`` never falls that far or is flat (``S0 - floor < 2 * margin``).
    """
    vol = np.asarray(vol)
    n = vol.shape[axis]
    d = float(voxel_size[axis])
    if n < 8:
        raise InputError(f"axis {axis} has only {n} samples; the Fourier cut-off needs at least 8")
    s = _axis_log_power(vol, axis)
    s = np.convolve(np.pad(s, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    k = np.arange(s.size) / (n * d)
    peak = 1 + int(np.argmax(s[1:]))
    floor = float(s[1:].min())
    if s[peak] - floor < 2 * margin:  # flat spectrum: content up to Nyquist
        return float(k[-1])
    level = max(s[peak] - threshold, floor + margin)
    below = np.nonzero(s[peak:] < level)[0]
    if below.size == 0:
        return float(k[-1])
    j = peak + int(below[0])
    s0, s1 = s[j - 1], s[j]
    frac = (s0 - level) / (s0 - s1) if s0 != s1 else 0.0
    return float(k[j - 1] + frac * (k[j] - k[j - 1]))


def fourier_isotropy(vol, voxel_size: Sequence[float] = (1.0, 1.0, 1.0), threshold: float = 2.0) -> dict:
    """Cut-off frequencies along z, y, x (:func:`fourier_cutoff`) and ``ratio_z = kz / mean(ky, kx)``.

    About 1 for an isotropic volume on an isotropic grid, well below 1 for one blurred along z.
    """
    k = [fourier_cutoff(vol, voxel_size, a, threshold) for a in range(3)]
    return {"kz": k[0], "ky": k[1], "kx": k[2], "ratio_z": k[0] / (0.5 * (k[1] + k[2]))}
