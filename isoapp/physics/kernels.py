"""IsoNet's kernels: the PSF's axial section rotated into a lateral plane, and its split form.

A sharp lateral plane convolved with :func:`model_kernel` looks like an axial (xz/yz) plane of the
stack; the plane-wise methods train on such pairs and the held-out check degrades with it
(Weigert et al., "Isotropic reconstruction of 3D fluorescence microscopy images using
convolutional neural networks", MICCAI 2017).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy import signal

from ..core.errors import ConfigError, InputError
from .psf import resample_psf_isotropic

log = logging.getLogger(__name__)

def _centre_index(a: np.ndarray) -> tuple[int, ...]:
    return tuple(s // 2 for s in a.shape)


def rotated_psf(psf3d: np.ndarray, factor: float | None = None, axis: str = "x") -> np.ndarray:
    """The IsoNet kernel ``h_rot``: the axial section of the PSF rotated into a lateral plane.

    The xz (``axis='x'``) or yz (``axis='y'``) section through the centre of the 3D PSF is
    rotated by 90° so that its axial extent lies along that lateral axis: the result is a
    2D ``(Y, X)`` kernel whose long direction is x for ``axis='x'`` and y for ``axis='y'``.
    Blurring a lateral plane with it imitates the axial blur (Weigert et al., IsoNet 2017).

    Parameters
    ----------
    psf3d
        ZYX PSF sampled on the isotropic lateral grid (``dxy`` along all axes). A measured PSF
        with a coarser z step can be brought there with :func:`resample_psf_isotropic`.
    factor
        If given, ``psf3d`` is sampled with a z step ``factor`` times its lateral pixel and is
        resampled to the isotropic grid first.
    axis
        ``'x'`` or ``'y'``.

    Returns
    -------
    np.ndarray
        float32 2D kernel summing to 1.
    """
    p = np.asarray(psf3d, dtype=np.float64)
    if p.ndim != 3:
        raise InputError(f"rotated_psf needs a 3D PSF, got shape {p.shape}")
    if factor is not None:
        if not factor > 0:
            raise ConfigError(f"the anisotropy factor must be > 0, got {factor}")
        p = resample_psf_isotropic(p, (float(factor), 1.0, 1.0)).astype(np.float64)
    cz, cy, cx = _centre_index(p)
    if axis == "x":
        section = p[:, cy, :].T  # (X, Z): rows become y, the axial extent runs along x
    elif axis == "y":
        section = p[:, :, cx]  # (Z, Y): rows (the new y) carry the axial extent
    else:
        raise ConfigError(f"axis must be 'x' or 'y', got {axis!r}")
    section = np.clip(section, 0.0, None)
    if section.sum() <= 0:
        raise InputError("the central section of the PSF is empty; centre the PSF first (prepare_psf)")
    return (section / section.sum()).astype(np.float32)


def _pad_to(a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Zero-pad ``a`` symmetrically (centre kept at ``s // 2``) to ``shape``."""
    pads = []
    for s, t in zip(a.shape, shape, strict=True):
        before = t // 2 - s // 2
        pads.append((before, t - s - before))
    return np.pad(a, pads)


def split_psf(
    h_rot: np.ndarray, h_iso: np.ndarray, eps: float = 1e-3, *, n_iter: int = 1000, tol: float = 2e-3
) -> np.ndarray:
    """The kernel ``h_split`` with ``h_rot = h_iso ⊗ h_split`` (IsoNet 'split' mode).

    A regularised (Wiener-like) Fourier division
    ``H_split = H_rot conj(H_iso) / (|H_iso|² + eps max|H_iso|²)`` on a common zero-padded odd
    grid gives the first estimate (clipped to >= 0). Because the regulariser low-passes the
    quotient (ringing, lost mass after clipping), the estimate is then refined by
    multiplicative Richardson-Lucy updates, which keep it non-negative and normalised, until
    ``max|h_iso ⊗ h_split - h_rot| <= tol max(h_rot)`` or ``n_iter`` updates. For Gaussians the
    result is the Gaussian with ``σ_split² = σ_rot² − σ_iso²`` per axis.

    Parameters
    ----------
    h_rot, h_iso
        Centred kernels of the same dimensionality (2D or 3D), e.g. :func:`rotated_psf` and
        the lateral section of the PSF.
    eps
        Regulariser of the initial division, relative to the peak of ``|H_iso|²``.
    n_iter, tol
        Refinement budget and target residual (relative to the peak of ``h_rot``).

    Returns
    -------
    np.ndarray
        float32 kernel on the common odd grid, non-negative, summing to 1.
    """
    a = np.asarray(h_rot, dtype=np.float64)
    b = np.asarray(h_iso, dtype=np.float64)
    if a.ndim != b.ndim:
        raise ConfigError(f"h_rot {a.shape} and h_iso {b.shape} must have the same number of dimensions")
    if not eps > 0:
        raise ConfigError(f"eps must be > 0, got {eps}")
    if a.sum() <= 0 or b.sum() <= 0:
        raise InputError("h_rot and h_iso must have a positive sum")
    shape = [max(s, t) for s, t in zip(a.shape, b.shape, strict=True)]
    shape = [s + 1 - s % 2 for s in shape]
    a = _pad_to(np.clip(a, 0.0, None) / a.sum(), shape)
    b = _pad_to(np.clip(b, 0.0, None) / b.sum(), shape)
    fa = np.fft.fftn(np.fft.ifftshift(a))
    fb = np.fft.fftn(np.fft.ifftshift(b))
    power = np.abs(fb) ** 2
    fs = fa * np.conj(fb) / (power + eps * power.max())
    out = np.clip(np.fft.fftshift(np.real(np.fft.ifftn(fs))), 0.0, None)
    if out.sum() <= 0:
        raise InputError("the split PSF is empty: h_iso is wider than h_rot")
    out /= out.sum()
    b_flip = b[(slice(None, None, -1),) * b.ndim]
    peak = a.max()
    for i in range(int(n_iter)):
        est = signal.fftconvolve(out, b, mode="same")
        if np.abs(est - a).max() <= tol * peak:
            log.debug("split_psf converged after %d updates", i)
            break
        out = out * signal.fftconvolve(a / np.maximum(est, 1e-12 * peak), b_flip, mode="same")
        out = np.clip(out, 0.0, None)
        out /= out.sum()
    return out.astype(np.float32)


def isonet_kernels(psf3d: np.ndarray, mode: Literal["full", "split"] = "full", axis: str = "x") -> np.ndarray:
    """The 2D kernel that turns a lateral plane into an axial-looking one (IsoNet).

    ``'full'`` returns :func:`rotated_psf`; ``'split'`` returns :func:`split_psf` of that with
    the lateral (xy) section of the PSF through its centre, for lateral planes that already
    carry the lateral blur. ``psf3d`` is on the isotropic lateral grid.
    """
    h_rot = rotated_psf(psf3d, axis=axis)
    if mode == "full":
        return h_rot
    if mode == "split":
        p = np.asarray(psf3d, dtype=np.float64)
        h_iso = np.clip(p[p.shape[0] // 2], 0.0, None)
        return split_psf(h_rot, h_iso / h_iso.sum())
    raise ConfigError(f"mode must be 'full' or 'split', got {mode!r}")


def model_kernel(psf_iso: np.ndarray) -> np.ndarray:
    """The 2D kernel (axial extent along rows) that turns a sharp lateral plane into an axial one."""
    return isonet_kernels(psf_iso, mode="split", axis="y")
