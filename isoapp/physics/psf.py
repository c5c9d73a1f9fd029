"""Point spread functions: Gaussian models, measured PSFs and the IsoNet rotated/split kernels.

Conventions
-----------
* Arrays are ZYX (3D) or YX (2D), sum-normalised and centred on the central voxel
  (``(s - 1) / 2`` along every axis; default shapes are odd).
* Sigmas are in pixels unless a name says ``_um``; FWHM = ``2 sqrt(2 ln 2)`` sigma.
* The IsoNet kernels (:func:`rotated_psf`, :func:`split_psf`, :func:`isonet_kernels`) expect a
  3D PSF sampled on the *isotropic lateral* grid (``dxy`` along z, y and x). A PSF measured
  with a coarser z step is brought onto that grid by :func:`resample_psf_isotropic`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..core.errors import ConfigError, InputError
from .profile import fwhm_profile

log = logging.getLogger(__name__)

FWHM_FACTOR = 2.0 * math.sqrt(2.0 * math.log(2.0))
"""FWHM / sigma of a Gaussian, ``2 sqrt(2 ln 2) ≈ 2.3548``."""



def fwhm_to_sigma(f: float) -> float:
    """Gaussian sigma of a full width at half maximum ``f`` (same unit)."""
    return float(f) / FWHM_FACTOR


def sigma_to_fwhm(s: float) -> float:
    """Full width at half maximum of a Gaussian of standard deviation ``s`` (same unit)."""
    return float(s) * FWHM_FACTOR


# ----------------------------------------------------------------------------- Gaussian models
def default_shape(sigma: Sequence[float], truncate: float = 4.0) -> tuple[int, ...]:
    """Odd kernel shape ``2 * ceil(truncate * sigma) + 1`` per axis (1 for sigma 0)."""
    return tuple(2 * int(math.ceil(truncate * float(s) - 1e-9)) + 1 if s > 0 else 1 for s in sigma)


def gaussian_psf(sigma: tuple[float, ...], shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A sampled, sum-normalised, centred Gaussian kernel.

    Parameters
    ----------
    sigma
        Standard deviation per axis in pixels; its length (2 or 3) sets the dimensionality.
        A sigma of 0 gives a delta (no blur) along that axis.
    shape
        Kernel shape; default odd, ``2 * ceil(4 sigma) + 1`` per axis (truncation at 4 sigma
        like :func:`scipy.ndimage.gaussian_filter`), at least 1. The centre is ``(s - 1) / 2``.

    Returns
    -------
    np.ndarray
        float32 kernel summing to 1.
    """
    sigma = tuple(float(s) for s in sigma)
    if len(sigma) not in (1, 2, 3):
        raise ConfigError(f"a Gaussian PSF needs 1, 2 or 3 sigmas, got {len(sigma)}")
    if not all(np.isfinite(s) and s >= 0 for s in sigma):
        raise ConfigError(f"PSF sigmas must be finite and >= 0 pixels, got {sigma}")
    if shape is None:
        shape = default_shape(sigma)
    shape = tuple(int(s) for s in shape)
    if len(shape) != len(sigma) or any(s < 1 for s in shape):
        raise ConfigError(f"PSF shape {shape} does not fit sigma {sigma}: one positive size per axis")
    profiles = []
    for s, n in zip(sigma, shape, strict=True):
        r = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        if s > 0:
            p = np.exp(-0.5 * (r / s) ** 2)
        else:
            p = (np.abs(r) < 0.5 + 1e-9).astype(np.float64)
            if p.sum() == 0:  # even size: split the delta over the two central pixels
                p = (np.abs(r) <= 0.5 + 1e-9).astype(np.float64)
        profiles.append(p / p.sum())
    out = profiles[0]
    for p in profiles[1:]:
        out = np.multiply.outer(out, p)
    return (out / out.sum()).astype(np.float32)


def gaussian_psf_from_fwhm(
    fwhm_um: Sequence[float], voxel_size: Sequence[float], shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """A Gaussian PSF of the given FWHM ``(z, y, x)`` in µm sampled at ``voxel_size`` ``(z, y, x)`` µm."""
    if len(fwhm_um) != len(voxel_size):
        raise ConfigError(f"FWHM {tuple(fwhm_um)} and voxel size {tuple(voxel_size)} differ in length")
    if any(v <= 0 for v in voxel_size):
        raise ConfigError(f"voxel size must be positive, got {tuple(voxel_size)}")
    sigma = tuple(fwhm_to_sigma(f) / v for f, v in zip(fwhm_um, voxel_size, strict=True))
    return gaussian_psf(sigma, shape)


# ----------------------------------------------------------------------------- measured PSFs
def _border_median(a: np.ndarray) -> float:
    faces = []
    for ax in range(a.ndim):
        faces.append(np.take(a, [0, a.shape[ax] - 1], axis=ax).ravel())
    return float(np.median(np.concatenate(faces)))


def centre_of_mass(a: np.ndarray) -> np.ndarray:
    """Centre of mass of a non-negative array, in pixel coordinates."""
    return np.asarray(ndimage.center_of_mass(np.asarray(a, dtype=np.float64)), dtype=np.float64)


def prepare_psf(array: np.ndarray, *, background: str | float = "auto") -> np.ndarray:
    """Clean a measured 3D PSF: background, clipping, centring and normalisation.

    Parameters
    ----------
    array
        3D ZYX bead image.
    background
        ``'auto'`` subtracts the median of the border voxels; a number subtracts that value;
        ``0`` keeps the data.

    Returns
    -------
    np.ndarray
        float32 PSF with odd shape (even axes gain one zero plane), non-negative, summing to 1,
        whose centre of mass lies on the central voxel (sub-pixel shift by cubic spline).

    Raises
    ------
    InputError
        If the PSF is not 3D, holds NaN/Inf, or is empty after background removal.
    """
    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 3:
        raise InputError(f"a PSF must be a 3D (Z, Y, X) stack of a bead, got shape {a.shape}")
    if a.size == 0:
        raise InputError("the PSF is empty")
    if not np.isfinite(a).all():
        raise InputError("the PSF contains NaN or Inf values; clean the bead image first")
    if isinstance(background, str):
        if background != "auto":
            raise ConfigError(f"background must be 'auto' or a number, got {background!r}")
        bg = _border_median(a)
    else:
        bg = float(background)
    a = np.clip(a - bg, 0.0, None)
    pad = [(0, 1 - s % 2) for s in a.shape]
    if any(p[1] for p in pad):
        a = np.pad(a, pad)
    total = a.sum()
    if not total > 0:
        raise InputError("the PSF is all zero after background subtraction; is it the right file?")
    a /= total
    centre = (np.asarray(a.shape) - 1) / 2.0
    off = centre - centre_of_mass(a)
    if np.max(np.abs(off)) > 1.0:
        log.warning("the PSF's bead sits %s voxels (z, y, x) off the centre of its image; centred it (check that "
                    "the image holds one bead)", ", ".join(f"{-v:+.1f}" for v in off))
    for _ in range(2):  # spline shifts are not exactly mass preserving; a second pass refines
        shift = centre - centre_of_mass(a)
        if np.max(np.abs(shift)) < 1e-3:
            break
        a = np.clip(ndimage.shift(a, shift, order=3, mode="constant", cval=0.0), 0.0, None)
        a /= a.sum()
    log.debug("prepared PSF %s, background %.4g", a.shape, bg)
    return a.astype(np.float32)


def load_psf(path: str | Path, *, background: str | float = "auto") -> np.ndarray:
    """Read a measured 3D PSF (bead) file and clean it with :func:`prepare_psf`.

    Parameters
    ----------
    path
        Any file :func:`isoapp.data.io.read_volume` reads (TIFF, HDF5, Zarr...), single channel.
    background
        See :func:`prepare_psf`.

    Raises
    ------
    InputError
        Unreadable, not 3D, multi-channel, empty or NaN PSF.
    """
    from ..data.io import read_volume

    vol = read_volume(path)
    if vol.n_channels != 1 or vol.n_timepoints != 1:
        raise InputError(
            f"{path}: the PSF file has {vol.n_channels} channel(s) and {vol.n_timepoints} time point(s); "
            "save a single 3D bead stack"
        )
    data = np.asarray(vol.channel(0, 0).data[...])
    return prepare_psf(data, background=background)


def psf_fwhm(psf: np.ndarray) -> tuple[float, ...]:
    """FWHM per axis in pixels from the second moment of each marginal profile.

    Exact for Gaussians; for other shapes it is the FWHM of the Gaussian with the same
    variance. Negative values are ignored.
    """
    a = np.clip(np.asarray(psf, dtype=np.float64), 0.0, None)
    if a.sum() <= 0:
        raise InputError("cannot measure the FWHM of an all-zero PSF")
    out = []
    for ax in range(a.ndim):
        prof = a.sum(axis=tuple(i for i in range(a.ndim) if i != ax))
        r = np.arange(prof.size, dtype=np.float64)
        m = (prof * r).sum() / prof.sum()
        var = (prof * (r - m) ** 2).sum() / prof.sum()
        out.append(sigma_to_fwhm(math.sqrt(max(var, 0.0))))
    return tuple(out)


def psf_core_fwhm(psf: np.ndarray) -> tuple[float, ...]:
    """FWHM per axis in pixels of the PSF's core: Gaussian fits to the lines through its peak.

    Unlike :func:`psf_fwhm` (second moments of the marginals) it ignores what lies outside the
    core: a widefield PSF's defocus haze keeps the same energy in every plane, so its axial
    marginal is nearly flat and its second moment grows with the kernel's extent. Falls back to
    :func:`psf_fwhm` on an axis whose fit fails.
    """
    a = np.clip(np.asarray(psf, dtype=np.float64), 0.0, None)
    peak = np.unravel_index(int(np.argmax(a)), a.shape)
    moments = psf_fwhm(a)
    out = []
    for ax in range(a.ndim):
        line = np.moveaxis(a, ax, -1)[tuple(np.delete(np.asarray(peak), ax))]
        f = fwhm_profile(line) if line.size >= 5 else float("nan")
        out.append(f if np.isfinite(f) and 0 < f < line.size else moments[ax])
    return tuple(out)


def psf_axial_sigma(psf_iso: np.ndarray) -> float:
    """The axial blur beyond the lateral one of a 3D PSF (Gaussian sigma, lateral pixels), from its core's FWHMs."""
    fz, fy, fx = psf_core_fwhm(psf_iso)
    sz, sxy = fwhm_to_sigma(fz), fwhm_to_sigma(0.5 * (fy + fx))
    return float(np.sqrt(max(sz * sz - sxy * sxy, 0.0)))


def resample_psf_isotropic(
    psf: np.ndarray, voxel_size: Sequence[float], *, order: int = 3
) -> np.ndarray:
    """Resample a 3D PSF sampled at ``voxel_size`` (z, y, x) onto the isotropic grid of pixel ``dx``.

    Sampling about the central voxel keeps the PSF centred; the output shape is odd and covers
    the same physical extent. Negative spline ringing is clipped and the result sums to 1.
    """
    a = np.asarray(psf, dtype=np.float64)
    if a.ndim != 3:
        raise InputError(f"a 3D PSF is required, got shape {a.shape}")
    vs = np.asarray([float(v) for v in voxel_size], dtype=np.float64)
    if vs.shape != (3,) or np.any(vs <= 0):
        raise ConfigError(f"voxel size must be three positive numbers (z, y, x), got {voxel_size}")
    target = vs[2]
    grids = []
    for n, v in zip(a.shape, vs, strict=True):
        c_in = (n - 1) / 2.0
        half = int(math.floor(c_in * v / target + 1e-9))
        grids.append(c_in + np.arange(-half, half + 1, dtype=np.float64) * target / v)
    if np.allclose(vs, target):
        out = a
    else:
        coords = np.meshgrid(*grids, indexing="ij")
        out = ndimage.map_coordinates(a, coords, order=order, mode="constant", cval=0.0)
    out = np.clip(out, 0.0, None)
    if out.sum() <= 0:
        raise InputError("the resampled PSF is empty")
    return (out / out.sum()).astype(np.float32)


def psf_on_input_grid(psf_iso: np.ndarray, factor: float) -> np.ndarray:
    """Resample an isotropic-grid PSF to the input's z step (``factor`` lateral pixels)."""
    from .forward import sample_along

    n = psf_iso.shape[0]
    c = n // 2
    k = int((n // 2) // factor)
    pos = c + np.arange(-k, k + 1) * factor
    out = np.clip(sample_along(np.asarray(psf_iso, np.float32), pos, axis=0, order=1), 0, None)
    return (out / out.sum()).astype(np.float32)
