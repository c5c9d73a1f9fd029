"""Spectral statistics of anisotropic stacks: how much more the axial direction is blurred.

* :func:`axial_log_spectrum`: the batch-averaged log ratio of the power spectrum along rows (z) to
  the one along columns, for square planes; the object's own spectrum cancels in it. Self-Net
  matches it between synthetic and real axial crops (a spectral loss).
* :func:`estimate_axial_sigma`: the Gaussian axial blur that, applied to lateral planes and sampled
  as acquired, gives the real axial planes' statistic (OT-cycleGAN starts its blur generator there).

Both assume that the sample's structure is statistically isotropic (no preferred orientation
between the lateral and axial directions).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from .degrade import resample_matrix
from .errors import InputError


def axial_log_spectrum(x: torch.Tensor, rel_eps: float = 1e-4) -> torch.Tensor:
    """Log ratio of the power spectrum along rows (z) to the one along columns, batch-averaged.

    ``x`` is ``(B, C, n, n)``. Each crop loses its mean and is Hann-windowed; the 1D power
    spectra along rows and along columns are averaged over the other axis and the batch, and
    ``log(P_rows / P_cols)`` (``n // 2 + 1`` frequencies) is returned. For planes of one
    isotropic sample the object's spectrum cancels, leaving (up to sampling) ``|H_z|^2 / |H_x|^2``:
    how much more the axial direction is blurred. ``rel_eps`` (of the mean power) floors the
    spectra where the blur leaves nothing.
    """
    n = x.shape[-1]
    if x.shape[-2] != n:
        raise ValueError(f"axial_log_spectrum needs square crops, got {tuple(x.shape[-2:])}")
    x = x.float() - x.float().mean(dim=(-2, -1), keepdim=True)
    w = torch.hann_window(n, periodic=False, device=x.device, dtype=x.dtype)
    p_rows = torch.fft.rfft(x * w[:, None], dim=-2).abs().pow(2).mean(dim=(0, 1, 3))
    p_cols = torch.fft.rfft(x * w[None, :], dim=-1).abs().pow(2).mean(dim=(0, 1, 2))
    eps = rel_eps * 0.5 * (p_rows.mean() + p_cols.mean()).detach() + 1e-12
    return torch.log(p_rows + eps) - torch.log(p_cols + eps)


def estimate_axial_sigma(vol: np.ndarray, up: np.ndarray, factor: float, rng: np.random.Generator,
                         n: int = 64, crops: int = 64) -> float:
    """The extra axial blur (Gaussian sigma, voxels of the z-interpolated grid) that makes lateral planes look axial.

    ``vol`` is the normalised stack (ZYX), ``up`` its z-interpolation by ``factor``.

    Lateral crops are blurred along rows by trial sigmas and sampled along rows as acquired; the
    sigma whose axial/lateral log power-spectrum ratio (:func:`axial_log_spectrum`)
    best matches that of the real axial (xz/yz) crops of ``up`` wins.
    """
    m = math.ceil(factor)
    n = min(n, up.shape[0] - 2 * m, vol.shape[1] - 2 * m, vol.shape[2] - 2 * m)
    if n < 16:
        raise InputError(f"the stack {vol.shape} is too small to estimate its axial blur from spectra: it needs "
                         f"{16 + 2 * m} z-interpolated planes and {16 + 2 * m} pixels laterally")
    size = n + 2 * m

    def stat(a: np.ndarray) -> np.ndarray:
        return axial_log_spectrum(torch.from_numpy(np.ascontiguousarray(a, np.float32))[:, None]).numpy()

    real = []
    for _ in range(crops):
        z0 = int(rng.integers(up.shape[0] - n + 1))
        if rng.random() < 0.5:
            y, x0 = int(rng.integers(up.shape[1])), int(rng.integers(up.shape[2] - n + 1))
            real.append(up[z0:z0 + n, y, x0:x0 + n])
        else:
            x, y0 = int(rng.integers(up.shape[2])), int(rng.integers(up.shape[1] - n + 1))
            real.append(up[z0:z0 + n, y0:y0 + n, x])
    target = stat(np.stack(real))
    lat = np.stack([vol[int(rng.integers(vol.shape[0])), y:y + size, x:x + size]
                    for y, x in zip(rng.integers(0, vol.shape[1] - size + 1, crops),
                                    rng.integers(0, vol.shape[2] - size + 1, crops), strict=True)])
    mats = [resample_matrix(size, factor, float(ph), m) for ph in rng.uniform(0, factor, crops)]
    best, best_err = 0.0, float("inf")
    for sigma in np.arange(0.0, 3.0 * factor + 1e-9, 0.125):
        b = ndimage.gaussian_filter1d(lat, sigma, axis=1, mode="reflect") if sigma > 0 else lat
        fake = np.stack([mats[i] @ b[i] for i in range(crops)])[:, :, m:size - m]
        err = float(np.abs(stat(fake) - target).mean())
        if err < best_err:
            best, best_err = float(sigma), err
    return best
